//! The synthetic load a rollout is judged on, as the dashboard and the
//! headless twin both start it: comparison traffic through the preview
//! override when a preview credential works on the target, else the
//! fallback (weighted traffic from fresh anonymous identities), said once.

use greenlight_engine::client::{probe_preview, LoadConfig, Mode};
use greenlight_engine::sampling::{Comparison, PreviewCredential};
use greenlight_engine::scenario::Scenario;
use greenlight_engine::schedule::RateProfile;
use greenlight_engine::users::SimulatedUsers;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// What to start.
#[derive(Debug, Clone)]
pub struct SyntheticLoad {
    pub url: String,
    pub rate: f64,
    /// Sticky users for weighted traffic; 0: a fresh identity per request.
    pub users: usize,
    pub scenario: Option<PathBuf>,
    pub duration: Duration,
    /// A credential with the `preview` role, or why there is none.
    pub preview: Result<PreviewCredential, String>,
    /// Share of requests that follow the weight (the routing check).
    pub weighted_share: f64,
    /// Certificate trust for an https:// target.
    pub tls: greenlight_engine::tls::TlsOptions,
}

/// How the evidence is sampled.
#[derive(Debug, Clone, PartialEq)]
pub enum Sampling {
    /// Equal comparison samples per color, plus a weighted share.
    Comparison { weighted_share: f64 },
    /// Every request follows the weight (with the reason there is no comparison).
    Weighted { why: String },
}

impl Sampling {
    pub fn is_comparison(&self) -> bool {
        matches!(self, Sampling::Comparison { .. })
    }

    /// The weighted share when comparing, for rate estimates.
    pub fn weighted_share(&self) -> Option<f64> {
        match self {
            Sampling::Comparison { weighted_share } => Some(*weighted_share),
            Sampling::Weighted { .. } => None,
        }
    }

    /// One line for status bars and logs.
    pub fn describe(&self) -> String {
        match self {
            Sampling::Comparison { weighted_share } => format!(
                "comparison traffic: equal samples of blue and green through the preview override; {:.0}% of requests follow the weight (routing check)",
                weighted_share * 100.0
            ),
            Sampling::Weighted { why } => format!(
                "weighted traffic only ({why}): the candidate gets its weight's share of fresh anonymous identities"
            ),
        }
    }
}

/// The message for a missing credential, naming where it is read from.
pub fn missing_credential(key_env: &str, jwt_env: &str) -> String {
    format!(
        "no preview credential (set ${key_env} to an API key, or ${jwt_env} to a JWT, with the preview role)"
    )
}

/// Builds the engine's configuration and decides the sampling: probes the
/// preview on the target first, and falls back when it does not work.
pub async fn configure(l: SyntheticLoad) -> Result<(LoadConfig, Sampling), String> {
    let url =
        reqwest::Url::parse(l.url.trim()).map_err(|e| format!("target URL {:?}: {e}", l.url))?;
    if !(l.rate.is_finite() && l.rate > 0.0 && l.rate <= 100_000.0) {
        return Err(format!(
            "rate {} must be within (0, 100000] requests/s",
            l.rate
        ));
    }
    let mut cfg = LoadConfig::constant(url, l.rate, l.duration).map_err(|e| e.0)?;
    cfg.mode = Mode::Open {
        profile: RateProfile::Constant { rps: l.rate },
        max_in_flight: 512,
    };
    cfg.timeout = Duration::from_secs(5);
    cfg.http.tls = l.tls.clone();
    cfg.users = Arc::new(match l.users {
        0 => SimulatedUsers::fresh_anonymous(),
        n => SimulatedUsers::anonymous(n.min(100_000)).map_err(|e| e.0)?,
    });
    if let Some(p) = &l.scenario {
        cfg.scenario = Some(Arc::new(Scenario::load(p).map_err(|e| e.0)?));
    }
    let why = match l.preview {
        Err(why) => why,
        Ok(credential) => {
            cfg.comparison = Some(Comparison::new(credential, l.weighted_share)?);
            match probe_preview(&cfg).await {
                Ok(()) => {
                    return Ok((
                        cfg,
                        Sampling::Comparison {
                            weighted_share: l.weighted_share,
                        },
                    ))
                }
                Err(why) => why,
            }
        }
    };
    // Fallback: every request a new anonymous caller, so the candidate gets
    // its weight's share of requests, not of a few sticky users.
    cfg.comparison = None;
    cfg.users = Arc::new(SimulatedUsers::fresh_anonymous());
    Ok((cfg, Sampling::Weighted { why }))
}
