//! A fast demo/test origin: answers with its color, records what it
//! received, and (see [`Behavior`]) can be told to be slow or failing.
//!
//! - `behavior`: latency distributions, injected errors, stalls ([`Behavior`])
//! - `stream`: streamed chat-completion answers ([`SseStream`])
//! - `server`: the server itself ([`Origin`]) and what it recorded
//! - `scripts`: the test-only scripted routes under `/script/`

mod behavior;
mod body;
mod scripts;
mod server;
mod stream;

pub use behavior::{std_normal, Behavior, LatencyDist, Stall};
pub use body::OriginBody;
pub use server::{Origin, RecordedRequest};
pub use stream::{sse_chunk, SseStream, SSE_DONE};
