//! `greenlight load`'s flags read into the engine's configuration, checked
//! in the order the flags are documented; the first mistake is the one
//! reported.

use super::{IdentityArg, LoadArgs};
use crate::output::Usage;
use crate::verdicts::parse_baseline;
use greenlight_common::duration::parse_duration;
use greenlight_engine::client::{LoadConfig, Mode};
use greenlight_engine::histogram::SeenColor;
use greenlight_engine::locations::{LocationSource, LocationTracker};
use greenlight_engine::sampling::{Comparison, PreviewCredential};
use greenlight_engine::scenario::Scenario;
use greenlight_engine::schedule::RateProfile;
use greenlight_engine::transport::HttpOptions;
use greenlight_engine::users::{IdentityKind, JwtClaims, JwtKey, SimulatedUsers};
use greenlight_verdict::Policy;
use reqwest::Url;
use std::sync::Arc;
use std::time::Duration;

/// A run as the flags describe it.
pub struct LoadPlan {
    pub cfg: LoadConfig,
    pub policy: Policy,
    /// The open loop's first rate (`None`: closed loop).
    pub target_rps: Option<f64>,
    pub baseline: SeenColor,
}

pub fn build(a: &LoadArgs) -> Result<LoadPlan, Usage> {
    let mut url = target_url(a)?;
    check_connections(a)?;
    let (duration, timeout) = run_length(a)?;
    let (mode, target_rps) = mode(a, duration)?;
    if a.requests == Some(0) {
        return Err(Usage("--requests must be at least 1".into()));
    }
    let scenario = scenario(a, &mut url)?;
    let kind = identity(a, duration)?;
    let now_s = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let users = SimulatedUsers::new(&kind, a.users, now_s).map_err(|e| e.0)?;
    let comparison = match PreviewCredential::from_env(&a.preview_key_env, &a.preview_jwt_env)? {
        Some(c) => Some(Comparison::new(c, a.routing_share)?),
        None => None,
    };
    if a.expect_weight.is_some_and(|w| !(0.0..=100.0).contains(&w)) {
        return Err(Usage("--expect-weight must be within 0..=100".into()));
    }
    let policy = a.policy.apply(
        scenario
            .as_ref()
            .and_then(|s| s.policy.clone())
            .unwrap_or_default(),
    );
    policy.validate().map_err(|e| format!("policy: {e}"))?;
    let baseline = parse_baseline(&a.baseline)?;
    if let Some(dir) = &a.hgrm_dir {
        std::fs::create_dir_all(dir).map_err(|e| format!("--hgrm-dir {}: {e}", dir.display()))?;
    }
    let cfg = LoadConfig {
        url,
        mode,
        duration,
        max_requests: a.requests,
        timeout,
        scenario,
        users: Arc::new(users),
        seed: a.seed,
        comparison,
        locations: Arc::new(LocationTracker::new(LocationSource::parse(
            &a.location_header,
        )?)),
        http: HttpOptions {
            require_http2: a.http2,
            connections: a.connections,
            streams_per_connection: a.streams_per_connection,
            tls: a.tls.options(),
        },
    };
    Ok(LoadPlan {
        cfg,
        policy,
        target_rps,
        baseline,
    })
}

fn target_url(a: &LoadArgs) -> Result<Url, Usage> {
    let url = Url::parse(a.url.trim()).map_err(|e| format!("invalid URL {:?}: {e}", a.url))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(Usage(format!(
            "invalid URL {:?}: must be http(s)://host[:port]/path",
            a.url
        )));
    }
    Ok(url)
}

fn check_connections(a: &LoadArgs) -> Result<(), Usage> {
    if a.connections == 0 || a.streams_per_connection == 0 {
        return Err(Usage(
            "--connections and --streams-per-connection must be at least 1".into(),
        ));
    }
    if let Some(path) = &a.tls.cacert {
        if !path.is_file() {
            return Err(Usage(format!("--cacert {}: no such file", path.display())));
        }
    }
    Ok(())
}

