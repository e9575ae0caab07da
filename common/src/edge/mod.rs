//! The platform-neutral request pipeline of an edge function.
//!
//! An adapter (Workers, Spin) does only I/O: it reads configuration and the
//! state document, turns the platform request into a [`RequestHead`], asks
//! [`plan`] what to do, and carries the resulting [`EdgePlan`] out.

mod admin_call;
mod config;
mod forward;
mod headers;
mod plan;
mod reply;
mod request;
mod state;

pub use admin_call::*;
pub use config::*;
pub use forward::*;
pub use headers::*;
pub use plan::*;
pub use reply::*;
pub use request::*;
pub use state::*;

#[cfg(test)]
mod tests;
