//! greenlight's release harness engine.
//!
//! Modules are small and named for one job; nothing here knows about a UI.

pub mod origin;
