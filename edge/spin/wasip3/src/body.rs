//! Bodies as `wasi:http` 0.3 streams: the client's upload read by the
//! edge (bounded in time) or pumped to the origin under the origin timer,
//! and bodies the edge writes itself. An origin's answer is not copied
//! here: its stream is handed to the client's response as it is, so the
//! host moves it at the origin's pace (and a cut stream is cut for the
//! client).

use futures::future::{select, Either};
use spin_sdk::wasip3::clocks::monotonic_clock;
use spin_sdk::wasip3::http::types::{ErrorCode, Request, Trailers};
use spin_sdk::wasip3::wit_bindgen::StreamWriter;
use spin_sdk::wasip3::wit_bindgen::{FutureReader, FutureWriter, StreamReader, StreamResult};
use spin_sdk::wasip3::{wit_future, wit_stream};
use std::cell::Cell;
use std::pin::pin;

/// Bytes read from a stream per step.
const CHUNK: usize = 64 * 1024;
/// A client that sends nothing of an upload streaming to an origin for
/// this long is gone (a web server's client body timeout). It never
/// counts against the origin.
const CLIENT_IDLE_NS: u64 = 30_000_000_000;
/// A client that sends nothing of a body the edge is reading before it
/// acts (a body kept for a retry, a model route's body, an admin call's)
/// for this long is taken as gone.
const READ_IDLE_NS: u64 = 10_000_000_000;
/// What the edge reads and drops of a body it answers without using (a
/// refused caller, an admin body over its bound), after it has answered,
/// and for how long: a client still writing its upload gets the answer
/// instead of a reset (RFC 9112 §9.6), and a client that sends nothing
/// holds the task this long at most.
const DRAIN_LIMIT: usize = 4 * 1024 * 1024;
const DRAIN_NS: u64 = 2_000_000_000;

/// The stream broke or the client went silent: the client is gone.
#[derive(Debug)]
pub struct Broken;

pub type TrailersResult = Result<Option<Trailers>, ErrorCode>;

pub async fn sleep_ms(ms: u64) {
    monotonic_clock::wait_for(ms.saturating_mul(1_000_000)).await;
}

/// A trailers future that is already resolved: no trailers.
pub fn no_trailers() -> FutureReader<TrailersResult> {
    let (_, reader) = wit_future::new(|| Ok(None));
    reader
}

/// A stream carrying `bytes`, written by a task of its own (it outlives
/// the handler's return when the stream is a response body).
pub fn bytes_stream(bytes: Vec<u8>) -> StreamReader<u8> {
    let (mut writer, reader) = wit_stream::new::<u8>();
    wasip3::spawn(async move {
        writer.write_all(bytes).await;
    });
    reader
}

/// The client's request body.
pub struct ClientBody {
    stream: StreamReader<u8>,
    trailers: FutureReader<TrailersResult>,
    /// The stream has ended (reading on would trap).
    ended: bool,
    /// Tells the host how reading the body went (Ok when dropped).
    _result: FutureWriter<Result<(), ErrorCode>>,
}

/// One step of reading a body.
enum Step {
    Chunk(Vec<u8>),
    End,
}

impl ClientBody {
    pub fn open(req: Request) -> ClientBody {
        let (result, reader) = wit_future::new(|| Ok(()));
        let (stream, trailers) = Request::consume_body(req, reader);
        ClientBody {
            stream,
            trailers,
            ended: false,
            _result: result,
        }
    }

    /// The next chunk, `End` at the end, `Err` when the client sent nothing
    /// for `idle_ns`.
    async fn step(&mut self, idle_ns: u64) -> Result<Step, Broken> {
        if self.ended {
            return Ok(Step::End);
        }
        let read = pin!(self.stream.read(Vec::with_capacity(CHUNK)));
        let idle = pin!(monotonic_clock::wait_for(idle_ns));
        match select(read, idle).await {
            Either::Left(((StreamResult::Complete(_), chunk), _)) => Ok(Step::Chunk(chunk)),
            Either::Left(((StreamResult::Dropped, _), _)) => {
                self.ended = true;
                Ok(Step::End)
            }
            Either::Left(((StreamResult::Cancelled, _), _)) | Either::Right(_) => Err(Broken),
        }
    }

    /// The trailers once the stream ended; `Err` when the upload failed
    /// before its end (the client cut it).
    async fn finish(self) -> Result<Option<Trailers>, Broken> {
        self.trailers.await.map_err(|_| Broken)
    }

