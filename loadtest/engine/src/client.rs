//! The load engine: sends requests (open loop on a schedule, or closed loop
//! as fast as possible) and records every result in a [`Recorder`].
//! It knows nothing about terminals or UIs: callers watch the recorder and
//! steer with a [`Control`].

use crate::histogram::{RequestOutcome, Sample, SeenColor};
use crate::locations::{LocationSource, LocationTracker};
use crate::recorder::Recorder;
use crate::sampling::{Comparison, Purpose};
use crate::scenario::Scenario;
use crate::schedule::{RateControl, RateProfile, Schedule};
use crate::transport::{ConnectionSummary, Failure, HttpOptions, Pool, SendRequest};
use crate::users::{splitmix64, SimulatedUsers};
use bytes::Bytes;
use greenlight_common::http::{HEADER_COLOR, HEADER_EPOCH, HEADER_REASON};
use greenlight_common::Color;
use http_body_util::Full;
use hyper::Uri;
use reqwest::Url;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{Notify, Semaphore};

/// A request sent later than this after its intended time counts as late.
pub const LATE_THRESHOLD: Duration = Duration::from_millis(10);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadError(pub String);

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for LoadError {}

/// How requests are paced.
#[derive(Debug, Clone, PartialEq)]
pub enum Mode {
    /// Open loop: arrivals follow `profile` whatever the server does; at most
    /// `max_in_flight` requests are outstanding (later ones wait and count as late).
    Open {
        profile: RateProfile,
        max_in_flight: usize,
    },
    /// Closed loop: `concurrency` workers each send the next request as soon
    /// as the previous one finished (maximum throughput, for benchmarks).
    Closed { concurrency: usize },
}

/// Everything a run needs.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    /// Target URL; with a scenario, its scheme, host, port and path prefix
    /// are kept and each request's path is appended.
    pub url: Url,
    pub mode: Mode,
    pub duration: Duration,
    /// Stop after this many requests, whatever the duration.
    pub max_requests: Option<u64>,
    /// Per-request timeout (connect + response + body).
    pub timeout: Duration,
    pub scenario: Option<Arc<Scenario>>,
    pub users: Arc<SimulatedUsers>,
    pub seed: u64,
    /// Comparison traffic (preview override, equal per color); `None`:
    /// every request follows the weight.
    pub comparison: Option<Comparison>,
    /// HTTP/2, connection count, TLS trust.
    pub http: HttpOptions,
    /// Where answers' locations go (cf-ray suffix by default); callers keep
    /// a clone to read it live or mark changes.
    pub locations: Arc<LocationTracker>,
}

impl LoadConfig {
    /// A constant-rate open-loop run of `GET url` by 100 anonymous users.
    pub fn constant(url: Url, rps: f64, duration: Duration) -> Result<LoadConfig, LoadError> {
        Ok(LoadConfig {
            url,
            mode: Mode::Open {
                profile: RateProfile::Constant { rps },
                max_in_flight: 1024,
            },
            duration,
            max_requests: None,
            timeout: Duration::from_secs(10),
            scenario: None,
            users: Arc::new(SimulatedUsers::anonymous(100).map_err(|e| LoadError(e.0))?),
            seed: 1,
            comparison: None,
            http: HttpOptions::default(),
            locations: Arc::new(LocationTracker::new(LocationSource::CfRay)),
        })
    }
}

/// Steering a running engine: stop it, or change its rate.
#[derive(Debug, Clone, Default)]
pub struct Control {
    stopped: Arc<AtomicBool>,
    notify: Arc<Notify>,
    pub rate: RateControl,
}

impl Control {
    /// Ends the run early (what Ctrl-C does); what ran is still reported.
    pub fn stop(&self) {
        self.stopped.store(true, Ordering::SeqCst);
        self.notify.notify_waiters();
    }

    pub fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::SeqCst)
    }

    pub(crate) async fn wait_stopped(&self) {
        loop {
            let notified = self.notify.notified();
            if self.is_stopped() {
                return;
            }
            notified.await;
        }
    }
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq)]
pub struct RunEnd {
    pub elapsed: Duration,
    pub sent: u64,
    pub stopped_early: bool,
    /// Handshake times, protocols per color, resumptions.
    pub connections: ConnectionSummary,
}

struct Prepared {
    pool: Pool,
    /// Path and query of each scenario request (origin-form request targets).
    uris: Vec<Uri>,
    scenario: Arc<Scenario>,
    users: Arc<SimulatedUsers>,
    seed: u64,
    timeout: Duration,
    comparison: Option<Comparison>,
    locations: Arc<LocationTracker>,
}

