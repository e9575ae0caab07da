//! greenlight's end-to-end suites, one module per behaviour, in one test
//! binary: the suites share the heavy dependencies (reqwest, rusqlite,
//! tokio, the dashboard), which are linked once instead of once a suite.
//! The helpers they share are the crate's library (`tests/src`).
//!
//! A test's name starts with its module, so one suite or one variant is
//! selected by that prefix:
//!
//! ```sh
//! cargo test -p greenlight-e2e --test e2e spin_manifest::
//! cargo test -p greenlight-e2e --test e2e -- --ignored flips_under_load::full::
//! ```

mod ai_backends;
mod automated_rollout;
mod clients_over_tls;
mod cloudflare_bundle;
mod conformance;
mod dashboard_rollout;
mod edges_over_https;
mod failover;
mod flips_under_load;
mod hostile_clients;
mod hostile_input;
mod last_known_good;
mod linearizable;
mod load_verdict;
mod locations;
mod one_user_one_color;
mod path_confusion;
mod plan_at_the_edge;
mod propagation;
mod real_users_judge;
mod remote_jwks;
mod soak;
mod spin_instances;
mod spin_manifest;
mod telemetry;
mod transparent_proxy;