/// `--duration` and the per-request `--timeout`.
fn run_length(a: &LoadArgs) -> Result<(Duration, Duration), Usage> {
    let duration = parse_duration(&a.duration).map_err(|e| format!("--duration: {e}"))?;
    if duration.is_zero() {
        return Err(Usage("--duration must be greater than 0".into()));
    }
    let timeout = parse_duration(&a.timeout).map_err(|e| format!("--timeout: {e}"))?;
    if timeout.is_zero() {
        return Err(Usage("--timeout must be greater than 0".into()));
    }
    Ok((duration, timeout))
}

/// Open loop at `--rate` or closed loop with `--max`, and the first rate.
fn mode(a: &LoadArgs, duration: Duration) -> Result<(Mode, Option<f64>), Usage> {
    match (&a.rate, a.max) {
        (Some(_), true) => Err(Usage(
            "use either --rate (open loop) or --max (closed loop), not both".into(),
        )),
        (None, false) => Err(Usage(
            "--rate is required (or --max for closed-loop maximum throughput)".into(),
        )),
        (None, true) => {
            if a.concurrency == 0 {
                return Err(Usage("--concurrency must be at least 1".into()));
            }
            let concurrency = a.concurrency;
            Ok((Mode::Closed { concurrency }, None))
        }
        (Some(r), false) => {
            let profile = RateProfile::parse(r, duration).map_err(|e| format!("--rate: {e}"))?;
            if a.max_in_flight == 0 {
                return Err(Usage("--max-in-flight must be at least 1".into()));
            }
            let first = profile.rate_at(Duration::ZERO);
            let max_in_flight = a.max_in_flight;
            Ok((
                Mode::Open {
                    profile,
                    max_in_flight,
                },
                Some(first),
            ))
        }
    }
}

/// The request mix: `--scenario`, or one request from `--method`,
/// `--body-file` and `--header` (which then carries the URL's whole path).
fn scenario(a: &LoadArgs, url: &mut Url) -> Result<Option<Arc<Scenario>>, Usage> {
    if let Some(p) = &a.scenario {
        return Ok(Some(Arc::new(Scenario::load(p).map_err(|e| e.0)?)));
    }
    if a.body_file.is_none() && a.headers.is_empty() && a.method == "GET" {
        return Ok(None);
    }
    let body = match &a.body_file {
        Some(p) => Some(
            std::fs::read(p)
                .map_err(|e| format!("--body-file {}: {e}", p.display()))?
                .into(),
        ),
        None => None,
    };
    let mut path = url.path().to_string();
    if let Some(q) = url.query() {
        path = format!("{path}?{q}");
    }
    let one = Scenario::one(&a.method, &path, &a.headers, body).map_err(|e| e.0)?;
    // The request carries the whole path: no scenario prefix.
    url.set_path("/");
    url.set_query(None);
    Ok(Some(Arc::new(one)))
}

/// What the simulated users carry (`--identity` and its keys).
fn identity(a: &LoadArgs, duration: Duration) -> Result<IdentityKind, Usage> {
    let key = match a.identity {
        IdentityArg::Anonymous => return Ok(IdentityKind::Anonymous),
        IdentityArg::ApiKey => {
            return Ok(IdentityKind::ApiKeys {
                prefix: a.api_key_prefix.clone(),
            })
        }
        IdentityArg::Hs256 => JwtKey::Hs256(
            a.jwt_secret
                .clone()
                .ok_or_else(|| {
                    "--identity hs256 needs --jwt-secret (or GREENLIGHT_JWT_SECRET)".to_string()
                })?
                .into_bytes(),
        ),
        IdentityArg::Es256 => {
            let path = a
                .jwt_key
                .as_ref()
                .ok_or_else(|| "--identity es256 needs --jwt-key <pem file>".to_string())?;
            let pem =
                std::fs::read(path).map_err(|e| format!("--jwt-key {}: {e}", path.display()))?;
            JwtKey::Es256 {
                pem,
                kid: a.jwt_kid.clone(),
            }
        }
    };
    Ok(IdentityKind::Jwt {
        key,
        claims: JwtClaims {
            issuer: a.jwt_iss.clone(),
            audience: a.jwt_aud.clone(),
            ttl_s: duration.as_secs() + 3600,
            roles: Vec::new(),
        },
    })
}