fn prepare(cfg: &LoadConfig) -> Result<Prepared, LoadError> {
    if !matches!(cfg.url.scheme(), "http" | "https") {
        return Err(LoadError(format!(
            "URL {} must be http:// or https://",
            cfg.url
        )));
    }
    if cfg.url.host_str().is_none() {
        return Err(LoadError(format!("URL {} has no host", cfg.url)));
    }
    let scenario = match &cfg.scenario {
        Some(s) => s.clone(),
        None => {
            let mut p = cfg.url.path().to_string();
            if let Some(q) = cfg.url.query() {
                p = format!("{p}?{q}");
            }
            Arc::new(Scenario::single(&p))
        }
    };
    let prefix = if cfg.scenario.is_some() {
        cfg.url.path().trim_end_matches('/').to_string()
    } else {
        String::new()
    };
    let uris = scenario
        .requests
        .iter()
        .map(|r| {
            format!("{prefix}{}", r.path)
                .parse::<Uri>()
                .map_err(|e| LoadError(format!("request {}: bad path: {e}", r.name)))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Prepared {
        pool: Pool::for_url(&cfg.url, cfg.timeout.min(Duration::from_secs(5)), &cfg.http)
            .map_err(LoadError)?,
        uris,
        scenario,
        users: cfg.users.clone(),
        seed: cfg.seed,
        timeout: cfg.timeout,
        comparison: cfg.comparison.clone(),
        locations: cfg.locations.clone(),
    })
}

fn uniform(x: u64) -> f64 {
    (x >> 11) as f64 / (1u64 << 53) as f64
}

/// A closed-loop worker's own connection.
type Slot = Option<SendRequest<Full<Bytes>>>;

/// Sends request `seq` and measures it from `intended`; on `slot`'s
/// connection when given (closed loop), else through the pool.
async fn one_request(
    p: &Prepared,
    seq: u64,
    intended: Instant,
    slot: Option<&mut Slot>,
) -> (Sample, Purpose) {
    let (h, asked) = match &p.comparison {
        Some(c) => {
            let planned = c.plan(seq, p.seed);
            (planned.pick, planned.color)
        }
        None => (splitmix64(seq ^ p.seed.rotate_left(17)), None),
    };
    let i = if p.uris.len() == 1 {
        0
    } else {
        p.scenario.pick_index(uniform(h))
    };
    let tpl = &p.scenario.requests[i];
    let user = p.users.pick(h.rotate_left(32));
    let mut headers = tpl.headers.clone();
    match (&p.comparison, asked) {
        // The previewer's credential stands in for the user's.
        (Some(c), Some(color)) => c.apply(&mut headers, color),
        _ => user.apply(&mut headers),
    }
    let sent = Instant::now();
    let body = tpl.body.as_ref();
    let result = match slot {
        Some(slot) => {
            p.pool
                .send_on(slot, &tpl.method, &p.uris[i], headers, body, p.timeout)
                .await
        }
        None => {
            p.pool
                .send(&tpl.method, &p.uris[i], headers, body, p.timeout)
                .await
        }
    };
    let end = Instant::now();
    let mut purpose = if asked.is_some() {
        Purpose::PreviewMismatch
    } else {
        Purpose::Weighted
    };
    // A failure's first byte is its end: every request has one value.
    let (mut first_byte, mut events_per_s) = (end, None);
    let (color, epoch, outcome) = match result {
        Ok(answer) => {
            first_byte = answer.first_byte();
            if let (Some(a), Some(b)) = (answer.first_event_at, answer.last_event_at) {
                events_per_s = crate::sse::events_per_second(answer.events, b - a);
            }
            let headers = &answer.headers;
            let color =
                SeenColor::from_header(headers.get(HEADER_COLOR).and_then(|v| v.to_str().ok()));
            let epoch = headers
                .get(HEADER_EPOCH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse().ok());
            if asked.is_some() {
                if asked.map(SeenColor::from) == Some(color) && is_override(headers) {
                    purpose = Purpose::Comparison;
                }
            } else {
                user.observe(headers);
            }
            p.pool.stats.served(color, answer.protocol);
            p.locations.observe(headers, color, epoch);
            (color, epoch, RequestOutcome::Status(answer.status))
        }
        // A comparison request that got no answer is still comparison
        // evidence: the color asked for failed it.
        Err(f) => {
            let outcome = match f {
                Failure::Timeout => RequestOutcome::Timeout,
                Failure::Connect => RequestOutcome::ConnectError,
                Failure::Other => RequestOutcome::OtherError,
            };
            match asked {
                Some(c) => {
                    purpose = Purpose::Comparison;
                    (SeenColor::from(c), None, outcome)
                }
                None => (SeenColor::Unknown, None, outcome),
            }
        }
    };
    (
        Sample {
            color,
            latency: end.saturating_duration_since(intended),
            service: end.saturating_duration_since(sent),
            ttfb: first_byte.saturating_duration_since(intended),
            events_per_s,
            outcome,
            epoch,
        },
        purpose,
    )
}

/// The edge says it honoured a preview override.
fn is_override(headers: &hyper::HeaderMap) -> bool {
    headers
        .get(HEADER_REASON)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|r| r.trim() == "override")
}

