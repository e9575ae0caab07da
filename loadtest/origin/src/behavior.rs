//! How the origin misbehaves: latency drawn from a distribution, injected
//! errors, periodic stalls, streamed answers.

use crate::stream::SseStream;
use greenlight_common::duration::parse_duration;
use rand::Rng;
use std::time::Duration;

/// A latency distribution the origin adds before answering.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub enum LatencyDist {
    /// Answer at once.
    #[default]
    None,
    Fixed(Duration),
    /// Uniform between the two bounds.
    Uniform(Duration, Duration),
    /// Normal, truncated at 0.
    Normal {
        mean: Duration,
        sd: Duration,
    },
    /// Log-normal with this median and shape σ (natural-log units).
    LogNormal {
        median: Duration,
        sigma: f64,
    },
    /// Exponential with this mean.
    Exponential(Duration),
}

fn parse_ms(s: &str) -> Result<Duration, String> {
    parse_duration(s).map_err(|e| e.0)
}

impl LatencyDist {
    /// Parses `fixed:5ms`, `uniform:1ms,10ms`, `normal:5ms,1ms`,
    /// `lognormal:5ms,0.5`, `exp:5ms` or `none`.
    pub fn parse(spec: &str) -> Result<LatencyDist, String> {
        let spec = spec.trim();
        if spec == "none" || spec.is_empty() {
            return Ok(LatencyDist::None);
        }
        let (kind, args) = spec.split_once(':').ok_or_else(|| {
            format!("latency {spec:?} is not like fixed:5ms, normal:5ms,1ms, uniform:1ms,9ms, lognormal:5ms,0.5 or exp:5ms")
        })?;
        let args: Vec<&str> = args.split(',').map(str::trim).collect();
        let want = |n: usize| -> Result<(), String> {
            if args.len() == n {
                Ok(())
            } else {
                Err(format!(
                    "latency {kind} takes {n} argument(s), got {spec:?}"
                ))
            }
        };
        match kind.trim() {
            "fixed" => {
                want(1)?;
                Ok(LatencyDist::Fixed(parse_ms(args[0])?))
            }
            "uniform" => {
                want(2)?;
                let (a, b) = (parse_ms(args[0])?, parse_ms(args[1])?);
                if b < a {
                    return Err(format!(
                        "latency uniform:{},{}: the upper bound is below the lower",
                        args[0], args[1]
                    ));
                }
                Ok(LatencyDist::Uniform(a, b))
            }
            "normal" => {
                want(2)?;
                Ok(LatencyDist::Normal {
                    mean: parse_ms(args[0])?,
                    sd: parse_ms(args[1])?,
                })
            }
            "lognormal" => {
                want(2)?;
                let sigma: f64 = args[1]
                    .parse()
                    .ok()
                    .filter(|s: &f64| s.is_finite() && *s >= 0.0 && *s < 10.0)
                    .ok_or_else(|| {
                        format!(
                            "latency lognormal: sigma {:?} must be a number in 0..10",
                            args[1]
                        )
                    })?;
                Ok(LatencyDist::LogNormal {
                    median: parse_ms(args[0])?,
                    sigma,
                })
            }
            "exp" => {
                want(1)?;
                Ok(LatencyDist::Exponential(parse_ms(args[0])?))
            }
            other => Err(format!(
                "unknown latency distribution {other:?} (fixed, uniform, normal, lognormal, exp)"
            )),
        }
    }

    /// Draws one delay.
    pub fn sample<R: Rng + ?Sized>(&self, rng: &mut R) -> Duration {
        let secs = match *self {
            LatencyDist::None => return Duration::ZERO,
            LatencyDist::Fixed(d) => return d,
            LatencyDist::Uniform(a, b) => {
                a.as_secs_f64() + (b - a).as_secs_f64() * rng.gen::<f64>()
            }
            LatencyDist::Normal { mean, sd } => {
                mean.as_secs_f64() + sd.as_secs_f64() * std_normal(rng)
            }
            LatencyDist::LogNormal { median, sigma } => {
                median.as_secs_f64() * (sigma * std_normal(rng)).exp()
            }
            LatencyDist::Exponential(mean) => -mean.as_secs_f64() * (1.0 - rng.gen::<f64>()).ln(),
        };
        Duration::from_secs_f64(secs.clamp(0.0, 3600.0))
    }
}