    /// Reads up to `keep` bytes (fewer when the body ends first). `Err`
    /// when the stream broke or the client sent nothing for
    /// [`READ_IDLE_NS`]. What follows `keep` is left in the body.
    pub async fn read(&mut self, keep: usize) -> Result<Vec<u8>, Broken> {
        let mut out = Vec::new();
        while out.len() < keep {
            match self.step(READ_IDLE_NS).await? {
                Step::Chunk(chunk) => out.extend_from_slice(&chunk),
                Step::End => break,
            }
        }
        Ok(out)
    }

    /// [`ClientBody::read`] of a whole body: `Err` also when the upload was
    /// cut.
    pub async fn read_whole(mut self, keep: usize) -> Result<Vec<u8>, Broken> {
        let bytes = self.read(keep).await?;
        if bytes.len() < keep {
            self.finish().await?;
        }
        Ok(bytes)
    }

    /// Reads and drops what is left of a body the edge answered without
    /// (bounded by [`DRAIN_LIMIT`] and [`DRAIN_NS`]), in a task of its own
    /// so the answer never waits for it.
    pub fn drain(mut self) {
        wasip3::spawn(async move {
            let end = monotonic_clock::now().saturating_add(DRAIN_NS);
            let mut dropped = 0;
            while dropped < DRAIN_LIMIT {
                let left = end.saturating_sub(monotonic_clock::now());
                match self.step(left).await {
                    Ok(Step::Chunk(chunk)) if left > 0 => dropped += chunk.len(),
                    _ => return,
                }
            }
        });
    }

    /// Pumps the body into `out` (the origin's request body), then its
    /// trailers into `trailers`. `timer` runs while the origin is fed and
    /// pauses while the client sends nothing; a client silent for
    /// [`CLIENT_IDLE_NS`] or whose upload broke is gone (the origin gets a
    /// failed body, and the attempt is not counted against it).
    pub async fn pump(
        mut self,
        mut out: StreamWriter<u8>,
        trailers: FutureWriter<TrailersResult>,
        timer: &OriginTimer,
    ) {
        loop {
            timer.pause();
            match self.step(CLIENT_IDLE_NS).await {
                Ok(Step::Chunk(chunk)) => {
                    timer.run();
                    if !out.write_all(chunk).await.is_empty() {
                        // The origin stopped reading: it has answered.
                        return;
                    }
                }
                Ok(Step::End) => break,
                Err(Broken) => return gone(out, trailers, timer).await,
            }
        }
        timer.run();
        match self.finish().await {
            Ok(t) => {
                drop(out);
                let _ = trailers.write(Ok(t)).await;
            }
            Err(Broken) => gone(out, trailers, timer).await,
        }
    }
}

/// The client cut its upload: the origin's body fails (never looks
/// complete) and the attempt ends without blaming the origin.
async fn gone(out: StreamWriter<u8>, trailers: FutureWriter<TrailersResult>, timer: &OriginTimer) {
    timer.client_gone();
    drop(out);
    let _ = trailers
        .write(Err(ErrorCode::InternalError(Some(
            "the client's upload broke off".into(),
        ))))
        .await;
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
    stopped: Cell<bool>,
    /// The client's upload failed before its end (the client cut it).
    client_gone: Cell<bool>,
}

impl OriginTimer {
    pub fn new(timeout_ms: u64) -> OriginTimer {
        OriginTimer {
            timeout_ns: timeout_ms.saturating_mul(1_000_000).max(1),
            deadline: Cell::new(None),
            stopped: Cell::new(false),
            client_gone: Cell::new(false),
        }
    }

    /// The client is gone: the timer fires at once (its waiter looks again
    /// within a timeout at the latest) and the attempt is abandoned.
    fn client_gone(&self) {
        if !self.stopped.get() {
            self.client_gone.set(true);
            self.deadline.set(Some(monotonic_clock::now()));
        }
    }

    /// Whether the client's departure made it fire.
    pub fn fired_for_client(&self) -> bool {
        self.client_gone.get()
    }

    /// Waiting on the origin: the whole timeout from now.
    pub fn run(&self) {
        if !self.stopped.get() {
            let now = monotonic_clock::now();
            self.deadline.set(Some(now.saturating_add(self.timeout_ns)));
        }
    }

    /// Waiting on the client.
    fn pause(&self) {
        self.deadline.set(None);
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
            let wait = match self.deadline.get() {
                Some(deadline) if now >= deadline => return,
                Some(deadline) => deadline - now,
                // Paused: look again a timeout later (a run() moves the
                // deadline later than that, never earlier).
                None => self.timeout_ns,
            };
            monotonic_clock::wait_for(wait).await;
        }
    }
}
