//! Reports of a run: a human summary (colors side by side), a JSON document
//! with a stable schema, and HdrHistogram percentile distributions (`.hgrm`).
//!
//! # JSON schema `greenlight.load-report/1`
//!
//! ```text
//! {
//!   "schema": "greenlight.load-report/1",   // changes only on breaking changes
//!   "target": "http://127.0.0.1:8787/",     // URL under load
//!   "mode": "open" | "closed",
//!   "target_rps": 500.0 | null,             // initial target rate (open loop)
//!   "duration_s": 30.0,                     // wall time of the run
//!   "stopped_early": false,                 // Ctrl-C or a sequential decision
//!   "requests": 15000,                      // all colors
//!   "counters": { "scheduled", "late", "cap_waits", "in_flight" },
//!   "colors": {                             // keys: "blue", "green", "unknown";
//!     "blue": {                             // a color with no request is omitted
//!       "requests": 13500, "rps": 450.0,
//!       "outcomes": { "s2xx", "s3xx", "s4xx", "s5xx", "other_status",
//!                     "timeout", "connect_error", "other_error" },
//!       "errors": 0, "error_rate": 0.0,     // 5xx + transport failures
//!       "epochs": [3, 4],                   // x-greenlight-epoch values seen
//!       "latency_ms": {                     // corrected (from intended send time)
//!         "min", "mean", "stdev", "max",
//!         "p50", "p75", "p90", "p95", "p99", "p99_9", "p99_99" },
//!       "service_ms": { ...same keys... },  // uncorrected (from actual send)
//!       "ttfb_ms": { ...same keys... },     // corrected time to first byte: the first
//!                                           // event of an event stream, else the first
//!                                           // body byte (absent in older reports)
//!       "events_per_s": {                   // only when answers were event streams
//!         "responses", "min", "p50", "p90", "max" }  // events/s per answer, between
//!     }, ...                                //   its first and last event
//!   },
//!   "series": [ { "t_s": 1.0,               // per-second points
//!       "blue":  { "requests", "rps", "errors", "p50_ms", "p99_ms",
//!                  "ttfb_p50_ms", "ttfb_p99_ms" },
//!       "green": {...}, "unknown": {...} } ],
//!   "verdict": Judgement | null,            // see verdict.rs; null with < 2 colors
//!   "sampling": {                           // which samples were which (absent in old reports)
//!     "mode": "comparison" | "weighted",    // comparison: preview override, equal per color (judged)
//!     "fallback": "why" ,                   // weighted mode: why there was no comparison traffic
//!     "weighted_share": 0.1,                // comparison mode: share that followed the weight
//!     "comparison": {"blue": n, "green": n},
//!     "weighted": {"blue": n, "green": n, "unknown": n},
//!     "preview_mismatch": 0,                // previews answered by another color
//!     "routing_check": RoutingCheck         // with --expect-weight; see routing_check.rs
//!   }
//!   "connections": {                        // absent in reports of older versions
//!     "tls": true, "insecure": false,       // insecure: certificates NOT verified
//!     "opened_http1", "opened_http2", "resumed", "failed", "last_error",
//!     "last_request_error",                 // only when a request failed on an open connection
//!     "resent",                             // idempotent requests sent again: the server closed their kept connection
//!     "handshake_ms": { ...latency keys... },   // TCP + TLS (+ h2 preface), apart
//!     "protocols": { "blue": { "HTTP/2": 1200 }, ... } },  // per color
//!   "locations": {                          // only when answers named a location
//!     "header": "cf-ray",                   // or the --location-header
//!     "changes": [ { "epoch": 5, "at_s": 12.3, "acknowledged": true } ],
//!     "locations": { "FRA": { "requests": { "blue": 10, "green": 4 }, "epochs": [4, 5],
//!         "convergence": [ { "epoch": 5, "new_first_seen_s": 0.8, "old_last_seen_s": 3.1 } ] } } }
//! }
//! ```
//! Fields are only ever added within a schema version; readers should ignore
//! unknown fields.

use crate::histogram::{ColorStats, LatencySummary, OutcomeCounts, SeenColor};
use crate::locations::LocationSummary;
use crate::recorder::{EngineCounters, SeriesPoint, Snapshot};
use crate::transport::ConnectionSummary;
use greenlight_verdict::routing_check::RoutingCheck;
use greenlight_verdict::Judgement;
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write as _;

pub const SCHEMA: &str = "greenlight.load-report/1";

/// The pace of a color's streamed answers (events per second per answer).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct EventRateSummary {
    /// Answers with two events or more.
    pub responses: u64,
    pub min: f64,
    pub p50: f64,
    pub p90: f64,
    pub max: f64,
}

