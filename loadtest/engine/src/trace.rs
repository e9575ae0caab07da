//! Open-loop load that keeps one record per request: when it was meant to
//! be sent, when it was sent, when its answer was complete, the status, the
//! headers asked for and the start of the body. For end-to-end checks that
//! need more than the engine's histograms (which color answered a request
//! sent at a given moment, under which epoch).
//!
//! Bounded in both count and time: the run sends at most `max_requests`,
//! sends nothing after `duration` (even when it fell behind its schedule)
//! or once its [`Control`] is stopped, and waits at most `timeout` plus a
//! second for what is still in flight.
//! A record exists for every request sent, with a [`Failure`] when no
//! answer came.

use crate::client::{Control, LoadError};
use crate::schedule::{RateControl, RateProfile, Schedule};
use crate::transport::{Failure, Pool};
use bytes::Bytes;
use hyper::header::{HeaderMap, HeaderName};
use hyper::{Method, Uri};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

/// One kind of request of the mix; request `seq` uses template
/// `seq % templates.len()`, so the mix is exact and reproducible.
#[derive(Debug, Clone)]
pub struct Template {
    pub method: Method,
    /// Origin-form request target (`/path?query`).
    pub target: Uri,
    pub headers: HeaderMap,
}

impl Template {
    /// A `GET target` with `headers` (`(name, value)` pairs).
    pub fn get(target: &str, headers: &[(&str, &str)]) -> Result<Template, LoadError> {
        let bad = |what: String| LoadError(format!("template {target}: {what}"));
        let mut map = HeaderMap::new();
        for (k, v) in headers {
            let name = HeaderName::from_bytes(k.as_bytes()).map_err(|e| bad(e.to_string()))?;
            map.append(
                name,
                v.parse().map_err(|_| bad(format!("bad value for {k}")))?,
            );
        }
        Ok(Template {
            method: Method::GET,
            target: target
                .parse()
                .map_err(|_| bad("bad request target".into()))?,
            headers: map,
        })
    }
}

/// What a traced run sends.
#[derive(Debug, Clone)]
pub struct TraceConfig {
    /// `host:port` of the server (plain HTTP).
    pub authority: String,
    pub templates: Vec<Template>,
    /// Constant arrival rate, requests per second.
    pub rate: f64,
    /// Nothing is sent after this much time from the start.
    pub duration: Duration,
    pub max_requests: u64,
    /// Requests outstanding at most; a request that has to wait for a slot
    /// is sent late (and its record says so).
    pub max_in_flight: usize,
    /// Per request: connect, response and body.
    pub timeout: Duration,
    /// Response headers to keep in each record (the rest are dropped).
    pub keep_headers: Vec<HeaderName>,
    /// Bytes of each response body to keep.
    pub keep_body: usize,
}