/// Whether the edge honours the comparison's preview override on the
/// first request of `cfg`: one request asking for each color, each must be
/// answered by that color with reason `override`. `Err` says why not
/// (credential refused, no `preview` role, a route that reads no
/// credentials, an edge that ignores the override).
pub async fn probe_preview(cfg: &LoadConfig) -> Result<(), String> {
    let Some(comparison) = &cfg.comparison else {
        return Err("no preview credential".into());
    };
    let p = prepare(cfg).map_err(|e| e.0)?;
    let tpl = &p.scenario.requests[0];
    for color in [Color::Green, Color::Blue] {
        let mut headers = tpl.headers.clone();
        comparison.apply(&mut headers, color);
        let answer = p
            .pool
            .send(
                &tpl.method,
                &p.uris[0],
                headers,
                tpl.body.as_ref(),
                p.timeout,
            )
            .await
            .map_err(|f| format!("the preview probe got no answer ({f:?})"))?;
        let got = answer
            .headers
            .get(HEADER_COLOR)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("none")
            .to_string();
        let credential = comparison.credential.kind();
        match answer.status {
            401 => return Err(format!("the edge refused the preview {credential} (401)")),
            403 => {
                return Err(format!(
                "the edge refused the preview on {} (403): the {credential} lacks the preview role",
                p.uris[0]
            ))
            }
            _ => {}
        }
        if got != color.as_str() || !is_override(&answer.headers) {
            return Err(format!(
                "the edge ignored the preview override on {} (asked for {color}, answered {got} with status {}): an edge that reads no credential on this route, or a {credential} without the preview role on a public route",
                p.uris[0], answer.status
            ));
        }
    }
    Ok(())
}

/// Runs the load described by `cfg`, recording into `recorder`, until the
/// duration or request count is reached or `control.stop()` is called.
pub async fn run(
    cfg: LoadConfig,
    recorder: Arc<Recorder>,
    control: Control,
) -> Result<RunEnd, LoadError> {
    if cfg.duration.is_zero() {
        return Err(LoadError("duration must be greater than 0".into()));
    }
    match &cfg.mode {
        Mode::Open {
            max_in_flight: 0, ..
        } => return Err(LoadError("the in-flight cap must be at least 1".into())),
        Mode::Closed { concurrency: 0 } => {
            return Err(LoadError("concurrency must be at least 1".into()))
        }
        _ => {}
    }
    let prepared = Arc::new(prepare(&cfg)?);
    // A certificate or protocol refusal ends the run before it starts.
    prepared
        .pool
        .probe()
        .await
        .map_err(|e| LoadError(e.reason))?;
    let connections = prepared.clone();
    let start = Instant::now();
    recorder.set_start(start);
    cfg.locations.set_start(start);
    let deadline = start + cfg.duration;
    let max_requests = cfg.max_requests.unwrap_or(u64::MAX);

    let ticker = {
        let recorder = recorder.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval_at(
                tokio::time::Instant::from_std(start + Duration::from_secs(1)),
                Duration::from_secs(1),
            );
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                every.tick().await;
                recorder.tick();
            }
        })
    };

    let sent = match cfg.mode {
        Mode::Open {
            profile,
            max_in_flight,
        } => {
            open_loop(
                prepared,
                &recorder,
                &control,
                profile,
                max_in_flight,
                start,
                deadline,
                max_requests,
                cfg.timeout,
            )
            .await
        }
        Mode::Closed { concurrency } => {
            closed_loop(
                prepared,
                &recorder,
                &control,
                concurrency,
                deadline,
                max_requests,
                cfg.timeout,
            )
            .await
        }
    };
    ticker.abort();
    recorder.tick();
    let prepared_summary = connections.pool.summary();
    Ok(RunEnd {
        elapsed: start.elapsed(),
        sent,
        stopped_early: control.is_stopped(),
        connections: prepared_summary,
    })
}

