//! What each synthetic request is for.
//!
//! A canary at a small weight gives a comparison almost no candidate data
//! when the harness's own traffic follows the weight (1 % of 200 sticky
//! users is two users). So, given a credential with the edge's `preview`
//! role, most synthetic requests are **comparison** traffic: sent with the
//! preview override, alternately to blue and to green, in pairs that share
//! the request (the scenario pick), so both colors get equal samples of the
//! same mix at every step whatever the weight. The verdict compares those.
//! A small **weighted** share still follows the weight like a real user
//! (each a first-time visitor in the dashboard), which checks the edge's
//! split (see [`greenlight_verdict::routing_check`]) but is not the verdict's evidence.
//!
//! Without a credential every request is weighted (the fallback), and
//! [`time_to_min_samples`] says when each step will have enough.

use crate::users::splitmix64;
use greenlight_common::http::{HEADER_API_KEY, HEADER_COLOR};
use greenlight_common::Color;
use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Environment variable read for a preview API key unless told otherwise.
pub const PREVIEW_KEY_ENV: &str = "GREENLIGHT_PREVIEW_KEY";
/// Environment variable read for a preview bearer JWT unless told otherwise.
pub const PREVIEW_JWT_ENV: &str = "GREENLIGHT_PREVIEW_JWT";
/// Share of synthetic requests that follow the weight when comparison
/// traffic runs (the routing check).
pub const DEFAULT_WEIGHTED_SHARE: f64 = 0.1;

/// Why a request was sent, as recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Purpose {
    /// Routed by the edge's weight (routing check, or the fallback).
    Weighted,
    /// Sent with the preview override and answered by the color asked for.
    Comparison,
    /// Sent with the preview override but answered by another color (or
    /// without the override's reason): neither comparison evidence nor a
    /// sample of the weighted split, so counted apart.
    PreviewMismatch,
}

/// A credential holding the `preview` role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreviewCredential {
    header: &'static str,
    value: HeaderValue,
}

impl PreviewCredential {
    /// `x-api-key: <key>`.
    pub fn api_key(key: &str) -> Result<PreviewCredential, String> {
        let value = HeaderValue::from_str(key.trim())
            .map_err(|_| "the preview API key is not a valid header value".to_string())?;
        Ok(PreviewCredential {
            header: HEADER_API_KEY,
            value,
        })
    }

    /// `authorization: Bearer <jwt>`.
    pub fn bearer(jwt: &str) -> Result<PreviewCredential, String> {
        let value = HeaderValue::from_str(&format!("Bearer {}", jwt.trim()))
            .map_err(|_| "the preview JWT is not a valid header value".to_string())?;
        Ok(PreviewCredential {
            header: AUTHORIZATION.as_str(),
            value,
        })
    }

    /// The credential named by two environment variables (an API key or a
    /// JWT; both set is refused, since the edge refuses two credentials).
    pub fn from_env(key_var: &str, jwt_var: &str) -> Result<Option<PreviewCredential>, String> {
        let read = |v: &str| {
            std::env::var(v.trim())
                .ok()
                .filter(|s| !s.trim().is_empty())
        };
        match (read(key_var), read(jwt_var)) {
            (Some(_), Some(_)) => Err(format!(
                "both ${key_var} and ${jwt_var} are set: give the preview credential once"
            )),
            (Some(k), None) => PreviewCredential::api_key(&k).map(Some),
            (None, Some(j)) => PreviewCredential::bearer(&j).map(Some),
            (None, None) => Ok(None),
        }
    }

    /// `x-api-key` or `authorization`.
    pub fn kind(&self) -> &'static str {
        if self.header == HEADER_API_KEY {
            "API key"
        } else {
            "bearer JWT"
        }
    }
}

/// Comparison traffic: how it is sent.
#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    pub credential: PreviewCredential,
    /// The edge's preview header (its state's `preview.header`).
    pub header: String,
    /// Share of requests (0..=1) that follow the weight instead.
    pub weighted_share: f64,
}

impl Comparison {
    pub fn new(credential: PreviewCredential, weighted_share: f64) -> Result<Comparison, String> {
        if !(0.0..=1.0).contains(&weighted_share) {
            return Err(format!(
                "the weighted (routing-check) share must be within 0..=1, got {weighted_share}"
            ));
        }
        Ok(Comparison {
            credential,
            header: HEADER_COLOR.to_string(),
            weighted_share,
        })
    }

    /// What request `seq` is: requests go in pairs (2j, 2j+1); a pair is
    /// either weighted or one request to each color, the order drawn per
    /// pair so neither color always goes first. Both halves of a pair share
    /// `pick`, the draw that chooses the scenario request.
    pub fn plan(&self, seq: u64, seed: u64) -> Planned {
        let pair = seq / 2;
        let h = splitmix64(pair ^ seed.rotate_left(23) ^ 0x5eed_c0de);
        if unit(h) < self.weighted_share {
            return Planned {
                color: None,
                pick: splitmix64(seq ^ seed.rotate_left(17)),
            };
        }
        let first = if h & 1 == 0 {
            Color::Blue
        } else {
            Color::Green
        };
        let color = if seq.is_multiple_of(2) {
            first
        } else {
            first.other()
        };
        Planned {
            color: Some(color),
            pick: splitmix64(pair ^ seed.rotate_left(31)),
        }
    }

    /// Adds the credential and the override for `color`.
    pub fn apply(&self, headers: &mut HeaderMap, color: Color) {
        headers.insert(self.credential.header, self.credential.value.clone());
        if let (Ok(name), Ok(value)) = (
            reqwest::header::HeaderName::from_bytes(self.header.as_bytes()),
            HeaderValue::from_str(color.as_str()),
        ) {
            headers.insert(name, value);
        }
    }
}

