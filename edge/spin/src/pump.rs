//! Moving bytes between WASIp2 streams without blocking the instance: the
//! request body goes to the origin while the response is awaited, and the
//! origin's body goes to the client chunk by chunk as it arrives.
//!
//! Waiting is done on the streams' pollables through Spin's executor
//! (`spin_executor::push_waker_and_get_token`), the way spin-sdk's own
//! helpers do, so `futures::join!` can drive two of these at once.

use spin_sdk::wit::wasi::http0_2_0::types::{
    ErrorCode, FutureIncomingResponse, FutureTrailers, IncomingBody, IncomingResponse, OutgoingBody,
};
use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use wasi::clocks::monotonic_clock;
use wasi::io::poll::Pollable;
use wasi::io::streams::{InputStream, OutputStream, StreamError};

/// Bytes read from an input stream per step.
const CHUNK: u64 = 64 * 1024;
/// A client that sends nothing of its upload for this long is gone: the
/// host does not always wake a body stream whose client closed its
/// connection (the soak's cut uploads left instances waiting for ever,
/// until `spin up` stopped answering), so the wait on a client is bounded
/// too, like a web server's client body timeout. It never counts against
/// the origin.
const CLIENT_IDLE_NS: u64 = 30_000_000_000;

/// The stream's end or its failure: either way nothing more moves.
#[derive(Debug)]
pub struct Broken;

/// Resolves once `pollable` is ready (or on the next poll, whichever comes
/// first: callers re-check their stream and wait again if needed).
struct Ready {
    pollable: Option<Pollable>,
    _token: Option<spin_executor::CancelOnDropToken>,
}

impl Future for Ready {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        match self.pollable.take() {
            Some(p) if !p.ready() => {
                let token = spin_executor::push_waker_and_get_token(p, cx.waker().clone());
                self._token = Some(token.into());
                Poll::Pending
            }
            _ => Poll::Ready(()),
        }
    }
}

fn ready(pollable: Pollable) -> Ready {
    Ready {
        pollable: Some(pollable),
        _token: None,
    }
}

/// The origin timeout: it covers the time the edge waits on the origin
/// (connecting, taking the request body, sending response headers), not the
/// time it waits on the client's upload, and stops with the response head.
/// The host's own `first-byte-timeout` would also count a slow upload (the
/// origin answers after reading the body), so it is not used.
pub struct OriginTimer {
    timeout_ns: u64,
    /// When it fires; `None` while paused.
    deadline: Cell<Option<u64>>,
    /// While paused: when the client has been silent for too long.
    client_deadline: Cell<Option<u64>>,
    stopped: Cell<bool>,
    /// The client's upload failed before its end (the client cut it).
    client_gone: Cell<bool>,
}

impl OriginTimer {
    pub fn new(timeout_ms: u64) -> OriginTimer {
        OriginTimer {
            timeout_ns: timeout_ms.saturating_mul(1_000_000).max(1),
            deadline: Cell::new(None),
            client_deadline: Cell::new(None),
            stopped: Cell::new(false),
            client_gone: Cell::new(false),
        }
    }

    /// The client's upload failed mid-way: the origin will never get the
    /// rest and may wait for it for ever, so the timer fires at once (its
    /// waiter looks again within a timeout at the latest) and the attempt
    /// is abandoned, without counting against the origin.
    pub fn client_gone(&self) {
        if !self.stopped.get() {
            self.client_gone.set(true);
            self.deadline.set(Some(monotonic_clock::now()));
        }
    }

    /// Whether [`OriginTimer::client_gone`] made it fire.
    pub fn fired_for_client(&self) -> bool {
        self.client_gone.get()
    }

    /// Waiting on the origin: the whole timeout from now.
    pub fn run(&self) {
        if !self.stopped.get() {
            let now = monotonic_clock::now();
            self.deadline.set(Some(now.saturating_add(self.timeout_ns)));
            self.client_deadline.set(None);
        }
    }

    /// Waiting on the client (for at most [`CLIENT_IDLE_NS`] in a row).
    pub fn pause(&self) {
        self.deadline.set(None);
        if self.client_deadline.get().is_none() {
            let now = monotonic_clock::now();
            self.client_deadline
                .set(Some(now.saturating_add(CLIENT_IDLE_NS)));
        }
    }

    /// The response head arrived: never fires.
    pub fn stop(&self) {
        self.stopped.set(true);
        self.deadline.set(None);
    }

