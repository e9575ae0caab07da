//! Soak: a steady open-loop rate through each runtime for a long
//! time, with the traffic that wears an edge down, and the edge's memory
//! sampled all along:
//! - anonymous callers from ever new addresses (`x-real-ip`, named by
//!   `TRUSTED_CLIENT_IP_HEADER`), so the per-caller tables (the rate
//!   limiter's buckets, the admin guard's failures) keep meeting callers
//!   they have never seen, past their caps;
//! - JWT callers (1 000 subjects) on `GET` and `POST`;
//! - rate-limited callers: one address far over `RATE_LIMIT_PER_S`, one
//!   address failing admin authentication again and again (the admin
//!   guard), admin failures from fresh addresses, and the operator calling
//!   with the right token from its own address, never locked out;
//! - clients that disconnect mid-request: after the head of a slow body,
//!   right after sending the request head, and in the middle of an upload;
//! - a green origin that stalls (2 s every 6 s, longer than the edge's
//!   origin timeout) during a 50 % canary, so requests fail over to blue
//!   (and a `POST` there, which is never retried, gets the `502` problem).
//!
//! Every request a client did not drop itself must get a defined answer
//! for its kind (`200`; `429` with `Retry-After`; `401`; the README's `502
//! origin-failed` for a `POST` and `503 no-live-origin` with
//! `Retry-After`), never a transport error or another 5xx. The runtime
//! process (workerd, served directly; `spin`) is sampled for RSS and CPU;
//! its RSS at the end must stay within 25 % + 32 MiB of its RSS a quarter
//! into the run, it must be the same process at the end (no restart), and
//! the edge must still answer normally. The edge's own tables are read
//! through `GET /__greenlight/isolate` all along (a Worker isolate's
//! pending forwards and per-caller tables, and its WebAssembly memory; on
//! Spin the store's slots, where those tables live): each must stay within
//! its cap, and their start and end are reported with the store's key count
//! and file size.
//!
//! Variants: `short::*` (CI, 25 s per runtime at 100 requests/s) and
//! `full::*` (ignored: ten minutes per runtime):
//!
//! ```sh
//! scripts/build-worker.sh && scripts/build-spin.sh
//! cargo test --release -p greenlight-e2e --test e2e -- --ignored --test-threads=1 soak::full::
//! GREENLIGHT_SOAK_SECONDS=120 GREENLIGHT_SOAK_RPS=200 cargo test --release \
//!   -p greenlight-e2e --test e2e -- --ignored --test-threads=1 soak::full::cloudflare
//! ```
//!
//! Each test writes one `soak ... key=value ...` line to stderr, pass or fail.

use greenlight_common::admin::IsolateView;
use greenlight_e2e::fixtures::{self, ADMIN_TOKEN, AUDIENCE, ISSUER};
use greenlight_e2e::process::ProcStat;
use greenlight_e2e::{report, RunningEdge, Runtime};
use greenlight_engine::admin_client::AdminClient;
use greenlight_test_origin::{Behavior, LatencyDist, Origin, Stall};
use jsonwebtoken::Algorithm;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;

/// The rate limit every caller gets (per second, burst).
const RATE_LIMIT_PER_S: u32 = 5;
const RATE_LIMIT_BURST: u32 = 10;
/// The origin timeout: shorter than green's stalls.
const ORIGIN_TIMEOUT_MS: u64 = 1_000;
const GREEN_STALL: Stall = Stall {
    every: Duration::from_secs(6),
    duration: Duration::from_secs(2),
};
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_IN_FLIGHT: usize = 512;
/// Anonymous addresses cycle through this many (more than the Worker's
/// 10 000-caller cap of its tables).
const ANON_ADDRESSES: u64 = 50_000;
const JWT_SUBJECTS: usize = 1_000;
/// The rate-limited caller, the admin guesser and the operator.
const HAMMER_IP: &str = "192.0.2.1";
const GUESSER_IP: &str = "192.0.2.2";
const OPERATOR_IP: &str = "198.51.100.7";

