//! greenlight's load engine and its measurements.
//!
//! Modules are small and named for one job; nothing here knows about a UI,
//! and the verdict itself is the `greenlight_verdict` crate's:
//! - [`schedule`]: open-loop arrival schedule (constant, ramp, steps; live rate changes)
//! - [`client`]: the load engine (open and closed loop) and its [`client::Control`]
//! - [`transport`]: the engine's connections: HTTP/1.1 keep-alive or HTTP/2 multiplexed, plain or TLS (hyper)
//! - [`tls`]: rustls settings shared by every client (roots, `--cacert`, `--insecure`)
//! - [`users`]: simulated users (API keys, signed JWTs, sticky cookies)
//! - [`scenario`]: TOML request mix
//! - [`sse`]: counting a `text/event-stream` body's events as they arrive (time to first token)
//! - [`histogram`], [`recorder`]: per-color HdrHistograms, outcomes, live time series
//! - [`hlog`]: HdrHistogram interval logs (`--hlog`) and merging several agents' logs
//! - [`report`]: human summary, JSON (schema `greenlight.load-report/1`), `.hgrm`
//! - [`sampling`]: what each request is for (comparison traffic through the preview override, or weighted)
//! - [`locations`]: per-location (cf-ray, `--location-header`) requests and convergence
//! - [`admin_client`]: the edge admin API client (it shares [`tls`] with the engine)
//! - [`trace`]: open-loop load keeping one record per request (end-to-end checks)

pub mod admin_client;
pub mod client;
pub mod histogram;
pub mod hlog;
pub mod locations;
pub mod real_users;
pub mod recorder;
pub mod report;
pub mod sampling;
pub mod scenario;
pub mod schedule;
pub mod sse;
pub mod tls;
pub mod trace;
pub mod transport;
pub mod users;