    /// Resolves when the timer fires.
    pub async fn expired(&self) {
        loop {
            if self.stopped.get() {
                return std::future::pending().await;
            }
            let now = monotonic_clock::now();
            let wait = match (self.deadline.get(), self.client_deadline.get()) {
                (Some(deadline), _) if now >= deadline => return,
                (Some(deadline), _) => deadline - now,
                // Paused on a client silent for too long: it is gone.
                (None, Some(idle)) if now >= idle => {
                    self.client_gone();
                    return;
                }
                // Paused: look again a timeout later, or when the client's
                // silence runs out (a run() moves the deadline later than
                // that, never earlier).
                (None, Some(idle)) => self.timeout_ns.min(idle - now),
                (None, None) => self.timeout_ns,
            };
            ready(monotonic_clock::subscribe_duration(wait)).await;
        }
    }
}

/// Waits for an outgoing request's response head.
pub async fn response(pending: FutureIncomingResponse) -> Result<IncomingResponse, ErrorCode> {
    loop {
        match pending.get() {
            Some(Ok(result)) => return result,
            // Already taken: cannot happen, the future is ours alone.
            Some(Err(())) => return Err(ErrorCode::InternalError(None)),
            None => ready(pending.subscribe()).await,
        }
    }
}

/// Writes all of `data`, waiting while the stream has no room.
async fn write_all(output: &OutputStream, mut data: &[u8]) -> Result<(), Broken> {
    while !data.is_empty() {
        match output.check_write() {
            Ok(0) => ready(output.subscribe()).await,
            Ok(room) => {
                let n = usize::try_from(room).unwrap_or(usize::MAX).min(data.len());
                output.write(&data[..n]).map_err(|_| Broken)?;
                data = &data[n..];
            }
            Err(_) => return Err(Broken),
        }
    }
    Ok(())
}

/// Flushes and waits until the flush is done. A stream the host already
/// closed (a body whose declared length is all written) has nothing left to
/// flush.
async fn flush(output: &OutputStream) -> Result<(), Broken> {
    match output.flush() {
        Ok(()) => {}
        Err(StreamError::Closed) => return Ok(()),
        Err(_) => return Err(Broken),
    }
    loop {
        match output.check_write() {
            // No room until the flush is done.
            Ok(0) => ready(output.subscribe()).await,
            Ok(_) | Err(StreamError::Closed) => return Ok(()),
            Err(_) => return Err(Broken),
        }
    }
}

/// Copies `input` to `output` until `input` ends; `timer` (an upload's)
/// is paused while the input has nothing and runs while the output is fed.
/// Whenever the input has nothing more for now, what was written is
/// flushed before waiting: an event of a streamed answer must reach the
/// client when the origin sends it, not when the next one comes (or a
/// timer lets it go). A body that arrives in one go is flushed once.
async fn copy(
    input: &InputStream,
    output: &OutputStream,
    timer: Option<&OriginTimer>,
) -> Result<(), Broken> {
    let mut unflushed = false;
    loop {
        match input.read(CHUNK) {
            Ok(chunk) if chunk.is_empty() => {
                if unflushed {
                    flush(output).await?;
                    unflushed = false;
                }
                if let Some(t) = timer {
                    t.pause();
                }
                ready(input.subscribe()).await
            }
            Ok(chunk) => {
                if let Some(t) = timer {
                    t.run();
                }
                write_all(output, &chunk).await?;
                unflushed = true;
            }
            Err(StreamError::Closed) => {
                if let Some(t) = timer {
                    t.run();
                }
                return flush(output).await;
            }
            Err(_) => {
                // The client is gone: a timer left paused would wait for
                // the origin's answer for ever, and cut uploads would pile
                // up until `spin up` stopped answering.
                if let Some(t) = timer {
                    t.client_gone();
                }
                return Err(Broken);
            }
        }
    }
}

/// Writes `bytes` as the whole of `body`'s contents (the caller finishes it).
pub async fn write_bytes(body: &OutgoingBody, bytes: &[u8]) -> Result<(), Broken> {
    let output = body.write().map_err(|()| Broken)?;
    write_all(&output, bytes).await?;
    flush(&output).await
}

/// Copies an incoming body (the client's request) into an outgoing one (to
/// the origin), pausing `timer` while the client sends nothing; the caller
/// finishes the outgoing body.
pub async fn body_to_body(
    incoming: IncomingBody,
    outgoing: &OutgoingBody,
    timer: &OriginTimer,
) -> Result<(), Broken> {
    let input = incoming.stream().map_err(|()| Broken)?;
    let output = outgoing.write().map_err(|()| Broken)?;
    let copied = copy(&input, &output, Some(timer)).await;
    drop(input);
    drop(output);
    drop(incoming);
    copied
}

/// Copies the origin's body to the client, then its trailers, and finishes
/// the outgoing body. On failure the outgoing body is dropped unfinished,
/// which tells the client the response was cut short.
pub async fn body_to_body_with_trailers(
    incoming: IncomingBody,
    outgoing: OutgoingBody,
) -> Result<(), Broken> {
    let input = incoming.stream().map_err(|()| Broken)?;
    let output = outgoing.write().map_err(|()| Broken)?;
    copy(&input, &output, None).await?;
    drop(input);
    drop(output);
    let trailers = trailers(IncomingBody::finish(incoming)).await?;
    OutgoingBody::finish(outgoing, trailers).map_err(|_| Broken)
}