#[allow(clippy::too_many_arguments)]
async fn open_loop(
    prepared: Arc<Prepared>,
    recorder: &Arc<Recorder>,
    control: &Control,
    profile: RateProfile,
    max_in_flight: usize,
    start: Instant,
    deadline: Instant,
    max_requests: u64,
    timeout: Duration,
) -> u64 {
    let mut schedule = Schedule::new(profile, control.rate.clone());
    let sem = Arc::new(Semaphore::new(max_in_flight));
    let mut seq = 0u64;
    while seq < max_requests && !control.is_stopped() {
        let intended = start + schedule.next_offset();
        if intended >= deadline {
            break;
        }
        if intended > Instant::now() {
            tokio::select! {
                _ = tokio::time::sleep_until(tokio::time::Instant::from_std(intended)) => {}
                _ = control.wait_stopped() => break,
            }
        }
        recorder.count_scheduled();
        let (permit, waited) = match sem.clone().try_acquire_owned() {
            Ok(p) => (p, false),
            Err(_) => {
                let p = tokio::select! {
                    p = sem.clone().acquire_owned() => p,
                    _ = control.wait_stopped() => break,
                };
                match p {
                    Ok(p) => (p, true),
                    Err(_) => break,
                }
            }
        };
        if Instant::now() > intended + LATE_THRESHOLD {
            recorder.count_late(waited);
        }
        let p = prepared.clone();
        let r = recorder.clone();
        let s = seq;
        r.in_flight_add();
        tokio::spawn(async move {
            let (sample, purpose) = one_request(&p, s, intended, None).await;
            r.record_for(s, &sample, purpose);
            r.in_flight_sub();
            drop(permit);
        });
        seq += 1;
    }
    // Let what is in flight finish (bounded by the request timeout).
    let grace = if control.is_stopped() {
        timeout.min(Duration::from_secs(3))
    } else {
        timeout + Duration::from_secs(1)
    };
    let _ = tokio::time::timeout(grace, sem.acquire_many(max_in_flight as u32)).await;
    seq
}

async fn closed_loop(
    prepared: Arc<Prepared>,
    recorder: &Arc<Recorder>,
    control: &Control,
    concurrency: usize,
    deadline: Instant,
    max_requests: u64,
    timeout: Duration,
) -> u64 {
    let next = Arc::new(AtomicU64::new(0));
    let workers: Vec<_> = (0..concurrency)
        .map(|_| {
            let p = prepared.clone();
            let r = recorder.clone();
            let next = next.clone();
            let control = control.clone();
            tokio::spawn(async move {
                // Per-request counters stay out of the hot loop: `scheduled`
                // and `in_flight` are settled once per worker.
                let mut slot: Slot = None;
                let mut sent = 0u64;
                r.in_flight_add();
                while !control.is_stopped() && Instant::now() < deadline {
                    let seq = next.fetch_add(1, Ordering::Relaxed);
                    if seq >= max_requests {
                        break;
                    }
                    let start = Instant::now();
                    let (sample, purpose) = one_request(&p, seq, start, Some(&mut slot)).await;
                    r.record_for(seq, &sample, purpose);
                    sent += 1;
                }
                r.in_flight_sub();
                sent
            })
        })
        .collect();
    let wait_all = async {
        let mut sent = 0;
        for w in workers {
            sent += w.await.unwrap_or(0);
        }
        sent
    };
    let remaining = deadline.saturating_duration_since(Instant::now());
    let sent = tokio::time::timeout(remaining + timeout + Duration::from_secs(1), wait_all)
        .await
        .unwrap_or_else(|_| next.load(Ordering::Relaxed).min(max_requests));
    recorder.add_scheduled(sent);
    sent
}

