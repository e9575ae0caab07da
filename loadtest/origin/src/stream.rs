//! Streamed answers like an OpenAI-compatible chat-completions endpoint's.

use crate::body::{full, OriginBody};
use bytes::Bytes;
use http_body_util::{BodyExt, Channel};
use hyper::{Response, StatusCode};
use std::time::Duration;

/// A streamed answer like an OpenAI-compatible chat-completions endpoint's
/// (`stream: true`): `text/event-stream`, the first event `ttft` after the
/// head, then one event every `inter_event`, then `data: [DONE]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SseStream {
    /// Time to the first token: from the response head to the first event.
    pub ttft: Duration,
    /// Events with a token each (the `[DONE]` event comes on top).
    pub events: u32,
    pub inter_event: Duration,
}

impl Default for SseStream {
    fn default() -> SseStream {
        SseStream {
            ttft: Duration::from_millis(300),
            events: 50,
            inter_event: Duration::from_millis(20),
        }
    }
}

/// One chat-completion chunk event carrying token `i` of `model`'s answer.
pub fn sse_chunk(model: &str, i: u32) -> String {
    let chunk = serde_json::json!({
        "id": "chatcmpl-greenlight",
        "object": "chat.completion.chunk",
        "model": model,
        "choices": [{"index": 0, "delta": {"content": format!("token{i} ")}, "finish_reason": null}],
    });
    format!("data: {chunk}\n\n")
}

/// The event that ends a chat-completions stream.
pub const SSE_DONE: &str = "data: [DONE]\n\n";

/// The `model` field of a JSON object body, if it has one.
pub(crate) fn body_model(body: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    v.get("model")?.as_str().map(str::to_string)
}

/// A streamed chat completion (see [`SseStream`]), sent as it is made.
pub(crate) fn event_stream(color: &str, model: &str, sse: SseStream) -> Response<OriginBody> {
    let (mut tx, body) = Channel::<Bytes, std::io::Error>::new(4);
    let model = model.to_string();
    tokio::spawn(async move {
        let start = tokio::time::Instant::now();
        for i in 0..sse.events {
            // On a schedule from the head, so a slow reader does not
            // stretch the origin's own pace.
            tokio::time::sleep_until(start + sse.ttft + sse.inter_event * i).await;
            if tx
                .send_data(Bytes::from(sse_chunk(&model, i)))
                .await
                .is_err()
            {
                return;
            }
        }
        let _ = tx.send_data(Bytes::from_static(SSE_DONE.as_bytes())).await;
    });
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "text/event-stream")
        .header("cache-control", "no-cache")
        .header("x-origin-color", color)
        .body(body.boxed_unsync())
        .unwrap_or_else(|_| Response::new(full(Bytes::new())))
}