async fn trailers(
    future: FutureTrailers,
) -> Result<Option<spin_sdk::wit::wasi::http0_2_0::types::Fields>, Broken> {
    loop {
        match future.get() {
            Some(Ok(Ok(trailers))) => return Ok(trailers),
            Some(_) => return Err(Broken),
            None => ready(future.subscribe()).await,
        }
    }
}

/// What the edge reads and drops of a body it answers without using (a
/// refused caller, an admin body over its bound), after it has answered.
const DRAIN_LIMIT: usize = 4 * 1024 * 1024;
/// How long the edge goes on reading such a body after its answer: a
/// client still writing its upload gets the answer instead of a reset,
/// and a client that sends nothing holds the instance this long at most.
const DRAIN_NS: u64 = 2_000_000_000;
/// A client that sends nothing of a body the edge is reading before it
/// acts (a body kept for a retry, a model route's body, an admin call's)
/// for this long is taken as gone.
const READ_IDLE_NS: u64 = 10_000_000_000;

/// Resolves once `a` or `b` is ready (or on the next poll).
struct EitherReady {
    pollables: Option<(Pollable, Pollable)>,
    _tokens: Vec<spin_executor::CancelOnDropToken>,
}

impl Future for EitherReady {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        match self.pollables.take() {
            Some((a, b)) if !a.ready() && !b.ready() => {
                let ta = spin_executor::push_waker_and_get_token(a, cx.waker().clone());
                let tb = spin_executor::push_waker_and_get_token(b, cx.waker().clone());
                self._tokens = vec![ta.into(), tb.into()];
                Poll::Pending
            }
            _ => Poll::Ready(()),
        }
    }
}

/// A client's request body being read by the edge itself (not streamed
/// to an origin): the stream before its body, so it is dropped first.
pub struct ClientBody {
    input: InputStream,
    _body: IncomingBody,
}

impl ClientBody {
    pub fn open(body: IncomingBody) -> Option<ClientBody> {
        let input = body.stream().ok()?;
        Some(ClientBody { input, _body: body })
    }

    /// Reads up to `keep` bytes (fewer when the body ends first). `Err`
    /// when the stream broke (the client cut its upload) or the client
    /// sent nothing for [`READ_IDLE_NS`]: the client is gone.
    pub async fn read(&self, keep: usize) -> Result<Vec<u8>, Broken> {
        let mut out = Vec::new();
        let mut idle_end = monotonic_clock::now().saturating_add(READ_IDLE_NS);
        while out.len() < keep {
            let want = (keep - out.len()).min(CHUNK as usize) as u64;
            match self.input.read(want) {
                Ok(chunk) if chunk.is_empty() => {
                    if !self.wait(idle_end).await {
                        return Err(Broken);
                    }
                }
                Ok(chunk) => {
                    idle_end = monotonic_clock::now().saturating_add(READ_IDLE_NS);
                    out.extend_from_slice(&chunk);
                }
                Err(StreamError::Closed) => break,
                Err(_) => return Err(Broken),
            }
        }
        Ok(out)
    }

    /// Reads and drops what is left (up to [`DRAIN_LIMIT`] bytes, for at
    /// most [`DRAIN_NS`]) of a body the edge has answered without. An
    /// answer followed by the close of a connection with unread data makes
    /// the client's kernel see a reset that can discard the answer before
    /// the client reads it (RFC 9112 §9.6): reading on while a client is
    /// still writing lets it read the 401 or 413. The answer never waits
    /// for this, so a client that announces a body and sends nothing gets
    /// its answer at once and holds the instance [`DRAIN_NS`] at most.
    pub async fn drain(self) {
        let end = monotonic_clock::now().saturating_add(DRAIN_NS);
        let mut dropped = 0usize;
        while dropped < DRAIN_LIMIT {
            match self.input.read(CHUNK) {
                Ok(chunk) if chunk.is_empty() => {
                    if !self.wait(end).await {
                        return;
                    }
                }
                Ok(chunk) => dropped += chunk.len(),
                Err(_) => return,
            }
        }
    }

    /// Waits until the stream may have bytes; `false` once `end`
    /// (monotonic ns) has passed.
    async fn wait(&self, end: u64) -> bool {
        let now = monotonic_clock::now();
        if now >= end {
            return false;
        }
        EitherReady {
            pollables: Some((
                self.input.subscribe(),
                monotonic_clock::subscribe_duration(end - now),
            )),
            _tokens: Vec::new(),
        }
        .await;
        true
    }
}