struct Plan {
    variant: &'static str,
    rate: f64,
    duration: Duration,
    sample_every: Duration,
}

impl Plan {
    fn short() -> Plan {
        Plan {
            variant: "short",
            rate: 100.0,
            duration: Duration::from_secs(25),
            sample_every: Duration::from_secs(1),
        }
    }

    /// Ten minutes at 100 requests/s, or `GREENLIGHT_SOAK_SECONDS` /
    /// `GREENLIGHT_SOAK_RPS`.
    fn full() -> Plan {
        let env = |k: &str, default: f64| {
            std::env::var(k).ok().map_or(default, |v| {
                v.trim()
                    .parse::<f64>()
                    .ok()
                    .filter(|x| x.is_finite() && *x > 0.0)
                    .unwrap_or_else(|| panic!("{k}={v:?} is not a positive number"))
            })
        };
        Plan {
            variant: "full",
            rate: env("GREENLIGHT_SOAK_RPS", 100.0),
            duration: Duration::from_secs_f64(env("GREENLIGHT_SOAK_SECONDS", 600.0)),
            sample_every: Duration::from_secs(10),
        }
    }
}

/// What one request of the mix is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    /// `GET /public/soak` from a new address each time: 200.
    Anonymous,
    /// `GET /api/soak` with a JWT: 200.
    Jwt,
    /// `POST /api/soak` with a JWT: 200, or 502 when green stalls.
    Post,
    /// `GET /public/soak` from one address far over the limit: 200 or 429.
    Hammer,
    /// Wrong admin token from one address: 401, then 429.
    AdminGuess,
    /// Wrong admin token from a fresh address: 401.
    AdminFresh,
    /// The admin token from the operator's address: 200.
    Operator,
    /// A slow body dropped after its head (the head is judged).
    CutBody,
    /// The request head sent, the connection closed at once.
    CutEarly,
    /// An upload cut a few KiB into 64 KiB.
    CutUpload,
}

/// The mix, in 50 slots sent in turn.
const MIX: &[(Kind, usize)] = &[
    (Kind::Anonymous, 18),
    (Kind::Jwt, 6),
    (Kind::Post, 4),
    (Kind::Hammer, 8),
    (Kind::AdminGuess, 2),
    (Kind::AdminFresh, 2),
    (Kind::Operator, 1),
    (Kind::CutBody, 4),
    (Kind::CutEarly, 3),
    (Kind::CutUpload, 2),
];

/// The mix's slots, interleaved; without the kinds named in
/// `GREENLIGHT_SOAK_WITHOUT` (comma-separated, e.g. `CutUpload`: to find
/// which kind of traffic an edge does not survive).
///
/// Both runtimes' mixes have cut uploads: an edge that keeps waiting on a
/// client whose upload broke piles up instances and stops answering within
/// a minute (`spin up` 4.0.2 did, at 4 a second), which is why
/// `edge/spin/src/pump.rs` gives such a client up (README, "Soak").
fn kinds() -> Vec<Kind> {
    let without = std::env::var("GREENLIGHT_SOAK_WITHOUT").unwrap_or_default();
    let left_out: Vec<&str> = without.split(',').map(str::trim).collect();
    let mut slots: Vec<Vec<Kind>> = MIX
        .iter()
        .filter(|(k, _)| !left_out.contains(&format!("{k:?}").as_str()))
        .map(|(k, n)| vec![*k; *n])
        .collect();
    // Interleave, so each kind is spread over the 50 slots.
    let mut out = Vec::new();
    while slots.iter().any(|s| !s.is_empty()) {
        for s in &mut slots {
            if let Some(k) = s.pop() {
                out.push(k);
            }
        }
    }
    out
}