/// Box-Muller standard normal draw.
pub fn std_normal<R: Rng + ?Sized>(rng: &mut R) -> f64 {
    let u1: f64 = rng.gen::<f64>().max(1e-300);
    let u2: f64 = rng.gen();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

/// A periodic stall: every `every` (from the origin's start), requests that
/// arrive during the first `duration` of the period are held until it ends,
/// like a stop-the-world GC pause.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stall {
    pub every: Duration,
    pub duration: Duration,
}

impl Stall {
    /// Parses `every,duration`, e.g. `5s,500ms`.
    pub fn parse(spec: &str) -> Result<Stall, String> {
        let (a, b) = spec
            .split_once(',')
            .ok_or_else(|| format!("stall {spec:?} is not like 5s,500ms (every, duration)"))?;
        let (every, duration) = (parse_ms(a)?, parse_ms(b)?);
        if every.is_zero() || duration >= every {
            return Err(format!(
                "stall {spec:?}: the duration must be shorter than the period, and the period > 0"
            ));
        }
        Ok(Stall { every, duration })
    }

    /// How long a request arriving `since_start` after the origin started waits.
    pub fn wait_at(&self, since_start: Duration) -> Duration {
        let phase = Duration::from_nanos((since_start.as_nanos() % self.every.as_nanos()) as u64);
        self.duration.saturating_sub(phase)
    }
}

/// How the origin misbehaves (all off by default).
#[derive(Debug, Clone, Default)]
pub struct Behavior {
    /// Delay added to every answer.
    pub latency: LatencyDist,
    /// Fraction (0..=1) of requests answered with a 500.
    pub error_rate: f64,
    pub stall: Option<Stall>,
    /// When set, requests without a valid edge signature get 401.
    pub signing_secret: Option<Vec<u8>>,
    /// Test-only: answer the scripted routes under `/script/` (redirects
    /// with cookies, chosen statuses, slow bodies, a WebSocket echo; see
    /// [`crate::scripts`]). Off in the CLI's origin: a redirect to any URL the
    /// caller names is an open redirect.
    pub scripts: bool,
    /// Answer every request (but `/echo` and scripts) with a streamed
    /// chat completion (see [`SseStream`]); the events name the request
    /// body's `model`, or the origin's color.
    pub sse: Option<SseStream>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::SmallRng;
    use rand::SeedableRng;

    #[test]
    fn latency_specs_parse_and_sample() {
        let ms = Duration::from_millis;
        assert_eq!(
            LatencyDist::parse("fixed:5ms"),
            Ok(LatencyDist::Fixed(ms(5)))
        );
        assert_eq!(
            LatencyDist::parse("normal:5ms,1ms"),
            Ok(LatencyDist::Normal {
                mean: ms(5),
                sd: ms(1)
            })
        );
        assert_eq!(LatencyDist::parse("none"), Ok(LatencyDist::None));
        for (bad, needle) in [
            ("slow", "not like"),
            ("fixed:5ms,1ms", "takes 1"),
            ("gamma:1ms", "unknown latency"),
            ("uniform:9ms,1ms", "upper bound"),
            ("lognormal:5ms,x", "sigma"),
            ("fixed:fast", "duration"),
        ] {
            let e = LatencyDist::parse(bad).unwrap_err();
            assert!(e.contains(needle), "{bad}: {e}");
        }
        let mut rng = SmallRng::seed_from_u64(7);
        let d = LatencyDist::parse("normal:5ms,1ms").unwrap();
        let mean: f64 = (0..20_000)
            .map(|_| d.sample(&mut rng).as_secs_f64())
            .sum::<f64>()
            / 20_000.0;
        assert!((mean - 0.005).abs() < 0.0001, "{mean}");
        let u = LatencyDist::parse("uniform:1ms,3ms").unwrap();
        assert!((0..1000).all(|_| (ms(1)..=ms(3)).contains(&u.sample(&mut rng))));
        let e = LatencyDist::parse("exp:2ms").unwrap();
        let mean: f64 = (0..20_000)
            .map(|_| e.sample(&mut rng).as_secs_f64())
            .sum::<f64>()
            / 20_000.0;
        assert!((mean - 0.002).abs() < 0.0001, "{mean}");
    }

    #[test]
    fn stall_windows() {
        let s = Stall::parse("2s,500ms").unwrap();
        assert_eq!(
            s.wait_at(Duration::from_millis(100)),
            Duration::from_millis(400)
        );
        assert_eq!(
            s.wait_at(Duration::from_millis(2100)),
            Duration::from_millis(400)
        );
        assert_eq!(s.wait_at(Duration::from_millis(600)), Duration::ZERO);
        assert!(Stall::parse("1s,2s").is_err());
        assert!(Stall::parse("1s").is_err());
    }
}