#[cfg(test)]
mod tests {
    use super::*;
    use greenlight_test_origin::{Behavior, LatencyDist, Origin, Stall};

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap()
    }

    #[test]
    fn open_loop_hits_the_rate_and_accounts_unknown_color() {
        rt().block_on(async {
            let o = Origin::start("127.0.0.1:0".parse().unwrap(), "blue", Behavior::default())
                .await
                .unwrap();
            let url = Url::parse(&format!("{}/x", o.url())).unwrap();
            let cfg = LoadConfig::constant(url, 200.0, Duration::from_millis(1000)).unwrap();
            let rec = Recorder::new();
            let end = run(cfg, rec.clone(), Control::default()).await.unwrap();
            let snap = rec.snapshot();
            // The origin does not send x-greenlight-color: everything is "unknown".
            let unknown = snap.color(SeenColor::Unknown);
            assert_eq!(end.sent, 200);
            assert_eq!(unknown.requests(), 200);
            assert_eq!(unknown.outcomes.s2xx, 200);
            assert_eq!(o.hits(), 200);
            assert!(!snap.series.is_empty());
        });
    }

    #[test]
    fn stalls_are_not_hidden_by_coordinated_omission() {
        rt().block_on(async {
            // The origin stalls 300 ms every second; 2 connections only, so
            // requests queue behind the stall. Service time stays small for
            // most of them, corrected latency does not.
            let behavior = Behavior {
                stall: Some(Stall {
                    every: Duration::from_secs(1),
                    duration: Duration::from_millis(300),
                }),
                ..Behavior::default()
            };
            let o = Origin::start("127.0.0.1:0".parse().unwrap(), "green", behavior)
                .await
                .unwrap();
            let mut cfg =
                LoadConfig::constant(Url::parse(&o.url()).unwrap(), 200.0, Duration::from_secs(2))
                    .unwrap();
            cfg.mode = Mode::Open {
                profile: RateProfile::Constant { rps: 200.0 },
                max_in_flight: 2,
            };
            let rec = Recorder::new();
            run(cfg, rec.clone(), Control::default()).await.unwrap();
            let snap = rec.snapshot();
            let c = snap.color(SeenColor::Unknown);
            // 30 % of the schedule falls in a stall: the corrected p90 sees it.
            let corrected_p90 = c.corrected.value_at_quantile(0.90);
            let service_p90 = c.uncorrected.value_at_quantile(0.90);
            assert!(corrected_p90 > 50_000, "corrected p90 {corrected_p90} µs");
            assert!(
                service_p90 < corrected_p90 / 3,
                "service p90 {service_p90} µs"
            );
            assert!(snap.counters.late > 0 && snap.counters.cap_waits > 0);
            let _ = LatencyDist::Fixed(Duration::ZERO);
        });
    }

    #[test]
    fn closed_loop_and_stop() {
        rt().block_on(async {
            let o = Origin::start("127.0.0.1:0".parse().unwrap(), "blue", Behavior::default())
                .await
                .unwrap();
            let mut cfg =
                LoadConfig::constant(Url::parse(&o.url()).unwrap(), 1.0, Duration::from_secs(5))
                    .unwrap();
            cfg.mode = Mode::Closed { concurrency: 4 };
            cfg.max_requests = Some(500);
            let rec = Recorder::new();
            let end = run(cfg.clone(), rec.clone(), Control::default())
                .await
                .unwrap();
            assert_eq!((end.sent, rec.snapshot().requests()), (500, 500));

            cfg.max_requests = None;
            let control = Control::default();
            let c2 = control.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(200)).await;
                c2.stop();
            });
            let rec = Recorder::new();
            let end = run(cfg, rec.clone(), control).await.unwrap();
            assert!(end.stopped_early && end.elapsed < Duration::from_secs(2));
            assert_eq!(rec.snapshot().requests(), end.sent);
        });
    }

    #[test]
    fn connection_errors_are_counted() {
        rt().block_on(async {
            // Bind and drop to get a port nobody listens on.
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let url = Url::parse(&format!("http://127.0.0.1:{port}/")).unwrap();
            let mut cfg = LoadConfig::constant(url, 50.0, Duration::from_millis(200)).unwrap();
            cfg.timeout = Duration::from_secs(1);
            let rec = Recorder::new();
            run(cfg, rec.clone(), Control::default()).await.unwrap();
            let u = rec.snapshot();
            let c = u.color(SeenColor::Unknown);
            assert_eq!(c.outcomes.connect_error, c.requests());
            assert_eq!(c.requests(), 10);
            let bad = |u: &str| {
                prepare(
                    &LoadConfig::constant(Url::parse(u).unwrap(), 1.0, Duration::from_secs(1))
                        .unwrap(),
                )
                .err()
                .map(|e| e.0)
                .unwrap_or_default()
            };
            assert!(bad("ftp://x/").contains("must be http:// or https://"));
        });
    }
}