/// What came back, reduced to what is judged.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Outcome {
    /// A status, with whether `Retry-After` came and the problem type (the
    /// last segment of `urn:greenlight:problem:…`) for problem documents.
    Answer {
        status: u16,
        retry_after: bool,
        problem: Option<String>,
        failover: bool,
    },
    /// The client dropped the request on purpose.
    Dropped,
    /// No answer: connect error, timeout, broken response.
    Transport(String),
}

/// Whether `outcome` is a defined answer for `kind` (a 5xx only when the
/// README promises it for such a request).
fn defined(kind: Kind, outcome: &Outcome) -> bool {
    let Outcome::Answer {
        status,
        retry_after,
        problem,
        ..
    } = outcome
    else {
        return matches!(outcome, Outcome::Dropped);
    };
    let problem = problem.as_deref();
    // Routed requests: when no live origin answered in time (a loaded
    // machine can make blue miss the timeout too), the README's 503.
    let no_live_origin = *status == 503 && *retry_after && problem == Some("no-live-origin");
    match kind {
        Kind::Anonymous | Kind::Jwt | Kind::CutBody => *status == 200 || no_live_origin,
        Kind::Post => {
            *status == 200 || (*status == 502 && problem == Some("origin-failed")) || no_live_origin
        }
        Kind::Hammer => *status == 200 || (*status == 429 && *retry_after) || no_live_origin,
        Kind::AdminGuess => *status == 401 || (*status == 429 && *retry_after),
        Kind::AdminFresh => *status == 401,
        Kind::Operator => *status == 200,
        Kind::CutEarly | Kind::CutUpload => false,
    }
}

/// One memory/CPU sample of the runtime process(es).
#[derive(Debug, Clone)]
struct Sample {
    at: Duration,
    rss_kib: u64,
    cpu: Duration,
    pids: BTreeSet<u32>,
}

fn sample(edge: &RunningEdge, start: Instant) -> Sample {
    let name = edge.server.runtime_process();
    let procs: Vec<ProcStat> = edge
        ._process
        .members()
        .into_iter()
        .filter(|p| p.name == name)
        .collect();
    Sample {
        at: start.elapsed(),
        rss_kib: procs.iter().map(|p| p.rss_kib).sum(),
        cpu: procs.iter().map(|p| p.cpu).sum(),
        pids: procs.iter().map(|p| p.pid).collect(),
    }
}

/// Everything a request needs to be sent.
struct Sender {
    http: reqwest::Client,
    base: String,
    addr: String,
    jwts: Vec<String>,
}

/// The address of the anonymous caller of request `i`.
fn anon_ip(i: u64) -> String {
    let n = i % ANON_ADDRESSES;
    format!("10.{}.{}.{}", (n >> 16) & 255, (n >> 8) & 255, n & 255)
}

/// Whether `kind` comes from [`anon_ip`].
fn anonymous(kind: Kind) -> bool {
    matches!(kind, Kind::Anonymous | Kind::CutBody | Kind::CutEarly)
}

fn ip_of(n: u64, prefix: &str) -> String {
    format!("{prefix}.{}.{}", (n >> 8) & 255, n & 255)
}