impl EventRateSummary {
    pub fn of(c: &ColorStats) -> Option<EventRateSummary> {
        let h = &c.event_rate;
        let q = |x: f64| c.events_per_s(x).unwrap_or(0.0);
        (!h.is_empty()).then(|| EventRateSummary {
            responses: h.len(),
            min: h.min() as f64 / crate::histogram::EVENT_RATE_SCALE,
            p50: q(0.5),
            p90: q(0.9),
            max: h.max() as f64 / crate::histogram::EVENT_RATE_SCALE,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ColorReport {
    pub requests: u64,
    pub rps: f64,
    pub outcomes: OutcomeCounts,
    pub errors: u64,
    pub error_rate: f64,
    pub epochs: Vec<u64>,
    pub latency_ms: LatencySummary,
    pub service_ms: LatencySummary,
    #[serde(default)]
    pub ttfb_ms: LatencySummary,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub events_per_s: Option<EventRateSummary>,
}

impl ColorReport {
    pub fn of(c: &ColorStats, secs: f64) -> ColorReport {
        let n = c.requests();
        ColorReport {
            requests: n,
            rps: if secs > 0.0 { n as f64 / secs } else { 0.0 },
            outcomes: c.outcomes,
            errors: c.outcomes.errors(),
            error_rate: if n > 0 {
                c.outcomes.errors() as f64 / n as f64
            } else {
                0.0
            },
            epochs: c.epochs.iter().copied().collect(),
            latency_ms: LatencySummary::of(&c.corrected),
            service_ms: LatencySummary::of(&c.uncorrected),
            ttfb_ms: LatencySummary::of(&c.ttfb),
            events_per_s: EventRateSummary::of(c),
        }
    }
}

/// Which samples were comparison and which weighted (the JSON report's
/// `sampling` object).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SamplingReport {
    /// `"comparison"` (preview override, equal per color) or `"weighted"`.
    pub mode: String,
    /// Why there was no comparison traffic (weighted mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback: Option<String>,
    /// Share of requests sent to follow the weight (comparison mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weighted_share: Option<f64>,
    /// Comparison samples per color (what the verdict compared in comparison mode).
    pub comparison: std::collections::BTreeMap<String, u64>,
    /// Weighted samples per color (routing check, or the fallback's evidence).
    pub weighted: std::collections::BTreeMap<String, u64>,
    /// Comparison requests answered by another color than asked for.
    pub preview_mismatch: u64,
    /// The weighted split against the weight given with `--expect-weight`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub routing_check: Option<RoutingCheck>,
}

impl SamplingReport {
    pub fn of(
        snap: &Snapshot,
        comparison: Option<f64>,
        fallback: Option<String>,
        routing_check: Option<RoutingCheck>,
    ) -> SamplingReport {
        let per = |f: &dyn Fn(SeenColor) -> u64| {
            SeenColor::ALL
                .iter()
                .map(|c| (c.as_str().to_string(), f(*c)))
                .filter(|(_, n)| *n > 0)
                .collect()
        };
        SamplingReport {
            mode: if comparison.is_some() {
                "comparison"
            } else {
                "weighted"
            }
            .into(),
            fallback,
            weighted_share: comparison,
            comparison: per(&|c| snap.comparison(c).requests()),
            weighted: per(&|c| snap.weighted_requests(c)),
            preview_mismatch: snap.counters.preview_mismatch,
            routing_check,
        }
    }

    /// Lines for the human summary.
    pub fn human(&self) -> String {
        let counts = |m: &std::collections::BTreeMap<String, u64>| {
            if m.is_empty() {
                "none".to_string()
            } else {
                m.iter()
                    .map(|(c, n)| format!("{c} {n}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        };
        let mut out = match &self.fallback {
            Some(why) => format!("sampling: weighted only ({why})\n"),
            None => format!(
                "sampling: comparison traffic (judged): {}; weighted (routing check): {}{}\n",
                counts(&self.comparison),
                counts(&self.weighted),
                if self.preview_mismatch > 0 {
                    format!("; {} previews not honoured", self.preview_mismatch)
                } else {
                    String::new()
                }
            ),
        };
        if let Some(r) = &self.routing_check {
            out.push_str(&r.describe());
            out.push('\n');
        }
        out
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub schema: String,
    pub target: String,
    pub mode: String,
    pub target_rps: Option<f64>,
    pub duration_s: f64,
    pub stopped_early: bool,
    pub requests: u64,
    pub counters: EngineCounters,
    pub colors: BTreeMap<SeenColor, ColorReport>,
    pub series: Vec<SeriesPoint>,
    pub verdict: Option<Judgement>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sampling: Option<SamplingReport>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connections: Option<ConnectionSummary>,
    /// Per location (only when answers named one: cf-ray or --location-header).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locations: Option<LocationSummary>,
}

impl Report {
    pub fn build(
        target: &str,
        mode: &str,
        target_rps: Option<f64>,
        snap: &Snapshot,
        duration_s: f64,
        stopped_early: bool,
        verdict: Option<Judgement>,
    ) -> Report {
        let colors = SeenColor::ALL
            .iter()
            .filter(|c| snap.color(**c).requests() > 0)
            .map(|c| (*c, ColorReport::of(snap.color(*c), duration_s)))
            .collect();
        Report {
            schema: SCHEMA.to_string(),
            target: target.to_string(),
            mode: mode.to_string(),
            target_rps,
            duration_s,
            stopped_early,
            requests: snap.requests(),
            counters: snap.counters,
            colors,
            series: snap.series.clone(),
            verdict,
            sampling: None,
            connections: None,
            locations: None,
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
    }

    pub fn from_json(text: &str) -> Result<Report, String> {
        let r: Report =
            serde_json::from_str(text).map_err(|e| format!("not a load report: {e}"))?;
        if r.schema != SCHEMA {
            return Err(format!("report schema {:?} is not {SCHEMA:?}", r.schema));
        }
        Ok(r)
    }

    /// The side-by-side summary printed at the end of a run.
    pub fn human(&self) -> String {
        let mut out = String::new();
        let cols: Vec<(&SeenColor, &ColorReport)> = self.colors.iter().collect();
        let _ = writeln!(
            out,
            "{} requests in {:.1} s to {} ({} loop{}){}",
            self.requests,
            self.duration_s,
            self.target,
            self.mode,
            self.target_rps
                .map(|r| format!(", target {r:.0} req/s"))
                .unwrap_or_default(),
            if self.stopped_early {
                ", stopped early"
            } else {
                ""
            }
        );
        if let Some(c) = &self.connections {
            out.push_str(&connection_lines(c));
        }
        if self.counters.late > 0 {
            let _ = writeln!(
                out,
                "{} requests could not be sent on time ({} waited for the in-flight cap)",
                self.counters.late, self.counters.cap_waits
            );
        }
        if cols.is_empty() {
            let _ = writeln!(out, "no responses recorded");
            return out;
        }
        let _ = write!(out, "\n{:<22}", "");
        for (c, _) in &cols {
            let _ = write!(out, "{:>14}", c.as_str());
        }
        out.push('\n');
        let mut row = |name: &str, f: &dyn Fn(&ColorReport) -> String| {
            let _ = write!(out, "{name:<22}");
            for (_, r) in &cols {
                let _ = write!(out, "{:>14}", f(r));
            }
            out.push('\n');
        };
        row("requests", &|r| r.requests.to_string());
        row("req/s", &|r| format!("{:.1}", r.rps));
        row("2xx / 3xx", &|r| {
            format!("{}/{}", r.outcomes.s2xx, r.outcomes.s3xx)
        });
        row("4xx / 5xx", &|r| {
            format!("{}/{}", r.outcomes.s4xx, r.outcomes.s5xx)
        });
        row("timeouts / conn err", &|r| {
            format!("{}/{}", r.outcomes.timeout, r.outcomes.connect_error)
        });
        row("error rate", &|r| format!("{:.3}%", r.error_rate * 100.0));
        row("epochs", &|r| {
            r.epochs
                .iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(",")
        });
        let ms = |v: f64| format!("{v:.3} ms");
        row("latency p50", &|r| ms(r.latency_ms.p50));
        row("latency p90", &|r| ms(r.latency_ms.p90));
        row("latency p99", &|r| ms(r.latency_ms.p99));
        row("latency p99.9", &|r| ms(r.latency_ms.p99_9));
        row("latency p99.99", &|r| ms(r.latency_ms.p99_99));
        row("latency max", &|r| ms(r.latency_ms.max));
        row("service p50 (uncorr.)", &|r| ms(r.service_ms.p50));
        row("service p99 (uncorr.)", &|r| ms(r.service_ms.p99));
        row("ttfb p50", &|r| ms(r.ttfb_ms.p50));
        row("ttfb p99", &|r| ms(r.ttfb_ms.p99));
        if cols.iter().any(|(_, r)| r.events_per_s.is_some()) {
            let rate = |r: &ColorReport, f: fn(&EventRateSummary) -> f64| {
                r.events_per_s
                    .as_ref()
                    .map(|e| format!("{:.1}", f(e)))
                    .unwrap_or_else(|| "-".into())
            };
            row("events/s p50", &|r| rate(r, |e| e.p50));
            row("events/s min", &|r| rate(r, |e| e.min));
        }
        if let Some(l) = &self.locations {
            out.push_str(&l.text());
        }
        if let Some(sampling) = &self.sampling {
            out.push('\n');
            out.push_str(&sampling.human());
        }
        if let Some(j) = &self.verdict {
            let _ = writeln!(out, "\nverdict ({}): {}", j.mode, j.verdict);
            for r in &j.reasons {
                let _ = writeln!(out, "  - {r}");
            }
        }
        out
    }
}

/// Connections, handshake times and the protocol each color was served with.
fn connection_lines(c: &ConnectionSummary) -> String {
    let mut out = String::new();
    if c.insecure {
        let _ = writeln!(out, "{}", crate::tls::INSECURE_WARNING);
    }
    let opened = c.opened_http1 + c.opened_http2;
    if opened > 0 || c.failed > 0 {
        let _ = writeln!(
            out,
            "connections: {opened} opened ({} HTTP/1.1, {} HTTP/2){}, {} failed; connect{} p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            c.opened_http1,
            c.opened_http2,
            if c.tls {
                format!(", TLS, {} resumed", c.resumed)
            } else {
                String::new()
            },
            c.failed,
            if c.tls { " + TLS handshake" } else { "" },
            c.handshake_ms.p50,
            c.handshake_ms.p99,
            c.handshake_ms.max
        );
    }
    if let Some(e) = &c.last_error {
        let _ = writeln!(out, "last connection error: {e}");
    }
    if let Some(e) = &c.last_request_error {
        let _ = writeln!(out, "last request error: {e}");
    }
    if c.resent > 0 {
        let _ = writeln!(
            out,
            "{} idempotent requests sent again on a fresh connection: the server closed the kept one as they were written",
            c.resent
        );
    }
    if !c.protocols.is_empty() {
        let served: Vec<String> = c
            .protocols
            .iter()
            .map(|(color, per)| {
                let p: Vec<String> = per.iter().map(|(p, n)| format!("{p} {n}")).collect();
                format!("{} {}", color.as_str(), p.join(" + "))
            })
            .collect();
        let _ = writeln!(out, "served over: {}", served.join(" | "));
    }
    out
}

/// HdrHistogram's percentile-distribution text (as `HistogramLogProcessor`
/// and wrk2 print it), values in milliseconds, readable by the standard
/// HdrHistogram plotters.
pub fn hgrm(h: &Histogram<u64>) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:>12} {:>14} {:>10} {:>14}\n",
        "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
    );
    let scale = 1000.0;
    if h.is_empty() {
        return out;
    }
    let mut cumulative = 0u64;
    for v in h.iter_quantiles(5) {
        cumulative += v.count_since_last_iteration();
        let p = v.quantile_iterated_to();
        let value = h.highest_equivalent(v.value_iterated_to()) as f64 / scale;
        if p < 1.0 {
            let _ = writeln!(
                out,
                "{:>12.3} {:>2.12} {:>10} {:>14.2}",
                value,
                p,
                cumulative,
                1.0 / (1.0 - p)
            );
        } else {
            let _ = writeln!(out, "{:>12.3} {:>2.12} {:>10}", value, p, cumulative);
        }
    }
    let _ = writeln!(
        out,
        "#[Mean    = {:>12.3}, StdDeviation   = {:>12.3}]",
        h.mean() / scale,
        h.stdev() / scale
    );
    let _ = writeln!(
        out,
        "#[Max     = {:>12.3}, Total count    = {:>12}]",
        h.max() as f64 / scale,
        h.len()
    );
    let _ = writeln!(
        out,
        "#[Buckets = {:>12}, SubBuckets     = {:>12}]",
        h.buckets(),
        (2.0 * 10f64.powi(i32::from(h.sigfig())))
            .log2()
            .ceil()
            .exp2() as u64
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::histogram::SummaryOf;
    use crate::histogram::{RequestOutcome, Sample};
    use crate::recorder::Recorder;
    use greenlight_verdict::{judge, ColorSummary, Policy};
    use std::time::Duration;

    fn snapshot() -> Snapshot {
        let r = Recorder::new();
        for i in 0..1000u64 {
            let color = if i % 4 == 0 {
                SeenColor::Green
            } else {
                SeenColor::Blue
            };
            let ms = 5 + i % 7 + if color == SeenColor::Green { 2 } else { 0 };
            r.record(
                i,
                &Sample {
                    color,
                    latency: Duration::from_millis(ms),
                    service: Duration::from_millis(ms - 1),
                    ttfb: Duration::from_millis(ms / 2),
                    events_per_s: (color == SeenColor::Green).then_some(25.0),
                    outcome: if i % 100 == 0 {
                        RequestOutcome::Status(503)
                    } else {
                        RequestOutcome::Status(200)
                    },
                    epoch: Some(7),
                },
            );
            if i == 500 {
                r.tick_at(Duration::from_secs(1));
            }
        }
        r.tick_at(Duration::from_secs(2));
        r.snapshot()
    }

    #[test]
    fn json_round_trips_and_is_stable() {
        let snap = snapshot();
        let j = judge(
            &Policy::default(),
            &ColorSummary::of(snap.color(SeenColor::Blue)),
            &ColorSummary::of(snap.color(SeenColor::Green)),
        );
        let report = Report::build(
            "http://127.0.0.1:1/",
            "open",
            Some(500.0),
            &snap,
            2.0,
            false,
            Some(j),
        );
        let text = report.to_json();
        let back = Report::from_json(&text).unwrap();
        // Exact floats (serde_json `float_roundtrip`): parse → print is a fixpoint.
        assert!(back == report, "report changed in a JSON round trip");
        assert!(back.to_json() == text);
        assert_eq!(
            (back.requests, back.colors.len(), back.series.len()),
            (report.requests, 2, 2)
        );
        assert_eq!(
            back.colors[&SeenColor::Green].outcomes,
            report.colors[&SeenColor::Green].outcomes
        );
        assert_eq!(
            back.verdict.as_ref().map(|j| j.verdict),
            Some(greenlight_verdict::Verdict::Fail)
        );
        // Documented field names stay put.
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["schema"], SCHEMA);
        assert_eq!(v["colors"]["blue"]["requests"], 750);
        assert_eq!(v["colors"]["green"]["outcomes"]["s5xx"], 10);
        assert_eq!(v["colors"]["green"]["epochs"][0], 7);
        assert!(
            v["colors"]["green"]["latency_ms"]["p99_9"]
                .as_f64()
                .unwrap()
                > 7.0
        );
        assert!(v["colors"].get("unknown").is_none());
        assert!(v["colors"]["blue"]["ttfb_ms"]["p50"].as_f64().unwrap() > 2.0);
        let pace = v["colors"]["green"]["events_per_s"]["p50"]
            .as_f64()
            .unwrap();
        assert!((pace - 25.0).abs() < 0.05, "{pace}");
        assert_eq!(v["colors"]["green"]["events_per_s"]["responses"], 250);
        assert!(v["colors"]["blue"].get("events_per_s").is_none());
        assert!(v["series"][0]["blue"]["ttfb_p99_ms"].is_number());
        assert_eq!(v["series"].as_array().unwrap().len(), 2);
        assert!(v["series"][0]["blue"]["p99_ms"].is_number());
        assert!(matches!(
            v["verdict"]["verdict"].as_str(),
            Some("pass" | "fail" | "inconclusive")
        ));
        let mut other = v.clone();
        other["schema"] = "greenlight.load-report/2".into();
        assert!(Report::from_json(&other.to_string())
            .unwrap_err()
            .contains("schema"));
    }

    #[test]
    fn human_summary_is_side_by_side() {
        let snap = snapshot();
        let report = Report::build("http://x/", "open", Some(500.0), &snap, 2.0, false, None);
        let text = report.human();
        let header = text.lines().find(|l| l.contains("blue")).unwrap();
        assert!(header.find("blue").unwrap() < header.find("green").unwrap());
        assert!(text.contains("latency p99.99"));
        assert!(text.contains("service p99 (uncorr.)"));
        assert!(text.contains("ttfb p99"));
        let events = text
            .lines()
            .find(|l| l.starts_with("events/s p50"))
            .unwrap();
        assert!(events.contains('-') && events.contains("25.0"), "{events}");
    }

    #[test]
    fn hgrm_has_the_standard_shape() {
        let snap = snapshot();
        let text = hgrm(&snap.color(SeenColor::Blue).corrected);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].contains("Value") && lines[0].contains("1/(1-Percentile)"));
        let first: Vec<&str> = lines[2].split_whitespace().collect();
        assert_eq!(first.len(), 4);
        assert!(first[1].parse::<f64>().unwrap() == 0.0);
        assert!(text.contains("#[Mean    ="));
        assert!(text.contains("Total count    =          750]"));
        // The last data line reaches percentile 1.0.
        let last = lines.iter().rev().find(|l| !l.starts_with('#')).unwrap();
        assert!(last.split_whitespace().nth(1).unwrap().starts_with("1.0"));
    }
}
