//! greenlight's functional core.
//!
//! Everything in this crate is deterministic and free of I/O: the edge adapters
//! (Cloudflare Workers, Spin) and the native harness translate their platform's
//! types into these and back. Time and randomness are passed in, never read here.
//!
//! The modules, by what they are about:
//! - the rollout: [`state`] (the document), [`rollout`] (its state machine),
//!   [`plan`] (a plan of steps the edge carries out), [`mod@decide`] (which
//!   color a request gets), [`health`], [`telemetry`] (real users' requests
//!   per color), [`color`];
//! - the edge's request pipeline: [`edge`] (its phases and their order),
//!   [`failover`], [`model`] (AI model routes), [`origin_headers`];
//! - security: [`auth`] (API keys, JWT, JWKS), [`jwks`] (the remote key set),
//!   [`origin_auth`] (signing requests to origins), [`admin_guard`],
//!   [`ratelimit`], [`identity`] (sticky users), [`path`] (one reading of a
//!   path);
//! - the admin API: [`admin`], [`admin_credentials`] (who may call it),
//!   [`history`] (the last committed changes), and [`object`] (the Workers
//!   rollout object), [`propagation`] (how a Workers edge's change reaches
//!   every location);
//! - HTTP and wire formats: [`http`], [`shell`] (the Worker's JS/Rust
//!   protocol), [`duration`], [`config_error`].

pub mod admin;
pub mod admin_credentials;
pub mod admin_guard;
pub mod auth;
pub mod color;
pub mod config_error;
pub mod decide;
pub mod duration;
pub mod edge;
pub mod failover;
pub mod health;
pub mod history;
pub mod http;
pub mod identity;
pub mod jwks;
pub mod model;
pub mod object;
pub mod origin_auth;
pub mod origin_headers;
pub mod path;
pub mod plan;
pub mod propagation;
pub mod ratelimit;
pub mod rollout;
pub mod shell;
pub mod state;
pub mod telemetry;

pub use color::Color;
pub use decide::{decide, RequestFacts, RouteDecision, RouteReason};
pub use rollout::{Phase, RolloutError, RolloutOp};
pub use state::{ChangeRecord, RolloutState, StateError};