impl Sender {
    async fn send(&self, kind: Kind, i: u64) -> Outcome {
        let jwt = &self.jwts[(i as usize) % self.jwts.len()];
        let anon_ip = anon_ip(i);
        let req = match kind {
            Kind::Anonymous => self
                .http
                .get(format!("{}/public/soak", self.base))
                .header("x-real-ip", &anon_ip),
            Kind::Jwt => self
                .http
                .get(format!("{}/api/soak", self.base))
                .bearer_auth(jwt),
            Kind::Post => self
                .http
                .post(format!("{}/api/soak", self.base))
                .bearer_auth(jwt)
                .body(format!("{{\"n\":{i}}}")),
            Kind::Hammer => self
                .http
                .get(format!("{}/public/soak", self.base))
                .header("x-real-ip", HAMMER_IP),
            Kind::AdminGuess => self
                .http
                .get(format!("{}/__greenlight/state", self.base))
                .bearer_auth("not-the-admin-token")
                .header("x-real-ip", GUESSER_IP),
            Kind::AdminFresh => self
                .http
                .get(format!("{}/__greenlight/state", self.base))
                .bearer_auth("not-the-admin-token")
                .header("x-real-ip", ip_of(i, "172.16")),
            Kind::Operator => self
                .http
                .get(format!("{}/__greenlight/state", self.base))
                .bearer_auth(ADMIN_TOKEN)
                .header("x-real-ip", OPERATOR_IP),
            Kind::CutBody => self
                .http
                .get(format!(
                    "{}/public/script/slow-body?chunks=5&every_ms=100",
                    self.base
                ))
                .header("x-real-ip", &anon_ip),
            Kind::CutEarly => return self.cut_early(&anon_ip).await,
            Kind::CutUpload => return self.cut_upload(jwt).await,
        };
        let resp = match req.send().await {
            Ok(r) => r,
            Err(e) => return Outcome::Transport(transport_kind(&e)),
        };
        let status = resp.status().as_u16();
        let header = |n: &str| {
            resp.headers()
                .get(n)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let retry_after = header("retry-after").is_some();
        let failover = header("x-greenlight-reason").as_deref() == Some("failover");
        let is_problem =
            header("content-type").is_some_and(|v| v.starts_with("application/problem+json"));
        if kind == Kind::CutBody && status == 200 {
            // The head is judged; the body is dropped after its first chunk.
            let mut resp = resp;
            let _ = resp.chunk().await;
            drop(resp);
            return Outcome::Answer {
                status,
                retry_after,
                problem: None,
                failover,
            };
        }
        let body = match resp.bytes().await {
            Ok(b) => b,
            Err(e) => return Outcome::Transport(format!("body: {}", transport_kind(&e))),
        };
        let problem = is_problem
            .then(|| serde_json::from_slice::<serde_json::Value>(&body).ok())
            .flatten()
            .and_then(|v| v["type"].as_str().map(str::to_string))
            .map(|t| t.rsplit(':').next().unwrap_or("").to_string());
        Outcome::Answer {
            status,
            retry_after,
            problem,
            failover,
        }
    }

    /// The head of a slow-body request, then the connection closed.
    async fn cut_early(&self, ip: &str) -> Outcome {
        if let Ok(mut s) = tokio::net::TcpStream::connect(&self.addr).await {
            let head = format!(
                "GET /public/script/slow-body?chunks=5&every_ms=100 HTTP/1.1\r\n\
                 host: {}\r\nx-real-ip: {ip}\r\n\r\n",
                self.addr
            );
            let _ = s.write_all(head.as_bytes()).await;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Outcome::Dropped
    }

    /// A 64 KiB upload to `/api/soak` cut after 4 KiB (to another path with
    /// `GREENLIGHT_SOAK_CUT_UPLOAD_PATH`, e.g. an admin route, which reads
    /// the body at the edge instead of streaming it to an origin).
    async fn cut_upload(&self, jwt: &str) -> Outcome {
        let path = std::env::var("GREENLIGHT_SOAK_CUT_UPLOAD_PATH")
            .unwrap_or_else(|_| "/api/soak".to_string());
        if let Ok(mut s) = tokio::net::TcpStream::connect(&self.addr).await {
            let head = format!(
                "POST {path} HTTP/1.1\r\nhost: {}\r\nauthorization: Bearer {jwt}\r\n\
                 content-type: application/octet-stream\r\ncontent-length: 65536\r\n\r\n",
                self.addr
            );
            let _ = s.write_all(head.as_bytes()).await;
            let _ = s.write_all(&[b'x'; 4096]).await;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Outcome::Dropped
    }
}

fn transport_kind(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timeout".into()
    } else if e.is_connect() {
        "connect".into()
    } else {
        format!("{e}")
    }
}

fn mib(kib: u64) -> String {
    format!("{:.1}", kib as f64 / 1024.0)
}

async fn soak(runtime: Runtime, plan: Plan) {
    let origin = |stall: Option<Stall>| Behavior {
        latency: LatencyDist::Uniform(Duration::from_millis(2), Duration::from_millis(10)),
        stall,
        scripts: true,
        ..Behavior::default()
    };
    let any = "127.0.0.1:0".parse().unwrap();
    let blue = Origin::start(any, "blue", origin(None)).await.unwrap();
    let green = Origin::start(any, "green", origin(Some(GREEN_STALL)))
        .await
        .unwrap();
    let mut setup = fixtures::edge_setup(&blue.url(), &green.url());
    for (k, v) in [
        ("RATE_LIMIT_PER_S", RATE_LIMIT_PER_S.to_string()),
        ("RATE_LIMIT_BURST", RATE_LIMIT_BURST.to_string()),
        ("TRUSTED_CLIENT_IP_HEADER", "x-real-ip".to_string()),
        ("ORIGIN_TIMEOUT_MS", ORIGIN_TIMEOUT_MS.to_string()),
        ("FAILOVER_DEADLINE_MS", "5000".to_string()),
    ] {
        setup.vars.insert(k.into(), v);
    }
    let edge = runtime
        .start_direct(&setup)
        .await
        .unwrap_or_else(|e| panic!("starting the {} edge: {e:#}", runtime.name()));
    let admin =
        greenlight_engine::admin_client::AdminClient::new(&edge.base_url, Some(ADMIN_TOKEN.into()))
            .unwrap();
    // A 50 % canary: both colors live, so a stalled green fails over to blue.
    admin.set_weight(50.0, None, "soak").await.unwrap();

    let exp = fixtures::now_s() + plan.duration.as_secs() + 3_600;
    let jwts = (0..JWT_SUBJECTS)
        .map(|n| {
            fixtures::sign(
                Algorithm::HS256,
                &serde_json::json!({"sub": format!("soak-{n}"), "iss": ISSUER,
                    "aud": AUDIENCE, "exp": exp}),
            )
        })
        .collect();
    let sender = Arc::new(Sender {
        http: reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .pool_max_idle_per_host(64)
            .build()
            .unwrap(),
        addr: edge.base_url.trim_start_matches("http://").to_string(),
        base: edge.base_url.clone(),
        jwts,
    });

    let start = Instant::now();
    let first = sample(&edge, start);
    // The edge's own tables (`GET /__greenlight/isolate`), polled beside
    // the load so the schedule never waits on them.
    let admin = AdminClient::new(&edge.base_url, Some(ADMIN_TOKEN.into())).unwrap();
    // A Worker served directly also has its isolate's JS heap read, after
    // a full collection (what the isolate still holds).
    let edge = Arc::new(edge);
    let isolates: Arc<Mutex<Vec<IsolateView>>> = Arc::default();
    let js_heaps: Arc<Mutex<Vec<greenlight_e2e::runtime::JsHeap>>> = Arc::default();
    let poller = tokio::spawn({
        let (admin, isolates, js_heaps, every, until, edge) = (
            admin.clone(),
            isolates.clone(),
            js_heaps.clone(),
            plan.sample_every,
            plan.duration,
            edge.clone(),
        );
        async move {
            while start.elapsed() < until {
                if let Ok(Ok(view)) = tokio::time::timeout(every, admin.isolate()).await {
                    isolates.lock().unwrap().push(view);
                }
                if let Some(heap) = edge.js_heap_after_gc().await {
                    js_heaps.lock().unwrap().push(heap);
                }
                tokio::time::sleep(every).await;
            }
        }
    });
    let results: Arc<Mutex<BTreeMap<(Kind, Outcome), u64>>> = Arc::default();
    let in_flight = Arc::new(tokio::sync::Semaphore::new(MAX_IN_FLIGHT));
    let mix = kinds();
    let total = (plan.rate * plan.duration.as_secs_f64()).ceil() as u64;
    let mut samples = vec![first.clone()];
    let mut next_sample = plan.sample_every;
    let mut late = 0u64;
    let mut anon_addresses = std::collections::HashSet::new();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..total {
        let due = start + Duration::from_secs_f64(i as f64 / plan.rate);
        tokio::time::sleep_until(due.into()).await;
        if start.elapsed() >= next_sample {
            samples.push(sample(&edge, start));
            next_sample += plan.sample_every;
        }
        let Ok(permit) = in_flight.clone().try_acquire_owned() else {
            late += 1;
            continue;
        };
        let kind = mix[(i as usize) % mix.len()];
        if anonymous(kind) {
            anon_addresses.insert(i % ANON_ADDRESSES);
        }
        let (sender, results) = (sender.clone(), results.clone());
        tasks.spawn(async move {
            let outcome = sender.send(kind, i).await;
            drop(permit);
            *results.lock().unwrap().entry((kind, outcome)).or_default() += 1;
        });
        // Reap finished tasks as we go, so the set stays small.
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
    let sent_for = start.elapsed();
    let last = sample(&edge, start);
    samples.push(last.clone());

    poller.abort();
    let _ = poller.await;
    let last_isolate = admin.isolate().await;
    if let Some(heap) = edge.js_heap_after_gc().await {
        js_heaps.lock().unwrap().push(heap);
    }
    let js_heaps = js_heaps.lock().unwrap().clone();
    let js_heap_curve: Vec<String> = js_heaps
        .iter()
        .map(|h| {
            let mib = |b: u64| b as f64 / 1_048_576.0;
            format!("{:.1}/{:.1}", mib(h.worker), mib(h.all))
        })
        .collect();
    let isolates = isolates.lock().unwrap().clone();
    let first_isolate = isolates.first().cloned();
    let tables = |v: Option<&IsolateView>| match v {
        Some(v) => v
            .tables
            .iter()
            .map(|(k, t)| format!("{k}:{}/{}", t.entries, t.cap))
            .collect::<Vec<_>>()
            .join(","),
        None => "none".into(),
    };
    let wasm_curve: Vec<String> = isolates
        .iter()
        .chain(last_isolate.as_ref().ok())
        .map(|v| format!("{:.1}", v.wasm_memory_bytes as f64 / 1_048_576.0))
        .collect();

    // Still serving, on the same process.
    let probe = sender.send(Kind::Operator, 0).await;
    let anon = sender.send(Kind::Anonymous, 1).await;

    let results = results.lock().unwrap().clone();
    let count = |f: &dyn Fn(&Kind, &Outcome) -> bool| -> u64 {
        results
            .iter()
            .filter(|((k, o), _)| f(k, o))
            .map(|(_, n)| n)
            .sum()
    };
    let requests = count(&|_, _| true);
    let dropped = count(&|_, o| matches!(o, Outcome::Dropped));
    let undefined = count(&|k, o| !defined(*k, o));
    let transport = count(&|_, o| matches!(o, Outcome::Transport(_)));
    let status =
        |s: u16| count(&|_, o| matches!(o, Outcome::Answer { status, .. } if *status == s));
    let unpromised_5xx = count(&|k, o| {
        matches!(o, Outcome::Answer { status, .. } if *status >= 500) && !defined(*k, o)
    });
    let failovers = count(&|_, o| matches!(o, Outcome::Answer { failover: true, .. }));
    let operator_refused =
        count(&|k, o| *k == Kind::Operator && !matches!(o, Outcome::Answer { status: 200, .. }));
    let quarter = samples
        .iter()
        .find(|s| s.at >= plan.duration / 4)
        .unwrap_or(&first)
        .clone();
    let max_rss = samples.iter().map(|s| s.rss_kib).max().unwrap_or(0);
    // The curve in eight points, start to end.
    let curve: Vec<String> = (0..=8)
        .map(|n| {
            let idx = (samples.len() - 1) * n / 8;
            mib(samples[idx].rss_kib)
        })
        .collect();
    let cpu = last.cpu.saturating_sub(first.cpu);
    let answered = requests - dropped;
    let store = match runtime {
        Runtime::Spin => {
            let scratch = edge._process.scratch.as_ref().unwrap().path();
            let keys = greenlight_e2e::spin::keys(scratch)
                .map(|k| k.len())
                .unwrap_or(0);
            let db = std::fs::metadata(scratch.join("state/sqlite_key_value.db"))
                .map(|m| m.len())
                .unwrap_or(0);
            format!(" kv_keys={keys} kv_db_kib={}", db / 1024)
        }
        Runtime::Cloudflare => String::new(),
    };
    let log = edge
        ._process
        .log_path
        .as_ref()
        .and_then(|p| std::fs::read_to_string(p).ok())
        .unwrap_or_default();
    let log_errors = log
        .lines()
        .filter(|l| {
            l.contains("Uncaught") || l.contains("panicked") || l.contains("internal error")
        })
        .count();
    let per_kind: Vec<String> = MIX
        .iter()
        .map(|(k, _)| {
            let mut statuses: BTreeMap<String, u64> = BTreeMap::new();
            for ((kind, o), n) in &results {
                if kind != k {
                    continue;
                }
                let key = match o {
                    Outcome::Answer { status, .. } => status.to_string(),
                    Outcome::Dropped => "dropped".into(),
                    Outcome::Transport(_) => "transport".into(),
                };
                *statuses.entry(key).or_default() += n;
            }
            let s: Vec<String> = statuses.iter().map(|(s, n)| format!("{s}:{n}")).collect();
            format!("{k:?}[{}]", s.join(","))
        })
        .collect();
    report(&format!(
        "soak runtime={} server={} variant={} rate_target={:.0} duration_s={:.0} \
         requests={requests} late={late} dropped_by_client={dropped} answered={answered} \
         undefined={undefined} transport_errors={transport} unpromised_5xx={unpromised_5xx} \
         status_200={} status_401={} status_429={} status_502={} status_503={} \
         failover={failovers} operator_refused={operator_refused} \
         distinct_anon_addresses={} rss_start_mib={} rss_quarter_mib={} rss_end_mib={} \
         rss_max_mib={} rss_curve_mib={} cpu_ms_per_request={:.3} same_process={} \
         log_errors={log_errors}{store} tables_in={} tables_start={} tables_end={} \
         wasm_memory_mib={} js_heap_after_gc_mib={} by_kind={}",
        runtime.name(),
        edge.server.name(),
        plan.variant,
        plan.rate,
        sent_for.as_secs_f64(),
        status(200),
        status(401),
        status(429),
        status(502),
        status(503),
        anon_addresses.len(),
        mib(first.rss_kib),
        mib(quarter.rss_kib),
        mib(last.rss_kib),
        mib(max_rss),
        curve.join(","),
        cpu.as_secs_f64() * 1e3 / requests.max(1) as f64,
        first.pids == last.pids,
        last_isolate
            .as_ref()
            .map(|v| v.tables_in.as_str())
            .unwrap_or("unknown"),
        tables(first_isolate.as_ref()),
        tables(last_isolate.as_ref().ok()),
        wasm_curve.join(","),
        if js_heap_curve.is_empty() {
            "none".to_string()
        } else {
            js_heap_curve.join(",")
        },
        per_kind.join(" "),
    ));

    let mut problems = Vec::new();
    if undefined > 0 {
        let examples: Vec<String> = results
            .iter()
            .filter(|((k, o), _)| !defined(*k, o))
            .take(10)
            .map(|((k, o), n)| format!("{k:?} {o:?} ×{n}"))
            .collect();
        problems.push(format!(
            "{undefined} requests without a defined answer:\n  {}",
            examples.join("\n  ")
        ));
    }
    if late > total / 100 {
        problems.push(format!(
            "{late} of {total} requests were not sent ({MAX_IN_FLIGHT} in flight)"
        ));
    }
    if first.pids.is_empty() || first.pids != last.pids {
        problems.push(format!(
            "the {} process changed: {:?} at the start, {:?} at the end",
            edge.server.runtime_process(),
            first.pids,
            last.pids
        ));
    }
    match &last_isolate {
        Ok(v) => {
            for (name, t) in &v.tables {
                if t.entries > t.cap {
                    problems.push(format!(
                        "the edge's {name} table holds {} entries, over its cap of {}",
                        t.entries, t.cap
                    ));
                }
            }
        }
        Err(e) => problems.push(format!("GET isolate after the soak: {e}")),
    }
    // What the Worker's isolate itself holds: its linear memory (grows,
    // never shrinks) and its live JS heap (after a collection; noisy, as
    // requests are in flight: the median of a few samples).
    let wasm: Vec<u64> = isolates
        .iter()
        .chain(last_isolate.as_ref().ok())
        .map(|v| v.wasm_memory_bytes)
        .collect();
    if let Some(problem) = grew_past_quarter("WebAssembly memory", &wasm, 4 << 20) {
        problems.push(problem);
    }
    let live: Vec<u64> = js_heaps.iter().map(|h| h.worker).collect();
    if let Some(problem) = grew_past_quarter("live JS heap", &live, 8 << 20) {
        problems.push(problem);
    }
    let bound = quarter.rss_kib + quarter.rss_kib / 4 + 32 * 1024;
    if last.rss_kib > bound {
        problems.push(format!(
            "RSS grew from {} MiB (a quarter in) to {} MiB (bound {} MiB)",
            mib(quarter.rss_kib),
            mib(last.rss_kib),
            mib(bound)
        ));
    }
    if !matches!(probe, Outcome::Answer { status: 200, .. })
        || !matches!(anon, Outcome::Answer { status: 200, .. })
    {
        problems.push(format!(
            "after the soak the edge answered {probe:?} (operator) and {anon:?} (anonymous)"
        ));
    }
    assert!(
        problems.is_empty(),
        "{} soak:\n- {}\n--- log tail ---\n{}",
        runtime.name(),
        problems.join("\n- "),
        edge._process.log_tail()
    );
}

/// A problem when the median of the last few `samples` (bytes, in time
/// order) is beyond the median of those a quarter in by more than 25 % +
/// `slack` bytes; `None` with too few samples to tell.
fn grew_past_quarter(what: &str, samples: &[u64], slack: u64) -> Option<String> {
    const WINDOW: usize = 4;
    if samples.len() < 4 * WINDOW {
        return None;
    }
    let median = |w: &[u64]| {
        let mut w = w.to_vec();
        w.sort_unstable();
        w[w.len() / 2]
    };
    let q = samples.len() / 4;
    let at_quarter = median(&samples[q..q + WINDOW]);
    let at_end = median(&samples[samples.len() - WINDOW..]);
    let bound = at_quarter + at_quarter / 4 + slack;
    (at_end > bound).then(|| {
        let mib = |b: u64| format!("{:.1}", b as f64 / 1_048_576.0);
        format!(
            "the Worker's {what} grew from {} MiB (a quarter in) to {} MiB (bound {} MiB)",
            mib(at_quarter),
            mib(at_end),
            mib(bound)
        )
    })
}

mod short {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn cloudflare() {
        soak(Runtime::Cloudflare, Plan::short()).await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn spin() {
        soak(Runtime::Spin, Plan::short()).await
    }
}

mod full {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "ten minutes: run with --ignored (GREENLIGHT_SOAK_SECONDS to change)"]
    async fn cloudflare() {
        soak(Runtime::Cloudflare, Plan::full()).await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "ten minutes: run with --ignored (GREENLIGHT_SOAK_SECONDS to change)"]
    async fn spin() {
        soak(Runtime::Spin, Plan::full()).await
    }
}
