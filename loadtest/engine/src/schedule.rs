//! The open-loop arrival schedule: when each request is *meant* to be sent.
//!
//! Latency is measured from these intended times, not from when the request
//! actually left (wrk2's coordinated-omission correction): a server that
//! stalls cannot slow the sender down and hide the requests it would have
//! received.

use greenlight_common::config_error::ConfigError;
use greenlight_common::duration::parse_duration;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Target request rate over time (requests per second).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum RateProfile {
    Constant {
        rps: f64,
    },
    /// Linear from `from` to `to` over `over`, then `to`.
    Ramp {
        from: f64,
        to: f64,
        over: Duration,
    },
    /// `(start offset, rps)` pairs, sorted by start; the first starts at 0.
    Steps {
        steps: Vec<(Duration, f64)>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateError(pub String);

impl fmt::Display for RateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for RateError {}

impl From<ConfigError> for RateError {
    fn from(e: ConfigError) -> RateError {
        RateError(e.0)
    }
}

fn positive_rate(s: &str) -> Result<f64, RateError> {
    let v: f64 = s
        .trim()
        .parse()
        .map_err(|_| RateError(format!("rate {s:?} is not a number")))?;
    if !(v.is_finite() && v > 0.0) {
        return Err(RateError(format!(
            "rate must be greater than 0 requests/s, got {s}"
        )));
    }
    if v > 10_000_000.0 {
        return Err(RateError(format!(
            "rate {v} is above the 10 000 000 requests/s limit"
        )));
    }
    Ok(v)
}

impl RateProfile {
    /// Parses `500` (constant), `100..1000` (linear ramp over `run`), or
    /// `100,500@10s,1000@20s` (steps: 100 from the start, 500 from 10 s, ...).
    pub fn parse(spec: &str, run: Duration) -> Result<RateProfile, RateError> {
        let spec = spec.trim();
        if let Some((a, b)) = spec.split_once("..") {
            return Ok(RateProfile::Ramp {
                from: positive_rate(a)?,
                to: positive_rate(b)?,
                over: run,
            });
        }
        if spec.contains(',') || spec.contains('@') {
            let mut steps = Vec::new();
            for (i, part) in spec.split(',').enumerate() {
                let (rate, at) = match part.split_once('@') {
                    Some((r, at)) => (positive_rate(r)?, parse_duration(at)?),
                    None if i == 0 => (positive_rate(part)?, Duration::ZERO),
                    None => {
                        return Err(RateError(format!(
                            "rate step {part:?} needs a start time, like 500@10s"
                        )))
                    }
                };
                if let Some(&(prev, _)) = steps.last() {
                    if at <= prev {
                        return Err(RateError(format!(
                            "rate steps must start in increasing order ({part:?})"
                        )));
                    }
                }
                steps.push((at, rate));
            }
            if steps.first().map(|s| s.0) != Some(Duration::ZERO) {
                return Err(RateError("the first rate step must start at 0".into()));
            }
            return Ok(RateProfile::Steps { steps });
        }
        Ok(RateProfile::Constant {
            rps: positive_rate(spec)?,
        })
    }

    /// The target rate at offset `t`.
    pub fn rate_at(&self, t: Duration) -> f64 {
        match self {
            RateProfile::Constant { rps } => *rps,
            RateProfile::Ramp { from, to, over } => {
                if over.is_zero() || t >= *over {
                    *to
                } else {
                    from + (to - from) * (t.as_secs_f64() / over.as_secs_f64())
                }
            }
            RateProfile::Steps { steps } => steps
                .iter()
                .take_while(|(at, _)| *at <= t)
                .last()
                .or(steps.first())
                .map_or(1.0, |s| s.1),
        }
    }

    /// Requests the profile asks for in `[0, run)` (for progress bars).
    pub fn expected_requests(&self, run: Duration) -> u64 {
        // Integrate in 10 ms slices rather than stepping request by request.
        let step = Duration::from_millis(10);
        let mut t = Duration::ZERO;
        let mut acc = 0.0;
        while t < run {
            acc += self.rate_at(t) * step.as_secs_f64().min((run - t).as_secs_f64());
            t += step;
        }
        acc.round() as u64
    }
}

/// A rate override shared with the running engine (e.g. a dashboard slider):
/// while set, it replaces the profile's rate from the next request on.
#[derive(Debug, Clone, Default)]
pub struct RateControl(Arc<AtomicU64>);

impl RateControl {
    /// Sets the rate (requests/s); `None` returns to the profile.
    pub fn set(&self, rps: Option<f64>) {
        let bits = match rps {
            Some(r) if r.is_finite() && r > 0.0 => r.to_bits(),
            _ => 0,
        };
        self.0.store(bits, Ordering::Relaxed);
    }

    pub fn get(&self) -> Option<f64> {
        match self.0.load(Ordering::Relaxed) {
            0 => None,
            bits => Some(f64::from_bits(bits)),
        }
    }
}

/// Generates intended send offsets from the start of the run.
#[derive(Debug, Clone)]
pub struct Schedule {
    profile: RateProfile,
    control: RateControl,
    next: Duration,
}

impl Schedule {
    pub fn new(profile: RateProfile, control: RateControl) -> Schedule {
        Schedule {
            profile,
            control,
            next: Duration::ZERO,
        }
    }

    /// The intended offset of the next request; each call advances by
    /// 1 / rate(t) (the override, when set, wins).
    pub fn next_offset(&mut self) -> Duration {
        let at = self.next;
        let rate = self
            .control
            .get()
            .unwrap_or_else(|| self.profile.rate_at(at));
        let gap = 1.0 / rate.max(1e-3);
        self.next = at + Duration::from_secs_f64(gap);
        at
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_rate_is_evenly_spaced() {
        let mut s = Schedule::new(
            RateProfile::Constant { rps: 1000.0 },
            RateControl::default(),
        );
        let times: Vec<Duration> = (0..1000).map(|_| s.next_offset()).collect();
        assert_eq!(times[0], Duration::ZERO);
        assert!((times[1].as_secs_f64() - 0.001).abs() < 1e-9);
        assert!((times[999].as_secs_f64() - 0.999).abs() < 1e-6);
    }

    #[test]
    fn ramp_and_steps() {
        let run = Duration::from_secs(10);
        let ramp = RateProfile::parse("100..1100", run).unwrap();
        assert_eq!(ramp.rate_at(Duration::ZERO), 100.0);
        assert_eq!(ramp.rate_at(Duration::from_secs(5)), 600.0);
        assert_eq!(ramp.rate_at(Duration::from_secs(20)), 1100.0);
        // ∫ = 10 s × mean(100, 1100) = 6000.
        let n = ramp.expected_requests(run);
        assert!((5990..=6010).contains(&n), "{n}");
        let steps = RateProfile::parse("100, 500@2s ,1000@5s", run).unwrap();
        assert_eq!(steps.rate_at(Duration::from_millis(1999)), 100.0);
        assert_eq!(steps.rate_at(Duration::from_secs(2)), 500.0);
        assert_eq!(steps.rate_at(Duration::from_secs(9)), 1000.0);
        assert_eq!(steps.expected_requests(run), 200 + 1500 + 5000);
        let mut s = Schedule::new(steps, RateControl::default());
        let count_first_2s = std::iter::repeat_with(|| s.next_offset())
            .take_while(|t| *t < Duration::from_secs(2))
            .count();
        assert_eq!(count_first_2s, 200);
    }

    #[test]
    fn rate_changes_while_running() {
        let control = RateControl::default();
        let mut s = Schedule::new(RateProfile::Constant { rps: 10.0 }, control.clone());
        assert_eq!(s.next_offset(), Duration::ZERO);
        control.set(Some(1000.0));
        assert_eq!(s.next_offset(), Duration::from_millis(100));
        assert!((s.next_offset().as_secs_f64() - 0.101).abs() < 1e-9);
        control.set(None);
        let t = s.next_offset();
        assert!((s.next_offset() - t).as_secs_f64() - 0.1 < 1e-9);
        assert_eq!(control.get(), None);
    }

    #[test]
    fn bad_rates_and_durations_are_named() {
        let run = Duration::from_secs(1);
        for (spec, needle) in [
            ("0", "greater than 0"),
            ("-5", "greater than 0"),
            ("fast", "not a number"),
            ("100,200", "start time"),
            ("100,200@2s,300@1s", "increasing"),
            ("100@1s", "start at 0"),
            ("inf", "greater than 0"),
        ] {
            let e = RateProfile::parse(spec, run).unwrap_err();
            assert!(e.0.contains(needle), "{spec}: {e}");
        }
        let e = RateProfile::parse("100,500@soon", run).unwrap_err();
        assert!(e.0.contains("not like 500ms"), "{e}");
    }
}