/// One request's plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Planned {
    /// The color asked for (comparison), or `None` (weighted).
    pub color: Option<Color>,
    /// The random draw for the scenario request and the user.
    pub pick: u64,
}

fn unit(x: u64) -> f64 {
    (x >> 11) as f64 / (1u64 << 53) as f64
}

/// Rate of candidate samples (requests/s) a step gets.
/// `comparison`: comparison traffic runs with `weighted_share` weighted;
/// otherwise every request is weighted and `weight` of them (fresh
/// identities) reach the candidate.
pub fn candidate_rate(rate_rps: f64, weight_percent: f64, comparison: Option<f64>) -> f64 {
    let w = (weight_percent / 100.0).clamp(0.0, 1.0);
    match comparison {
        Some(weighted_share) => rate_rps * ((1.0 - weighted_share) / 2.0 + weighted_share * w),
        None => rate_rps * w,
    }
}

/// How long until the candidate has `min_samples`, at `candidate_rps`,
/// having `have` already; `None` when no sample arrives at all.
pub fn time_to_min_samples(min_samples: u64, have: u64, candidate_rps: f64) -> Option<Duration> {
    let missing = min_samples.saturating_sub(have);
    if missing == 0 {
        return Some(Duration::ZERO);
    }
    (candidate_rps > 0.0 && candidate_rps.is_finite())
        .then(|| Duration::from_secs_f64(missing as f64 / candidate_rps))
}

/// `95 s` → `"1 min 35 s"`.
pub fn human_duration(d: Duration) -> String {
    let s = d.as_secs_f64().ceil() as u64;
    match (s / 3600, (s % 3600) / 60, s % 60) {
        (0, 0, s) => format!("{s} s"),
        (0, m, 0) => format!("{m} min"),
        (0, m, s) => format!("{m} min {s} s"),
        (h, m, _) => format!("{h} h {m} min"),
    }
}

/// The once-said notice when there is no comparison traffic, with the
/// per-step estimate of when the policy's minimum is reached.
pub fn fallback_notice(
    why: &str,
    rate_rps: f64,
    steps: &[f64],
    min_samples: u64,
    dwell: Duration,
) -> String {
    let per_step: Vec<String> = steps
        .iter()
        .map(|w| {
            let rate = candidate_rate(rate_rps, *w, None);
            let eta = time_to_min_samples(min_samples, 0, rate)
                .map(human_duration)
                .unwrap_or_else(|| "never".into());
            format!("{w}% → {eta}")
        })
        .collect();
    format!(
        "no comparison traffic ({why}): falling back to weighted traffic from fresh anonymous identities; \
         the candidate reaches the policy's {min_samples} samples per step in about: {} (dwell {})",
        per_step.join(", "),
        human_duration(dwell)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_split_equally_and_share_the_pick() {
        let c = Comparison::new(PreviewCredential::api_key("k").unwrap(), 0.1).unwrap();
        let (mut blue, mut green, mut weighted) = (0, 0, 0);
        let mut firsts = [0u32; 2];
        for pair in 0..5_000u64 {
            let a = c.plan(2 * pair, 7);
            let b = c.plan(2 * pair + 1, 7);
            match (a.color, b.color) {
                (None, None) => weighted += 2,
                (Some(x), Some(y)) => {
                    assert_eq!(x.other(), y, "one request to each color");
                    assert_eq!(a.pick, b.pick, "the same request for both");
                    firsts[usize::from(x == Color::Green)] += 1;
                    blue += 1;
                    green += 1;
                }
                other => panic!("a pair is split: {other:?}"),
            }
        }
        assert_eq!(blue, green);
        // ~10 % weighted, and neither color always first.
        assert!((800..1200).contains(&weighted), "{weighted}");
        assert!(firsts.iter().all(|f| *f > 2000), "{firsts:?}");
    }

    #[test]
    fn rates_and_estimates() {
        // 60 req/s with comparison: 27 req/s per color + 10 % × 1 % weighted.
        let r = candidate_rate(60.0, 1.0, Some(0.1));
        assert!((r - 27.06).abs() < 1e-9, "{r}");
        // The fallback: 1 % of 60 req/s.
        let r = candidate_rate(60.0, 1.0, None);
        assert!((r - 0.6).abs() < 1e-12);
        let eta = time_to_min_samples(200, 0, r).unwrap();
        assert_eq!(human_duration(eta), "5 min 34 s");
        assert_eq!(time_to_min_samples(200, 250, 0.0), Some(Duration::ZERO));
        assert_eq!(time_to_min_samples(200, 10, 0.0), None);
        let n = fallback_notice(
            "no credential",
            60.0,
            &[1.0, 50.0],
            200,
            Duration::from_secs(30),
        );
        assert!(
            n.contains("1% → 5 min 34 s") && n.contains("50% → 7 s"),
            "{n}"
        );
    }

    #[test]
    fn credentials_from_the_environment() {
        assert!(
            PreviewCredential::from_env("GL_TEST_NONE_A", "GL_TEST_NONE_B")
                .unwrap()
                .is_none()
        );
        let c = PreviewCredential::bearer("a.b.c").unwrap();
        let mut h = HeaderMap::new();
        Comparison::new(c, 0.0).unwrap().apply(&mut h, Color::Green);
        assert_eq!(h.get(AUTHORIZATION).unwrap(), "Bearer a.b.c");
        assert_eq!(h.get(HEADER_COLOR).unwrap(), "green");
        assert!(Comparison::new(PreviewCredential::api_key("k").unwrap(), 1.5).is_err());
    }
}