/// A complete answer.
#[derive(Debug, Clone)]
pub struct Traced {
    pub status: u16,
    /// Only the names in [`TraceConfig::keep_headers`].
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Traced {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// One request. Times are offsets from the run's start.
#[derive(Debug, Clone)]
pub struct TraceRecord {
    pub seq: u64,
    pub template: usize,
    /// When the schedule meant it to be sent.
    pub intended: Duration,
    /// Just before it was handed to the connection.
    pub sent: Duration,
    /// When the whole answer was in, or the request failed.
    pub done: Duration,
    pub result: Result<Traced, Failure>,
}

/// The outcome of a traced run.
#[derive(Debug)]
pub struct TraceRun {
    /// Sorted by `seq`.
    pub records: Vec<TraceRecord>,
    /// True when the duration ran out while the sender was behind its
    /// schedule (waiting for an in-flight slot).
    pub cut_short: bool,
    /// Requests whose answer was still missing when the run gave up
    /// waiting; they have no record.
    pub abandoned: u64,
    /// Why the last failed request failed (hyper's error and its causes).
    pub last_request_error: Option<String>,
    /// Idempotent requests sent again because the server closed their kept
    /// connection as they were written (`ConnectionSummary::resent`).
    pub resent: u64,
}

impl TraceRun {
    /// Requests per second actually sent: records over the span from the
    /// first to the last send (the rate the server was really offered).
    pub fn achieved_rate(&self) -> f64 {
        let (first, last) = match (self.records.first(), self.records.last()) {
            (Some(f), Some(l)) if self.records.len() > 1 => (f.sent, l.sent),
            _ => return 0.0,
        };
        let span = last.saturating_sub(first).as_secs_f64();
        if span <= 0.0 {
            return 0.0;
        }
        // n sends span n - 1 gaps.
        (self.records.len() - 1) as f64 / span
    }

    /// How far behind its schedule each request was sent, sorted.
    pub fn send_lag(&self) -> Vec<Duration> {
        let mut lag: Vec<Duration> = self
            .records
            .iter()
            .map(|r| r.sent.saturating_sub(r.intended))
            .collect();
        lag.sort();
        lag
    }
}

/// Sends `cfg`'s mix at a constant rate from `start` (which may be slightly
/// in the future) until the duration, the request count or `control.stop()`
/// ends it, and returns a record per request.
pub async fn run(
    cfg: TraceConfig,
    start: Instant,
    control: Control,
) -> Result<TraceRun, LoadError> {
    if cfg.templates.is_empty() {
        return Err(LoadError("a traced run needs at least one template".into()));
    }
    if !(cfg.rate.is_finite() && cfg.rate > 0.0) {
        return Err(LoadError(format!("rate {} must be > 0", cfg.rate)));
    }
    if cfg.max_in_flight == 0 {
        return Err(LoadError("the in-flight cap must be at least 1".into()));
    }
    let pool = Arc::new(
        Pool::new(&cfg.authority, cfg.timeout.min(Duration::from_secs(5))).map_err(LoadError)?,
    );
    let cfg = Arc::new(cfg);
    let deadline = start + cfg.duration;
    let mut schedule = Schedule::new(
        RateProfile::Constant { rps: cfg.rate },
        RateControl::default(),
    );
    let sem = Arc::new(Semaphore::new(cfg.max_in_flight));
    let records = Arc::new(Mutex::new(Vec::new()));
    let mut seq = 0u64;
    let mut cut_short = false;
    while seq < cfg.max_requests && !control.is_stopped() {
        let intended = schedule.next_offset();
        if start + intended >= deadline {
            break;
        }
        tokio::select! {
            _ = tokio::time::sleep_until(tokio::time::Instant::from_std(start + intended)) => {}
            _ = control.wait_stopped() => break,
        }
        let slot = tokio::time::timeout_at(
            tokio::time::Instant::from_std(deadline),
            sem.clone().acquire_owned(),
        );
        let permit = tokio::select! {
            p = slot => match p {
                Ok(Ok(p)) => p,
                _ => {
                    cut_short = true;
                    break;
                }
            },
            _ = control.wait_stopped() => break,
        };
        if Instant::now() >= deadline {
            cut_short = true;
            break;
        }
        let (pool, cfg, records) = (pool.clone(), cfg.clone(), records.clone());
        let s = seq;
        tokio::spawn(async move {
            let template = (s % cfg.templates.len() as u64) as usize;
            let t = &cfg.templates[template];
            let sent = start.elapsed();
            let result = pool
                .send_keeping_body(
                    &t.method,
                    &t.target,
                    t.headers.clone(),
                    None,
                    cfg.timeout,
                    cfg.keep_body,
                )
                .await
                .map(|a| Traced {
                    status: a.status,
                    headers: keep(&a.headers, &cfg.keep_headers),
                    body: a.body,
                });
            let record = TraceRecord {
                seq: s,
                template,
                intended,
                sent,
                done: start.elapsed(),
                result,
            };
            if let Ok(mut r) = records.lock() {
                r.push(record);
            }
            drop(permit);
        });
        seq += 1;
    }
    // Everything sent gets its answer or its timeout: wait for all slots.
    let all = u32::try_from(cfg.max_in_flight).unwrap_or(u32::MAX);
    let _ = tokio::time::timeout(cfg.timeout + Duration::from_secs(1), sem.acquire_many(all)).await;
    let mut records = match records.lock() {
        Ok(mut r) => std::mem::take(&mut *r),
        Err(_) => Vec::new(),
    };
    records.sort_by_key(|r| r.seq);
    let summary = pool.summary();
    Ok(TraceRun {
        abandoned: seq - records.len() as u64,
        records,
        cut_short,
        last_request_error: summary.last_request_error,
        resent: summary.resent,
    })
}

fn keep(headers: &HeaderMap, names: &[HeaderName]) -> HeaderMap {
    let mut out = HeaderMap::new();
    for name in names {
        for v in headers.get_all(name) {
            out.append(name.clone(), v.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use greenlight_test_origin::{Behavior, LatencyDist, Origin};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn records_every_request_on_schedule() {
        let o = Origin::start(
            "127.0.0.1:0".parse().unwrap(),
            "green",
            Behavior {
                latency: LatencyDist::Fixed(Duration::from_millis(20)),
                ..Behavior::default()
            },
        )
        .await
        .unwrap();
        let cfg = TraceConfig {
            authority: o.addr.to_string(),
            templates: vec![
                Template::get("/a", &[("x-test", "1")]).unwrap(),
                Template::get("/b?q=2", &[]).unwrap(),
            ],
            rate: 200.0,
            duration: Duration::from_millis(500),
            max_requests: 1_000,
            max_in_flight: 64,
            timeout: Duration::from_secs(2),
            keep_headers: vec![HeaderName::from_static("x-origin-color")],
            keep_body: 4096,
        };
        let run = run(cfg.clone(), Instant::now(), Control::default())
            .await
            .unwrap();
        assert_eq!((run.records.len(), run.abandoned), (100, 0));
        assert!(!run.cut_short);
        assert_eq!(o.hits(), 100);
        for (i, r) in run.records.iter().enumerate() {
            assert_eq!((r.seq, r.template), (i as u64, i % 2));
            let a = r.result.as_ref().unwrap();
            assert_eq!((a.status, a.header("x-origin-color")), (200, Some("green")));
            assert_eq!(a.headers.len(), 1, "only the kept headers");
            let body: serde_json::Value = serde_json::from_slice(&a.body).unwrap();
            assert_eq!(body["color"], "green");
            assert_eq!(body["path"], if i % 2 == 0 { "/a" } else { "/b" });
            assert!(r.done >= r.sent + Duration::from_millis(20));
        }
        let rate = run.achieved_rate();
        assert!((rate - 200.0).abs() < 20.0, "rate {rate}");
        assert!(run.send_lag()[50] < Duration::from_millis(50));

        // Stopped after 200 ms of a 500 ms run: about 40 requests, all answered.
        let control = Control::default();
        let stopper = control.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(200)).await;
            stopper.stop();
        });
        let run = super::run(cfg, Instant::now(), control).await.unwrap();
        assert!(
            (35..=45).contains(&run.records.len()),
            "{}",
            run.records.len()
        );
        assert!(!run.cut_short && run.records.iter().all(|r| r.result.is_ok()));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_slow_server_cannot_stretch_the_run() {
        // One slot and a 300 ms origin: the sender falls behind and stops at
        // the duration instead of sending the whole schedule late.
        let o = Origin::start(
            "127.0.0.1:0".parse().unwrap(),
            "blue",
            Behavior {
                latency: LatencyDist::Fixed(Duration::from_millis(300)),
                ..Behavior::default()
            },
        )
        .await
        .unwrap();
        let cfg = TraceConfig {
            authority: o.addr.to_string(),
            templates: vec![Template::get("/", &[]).unwrap()],
            rate: 100.0,
            duration: Duration::from_millis(700),
            max_requests: 1_000,
            max_in_flight: 1,
            timeout: Duration::from_secs(2),
            keep_headers: Vec::new(),
            keep_body: 0,
        };
        let started = Instant::now();
        let run = run(cfg, started, Control::default()).await.unwrap();
        assert!(run.cut_short);
        assert!(
            (2..=4).contains(&run.records.len()),
            "{}",
            run.records.len()
        );
        assert!(started.elapsed() < Duration::from_millis(1_500));
        assert!(run.records.iter().all(|r| r.result.is_ok()));
    }
}
