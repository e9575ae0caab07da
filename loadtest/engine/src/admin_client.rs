//! Client of the edge's admin API (`/__greenlight/*`), shared by the CLI and
//! the dashboard. Every change sends the epoch the caller last saw; without
//! one, the client reads it from a fresh `GET /__greenlight/state` first.

use crate::tls::{self, TlsOptions};
use crate::transport::with_causes;
use greenlight_common::admin::{AdminRoute, ChangeRequest, Problem, StateView};
use greenlight_common::http::ADMIN_PREFIX;
use greenlight_common::plan::{OnFailure, PlanSpec, PlanStatus, Verdict};
use greenlight_common::rollout::PlanControl;
use greenlight_common::state::Population;
use greenlight_common::RolloutState;
use reqwest::{StatusCode, Url};
use serde::Deserialize;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Environment variable holding the admin bearer token.
pub const TOKEN_ENV: &str = "GREENLIGHT_ADMIN_TOKEN";

#[derive(Debug, Clone, PartialEq)]
pub enum AdminError {
    /// 401/403: the token is missing, wrong, or lacks the admin role.
    Unauthorized { status: u16, detail: String },
    /// 409: stale epoch or a transition the current phase does not allow.
    Conflict(Problem),
    /// Any other problem reply (400, 404, 5xx...).
    Problem(Problem),
    /// The edge could not be reached.
    Transport(String),
    /// The edge answered something that is not the admin API.
    BadResponse(String),
    /// Caller mistake found before sending (bad URL, bad weight).
    Usage(String),
}

impl fmt::Display for AdminError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AdminError::Unauthorized { status, detail } => write!(
                f,
                "refused ({status}): the admin token was not accepted ({detail}); set {TOKEN_ENV} or admin_token in the config file"
            ),
            AdminError::Conflict(p) => match p.current_epoch {
                Some(e) => write!(f, "conflict: {} (the state is now at epoch {e}; check `greenlight status` and retry)", p.detail),
                None => write!(f, "conflict: {}", p.detail),
            },
            AdminError::Problem(p) => write!(f, "{} ({}): {}", p.title, p.status, p.detail),
            AdminError::Transport(m) => write!(f, "cannot reach the edge: {m}"),
            AdminError::BadResponse(m) => write!(f, "unexpected answer from the edge: {m}"),
            AdminError::Usage(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for AdminError {}

/// Settings read from a config file (TOML): `admin_token = "..."`, `edge = "http://..."`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ClientConfig {
    pub admin_token: Option<String>,
    pub edge: Option<String>,
}

impl ClientConfig {
    /// `$XDG_CONFIG_HOME/greenlight/config.toml` or `~/.config/greenlight/config.toml`.
    pub fn default_path() -> Option<PathBuf> {
        let base = std::env::var_os("XDG_CONFIG_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
        Some(base.join("greenlight").join("config.toml"))
    }

    /// Reads `path`; a missing file is an empty config only when `optional`.
    pub fn load(path: &Path, optional: bool) -> Result<ClientConfig, AdminError> {
        match std::fs::read_to_string(path) {
            Ok(text) => toml::from_str(&text).map_err(|e| {
                AdminError::Usage(format!(
                    "config file {}: {}",
                    path.display(),
                    e.to_string().trim()
                ))
            }),
            Err(e) if optional && e.kind() == std::io::ErrorKind::NotFound => {
                Ok(ClientConfig::default())
            }
            Err(e) => Err(AdminError::Usage(format!(
                "config file {}: {e}",
                path.display()
            ))),
        }
    }
}

/// The token to use: the environment wins over the config file.
pub fn resolve_token(env: Option<String>, config: &ClientConfig) -> Option<String> {
    env.filter(|t| !t.trim().is_empty())
        .or_else(|| config.admin_token.clone())
        .map(|t| t.trim().to_string())
}

/// How the admin client reaches an edge.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AdminOptions {
    pub tls: TlsOptions,
    /// Send the token over plain HTTP to a host that is not loopback (off:
    /// such a client is refused before anything is sent).
    pub allow_plain_http_token: bool,
}

/// The admin-client flags every binary takes.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct AdminTransportArgs {
    #[command(flatten)]
    pub tls: tls::TlsArgs,
    /// Allow sending the admin token over plain http:// to a host that is not
    /// loopback (anyone on the path can read it).
    #[arg(long)]
    pub allow_plain_http_token: bool,
}

impl AdminTransportArgs {
    pub fn options(&self) -> AdminOptions {
        AdminOptions {
            tls: self.tls.options(),
            allow_plain_http_token: self.allow_plain_http_token,
        }
    }
}

/// An admin API client for one edge.
#[derive(Debug, Clone)]
pub struct AdminClient {
    base: Url,
    token: Option<String>,
    http: reqwest::Client,
}

impl AdminClient {
    /// A client with the default options (system roots, no plain-HTTP token
    /// to remote hosts).
    pub fn new(edge: &str, token: Option<String>) -> Result<AdminClient, AdminError> {
        AdminClient::with_options(edge, token, &AdminOptions::default())
    }

    /// A client for `edge`; HTTPS trusts what `options.tls` says. Redirects
    /// are never followed (the token would go wherever they point).
    pub fn with_options(
        edge: &str,
        token: Option<String>,
        options: &AdminOptions,
    ) -> Result<AdminClient, AdminError> {
        let base = Url::parse(edge.trim())
            .map_err(|e| AdminError::Usage(format!("edge URL {edge:?}: {e}")))?;
        let host = base.host_str().unwrap_or_default().to_string();
        if !matches!(base.scheme(), "http" | "https") || host.is_empty() {
            return Err(AdminError::Usage(format!(
                "edge URL {edge:?} must be http(s)://host[:port]"
            )));
        }
        if base.scheme() == "http"
            && token.is_some()
            && !tls::is_loopback_host(&host)
            && !options.allow_plain_http_token
        {
            return Err(AdminError::Usage(format!(
                "refusing to send the admin token over plain HTTP to {host} (not loopback): use https://, or pass --allow-plain-http-token"
            )));
        }
        let mut builder = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy();
        if base.scheme() == "https" {
            let config =
                tls::client_config(&options.tls, tls::ALPN_H1).map_err(AdminError::Usage)?;
            builder = builder.use_preconfigured_tls((*config).clone());
        }
        let http = builder
            .build()
            .map_err(|e| AdminError::Transport(e.to_string()))?;
        Ok(AdminClient { base, token, http })
    }

    fn url(&self, route: &str) -> Result<Url, AdminError> {
        let mut u = self.base.clone();
        u.set_path(&format!("{}{route}", ADMIN_PREFIX));
        u.set_query(None);
        Ok(u)
    }

    async fn call<T: serde::de::DeserializeOwned>(
        &self,
        method: reqwest::Method,
        route: &str,
        body: Option<&ChangeRequest>,
    ) -> Result<T, AdminError> {
        let mut rb = self.http.request(method, self.url(route)?);
        if let Some(t) = &self.token {
            rb = rb.bearer_auth(t);
        }
        if let Some(b) = body {
            rb = rb.json(b);
        }
        let host = self.base.host_str().unwrap_or_default();
        let resp = rb
            .send()
            .await
            .map_err(|e| AdminError::Transport(transport_error(host, &e)))?;
        let status = resp.status();
        if status.is_redirection() {
            let to = resp
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("nowhere");
            return Err(AdminError::BadResponse(format!(
                "{host} answered {status} redirecting to {to}; the admin client never follows redirects: use the final URL as --edge if you trust it"
            )));
        }
        let text = resp
            .text()
            .await
            .map_err(|e| AdminError::Transport(with_causes(&e)))?;
        if status.is_success() {
            return serde_json::from_str(&text).map_err(|e| {
                AdminError::BadResponse(format!("{status}: not a {route} view ({e})"))
            });
        }
        let problem: Option<Problem> = serde_json::from_str(&text).ok();
        let detail = match &problem {
            Some(p) => p.detail.clone(),
            None => brief_error(&text),
        };
        match status {
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Err(AdminError::Unauthorized {
                status: status.as_u16(),
                detail: if detail.is_empty() {
                    status.to_string()
                } else {
                    detail
                },
            }),
            StatusCode::CONFLICT => {
                Err(AdminError::Conflict(problem.unwrap_or_else(|| {
                    Problem::new(409, "conflict", "conflict", detail)
                })))
            }
            _ => Err(AdminError::Problem(problem.unwrap_or_else(|| {
                Problem::new(
                    status.as_u16(),
                    "http",
                    status.canonical_reason().unwrap_or("error"),
                    detail,
                )
            }))),
        }
    }

    /// `GET /__greenlight/state`.
    pub async fn state(&self) -> Result<StateView, AdminError> {
        self.call(reqwest::Method::GET, "state", None).await
    }

    /// `GET /__greenlight/isolate`: the tables of the edge instance that
    /// answers (a Worker isolate's memory; Spin's store slots).
    pub async fn isolate(&self) -> Result<greenlight_common::admin::IsolateView, AdminError> {
        self.call(reqwest::Method::GET, "isolate", None).await
    }

    /// `GET /__greenlight/history`: the last committed changes, newest
    /// first.
    pub async fn history(&self) -> Result<greenlight_common::history::HistoryView, AdminError> {
        self.call(reqwest::Method::GET, "history", None).await
    }

    /// `GET /__greenlight/metrics`: real users' answers per epoch and
    /// color, as the edge counted them.
    pub async fn metrics(&self) -> Result<greenlight_common::telemetry::MetricsView, AdminError> {
        self.call(reqwest::Method::GET, AdminRoute::Metrics.name(), None)
            .await
    }

    /// `GET /__greenlight/replicas` (Workers edges): each region's read
    /// replica, the epoch it confirmed and how far behind it is.
    pub async fn replicas(
        &self,
    ) -> Result<greenlight_common::propagation::ReplicasView, AdminError> {
        self.call(reqwest::Method::GET, AdminRoute::Replicas.name(), None)
            .await
    }

    /// `POST /__greenlight/undo`: the state of `to_epoch` (from the edge's
    /// history) as a new change.
    pub async fn undo(
        &self,
        to_epoch: u64,
        expected_epoch: Option<u64>,
        reason: &str,
    ) -> Result<StateView, AdminError> {
        let req = ChangeRequest {
            to_epoch: Some(to_epoch),
            reason: reason.to_string(),
            ..ChangeRequest::default()
        };
        self.change(AdminRoute::Undo, req, expected_epoch).await
    }

    /// A change; `expected_epoch: None` reads the current epoch first.
    pub async fn change(
        &self,
        route: AdminRoute,
        mut req: ChangeRequest,
        expected_epoch: Option<u64>,
    ) -> Result<StateView, AdminError> {
        if route.method() != "POST" {
            return Err(AdminError::Usage(format!("{route:?} is not a change")));
        }
        let name = route.name();
        req.expected_epoch = match expected_epoch {
            Some(e) => e,
            None => self.state().await?.state.epoch,
        };
        let view = self.call(reqwest::Method::POST, name, Some(&req)).await?;
        committed(req.expected_epoch, view)
    }

    /// Sets the candidate's share, in percent (0..=100).
    pub async fn set_weight(
        &self,
        percent: f64,
        expected_epoch: Option<u64>,
        reason: &str,
    ) -> Result<StateView, AdminError> {
        self.weight_change(percent, None, expected_epoch, reason)
            .await
    }

    /// [`AdminClient::set_weight`] that also sets who the canary's users
    /// are from this change on (`fresh`: a new salt per canary; `fixed`).
    pub async fn set_weight_with_population(
        &self,
        percent: f64,
        population: Population,
        expected_epoch: Option<u64>,
        reason: &str,
    ) -> Result<StateView, AdminError> {
        self.weight_change(percent, Some(population), expected_epoch, reason)
            .await
    }

    async fn weight_change(
        &self,
        percent: f64,
        population: Option<Population>,
        expected_epoch: Option<u64>,
        reason: &str,
    ) -> Result<StateView, AdminError> {
        if !(percent.is_finite() && (0.0..=100.0).contains(&percent)) {
            return Err(AdminError::Usage(format!(
                "weight {percent} must be within 0..=100 (percent)"
            )));
        }
        let req = ChangeRequest {
            weight_percent: Some(percent),
            population,
            reason: reason.to_string(),
            ..ChangeRequest::default()
        };
        self.change(AdminRoute::Weight, req, expected_epoch).await
    }

    pub async fn promote(
        &self,
        expected_epoch: Option<u64>,
        reason: &str,
    ) -> Result<StateView, AdminError> {
        self.simple(AdminRoute::Promote, expected_epoch, reason)
            .await
    }

    pub async fn rollback(
        &self,
        expected_epoch: Option<u64>,
        reason: &str,
    ) -> Result<StateView, AdminError> {
        self.simple(AdminRoute::Rollback, expected_epoch, reason)
            .await
    }

    pub async fn abort(
        &self,
        expected_epoch: Option<u64>,
        reason: &str,
    ) -> Result<StateView, AdminError> {
        self.simple(AdminRoute::Abort, expected_epoch, reason).await
    }

    /// `POST plan/start`: the edge carries out `plan` from its first step.
    pub async fn start_plan(
        &self,
        plan: PlanSpec,
        expected_epoch: Option<u64>,
        reason: &str,
    ) -> Result<StateView, AdminError> {
        let req = ChangeRequest {
            plan: Some(plan),
            reason: reason.to_string(),
            ..ChangeRequest::default()
        };
        self.change(AdminRoute::PlanStart, req, expected_epoch)
            .await
    }

    /// `POST plan/evidence`: `verdict` for the step in force at
    /// `expected_epoch` (`None`: read it first), renewing the caller's
    /// lease. No epoch moves; the view shows the evidence held.
    pub async fn post_evidence(
        &self,
        verdict: Option<Verdict>,
        expected_epoch: Option<u64>,
    ) -> Result<StateView, AdminError> {
        let req = ChangeRequest {
            expected_epoch: match expected_epoch {
                Some(e) => e,
                None => self.state().await?.state.epoch,
            },
            verdict,
            ..ChangeRequest::default()
        };
        self.call(
            reqwest::Method::POST,
            AdminRoute::PlanEvidence.name(),
            Some(&req),
        )
        .await
    }

    /// `POST plan/pause`, `plan/resume` or `plan/abort`.
    pub async fn control_plan(
        &self,
        control: PlanControl,
        expected_epoch: Option<u64>,
        reason: &str,
    ) -> Result<StateView, AdminError> {
        let route = match control {
            PlanControl::Pause => AdminRoute::PlanPause,
            PlanControl::Resume => AdminRoute::PlanResume,
            PlanControl::Abort => AdminRoute::PlanAbort,
        };
        self.simple(route, expected_epoch, reason).await
    }

    async fn simple(
        &self,
        route: AdminRoute,
        expected_epoch: Option<u64>,
        reason: &str,
    ) -> Result<StateView, AdminError> {
        let req = ChangeRequest {
            reason: reason.to_string(),
            ..ChangeRequest::default()
        };
        self.change(route, req, expected_epoch).await
    }
}

/// A change's `200`: the change is the one in force at the returned epoch,
/// which is the next one after the epoch it named. Anything else is an edge
/// that did not commit what it claims, and is not reported as a success.
fn committed(expected_epoch: u64, view: StateView) -> Result<StateView, AdminError> {
    if Some(view.state.epoch) != expected_epoch.checked_add(1) {
        return Err(AdminError::BadResponse(format!(
            "a change at epoch {expected_epoch} was answered with epoch {}",
            view.state.epoch
        )));
    }
    Ok(view)
}

/// A request failure in one line naming the host: TLS refusals in words,
/// anything else with its causes.
fn transport_error(host: &str, e: &reqwest::Error) -> String {
    match tls::rustls_cause(e) {
        Some(t) => format!("TLS with {host}: {}", tls::describe_rustls_error(t)),
        None => with_causes(e),
    }
}

/// The gist of a non-problem error body: an OAuth-style `error` /
/// `error_description` JSON, or the first 200 characters of text.
fn brief_error(text: &str) -> String {
    if let Ok(v) = serde_json::from_str::<serde_json::Value>(text) {
        let field = |k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_string);
        if let Some(e) = field("error_description")
            .or_else(|| field("error"))
            .or_else(|| field("message"))
        {
            return e;
        }
    }
    text.trim().chars().take(200).collect()
}

/// `2023-11-14T22:13:20Z` (RFC 3339, UTC, whole seconds) from Unix ms.
pub fn format_utc(ms: u64) -> String {
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms);
    humantime::format_rfc3339_seconds(at).to_string()
}

/// The history as a table for terminals, newest first, at most `limit`
/// changes.
pub fn describe_history(view: &greenlight_common::history::HistoryView, limit: usize) -> String {
    let mut out = format!(
        "{:>6}  {:<20}  {:<10}  {:<24}  {:>8}  {:<6}  reason\n",
        "epoch", "when (UTC)", "op", "by (credential)", "weight", "active"
    );
    for c in view.changes.iter().take(limit) {
        let weight = format!("{:.2}%", c.after.candidate_percent());
        out.push_str(&format!(
            "{:>6}  {:<20}  {:<10}  {:<24}  {:>8}  {:<6}  {}\n",
            c.epoch,
            format_utc(c.at_ms),
            c.op,
            c.after.last_change.by(),
            weight,
            c.after.active,
            c.reason
        ));
        if let Some(evidence) = &c.evidence {
            out.push_str(&format!("{:>6}  evidence: {evidence}\n", ""));
        }
    }
    let shown = view.changes.len().min(limit);
    out.push_str(&format!(
        "{shown} of {} kept (the edge keeps the last {})\n",
        view.changes.len(),
        view.limit
    ));
    out
}

/// `GET replicas` as a table: each region's replica, the epoch it
/// confirmed, how long the last push took (or how long it has been
/// behind), and failed pushes being retried.
pub fn describe_replicas(view: &greenlight_common::propagation::ReplicasView) -> String {
    let mut out = format!(
        "{:<6}  {:>6}  {:<7}  {:>9}  {:>8}  last error\n",
        "region", "epoch", "current", "lag", "failures"
    );
    for r in &view.replicas {
        let epoch = r.epoch.map_or("-".to_string(), |e| e.to_string());
        let lag = r.lag_ms.map_or("-".to_string(), |l| format!("{l} ms"));
        out.push_str(&format!(
            "{:<6}  {:>6}  {:<7}  {:>9}  {:>8}  {}\n",
            r.region,
            epoch,
            if r.current { "yes" } else { "BEHIND" },
            lag,
            r.failures,
            r.last_error.as_deref().unwrap_or("")
        ));
    }
    out.push_str(&format!(
        "epoch {}: {} of {} replicas behind\n",
        view.epoch,
        view.behind,
        view.replicas.len()
    ));
    out
}

/// The plan in `state`, in one line: where it is and, while it runs,
/// when its step is judged.
pub fn describe_plan(state: &RolloutState) -> Option<String> {
    let run = state.plan.as_ref()?;
    let steps: Vec<String> = run
        .spec
        .steps_bp
        .iter()
        .map(|bp| format!("{}%", f64::from(*bp) / 100.0))
        .collect();
    let at = format!(
        "step {} of {} ({})",
        run.step + 1,
        steps.len(),
        steps.join(", ")
    );
    let evidence = match run.spec.lease_ms {
        Some(ms) => format!(
            "; each step needs a passing verdict from a lease holder ({} ms lease, else {})",
            ms,
            match run.spec.on_missing_evidence {
                OnFailure::Rollback => "rollback",
                OnFailure::Hold => "hold",
            }
        ),
        None => String::new(),
    };
    Some(match &run.status {
        PlanStatus::Running => format!(
            "running, {at}; judged from {}{evidence}",
            format_utc(run.deadline_ms(None).unwrap_or_default())
        ),
        PlanStatus::Paused => format!("paused at {at}"),
        PlanStatus::Held { reason } => format!("held at {at}: {reason}"),
        PlanStatus::Promoted => format!("promoted after {} steps", steps.len()),
        PlanStatus::RolledBack { reason } => format!("rolled back at {at}: {reason}"),
        PlanStatus::Aborted => format!("aborted at {at}"),
    })
}

/// A plan from the command line's flags: candidate shares in percent,
/// each step's dwell, and what a failed gate does. Errors say what to fix.
pub fn plan_from_flags(
    steps_percent: &[f64],
    dwell: std::time::Duration,
    on_failure: OnFailure,
    lease: Option<(std::time::Duration, OnFailure)>,
) -> Result<PlanSpec, String> {
    let mut steps_bp = Vec::with_capacity(steps_percent.len());
    for &p in steps_percent {
        if !(p.is_finite() && p > 0.0 && p <= 100.0) {
            return Err(format!(
                "step {p} must be within 0 (excluded) and 100 percent"
            ));
        }
        steps_bp.push((p * 100.0).round() as u16);
    }
    let spec = PlanSpec {
        steps_bp,
        dwell_ms: u64::try_from(dwell.as_millis()).unwrap_or(u64::MAX),
        on_failure,
        lease_ms: lease.map(|(d, _)| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        on_missing_evidence: lease.map_or(OnFailure::Hold, |(_, rule)| rule),
    };
    spec.validate()?;
    Ok(spec)
}

/// A few lines describing a state, for terminals.
pub fn describe(v: &StateView) -> String {
    let s = &v.state;
    let mut out = format!(
        "phase      {}\nactive     {}\ncandidate  {} at {:.2}%\nepoch      {}\n",
        v.phase,
        s.active,
        s.candidate,
        s.candidate_percent(),
        s.epoch
    );
    if let Some(t) = s.rollback_target {
        out.push_str(&format!("rollback   to {t}\n"));
    }
    let c = &s.last_change;
    // The credential the edge verified, when the declared actor is another.
    let by = if c.credential.is_empty() || c.credential == c.actor {
        c.actor.clone()
    } else {
        format!("{} (credential {})", c.actor, c.credential)
    };
    out.push_str(&format!(
        "sticky     {} (salt {:?}, {} population per canary)\nlast       {} by {by} at {} ms: {}\n",
        if s.stickiness.enabled { "on" } else { "off" },
        s.stickiness.salt,
        v.population.as_str(),
        c.op,
        c.at_ms,
        c.reason
    ));
    let a = v.allowed;
    let allowed: Vec<&str> = [
        ("weight", a.set_weight),
        ("promote", a.promote),
        ("rollback", a.rollback),
        ("abort", a.abort),
    ]
    .iter()
    .filter(|(_, ok)| *ok)
    .map(|(n, _)| *n)
    .collect();
    out.push_str(&format!("allowed    {}\n", allowed.join(", ")));
    if let Some(plan) = describe_plan(s) {
        out.push_str(&format!("plan       {plan}\n"));
    }
    if v.degraded {
        out.push_str(
            "WARNING    the edge is serving from a fallback state (stored document unreadable)\n",
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use greenlight_common::admin::{handle, AdminOutcome};
    use greenlight_common::RolloutState;
    use http_body_util::{BodyExt, Full};
    use hyper::body::Incoming;
    use hyper::service::service_fn;
    use std::sync::{Arc, Mutex};
    use tokio::net::TcpListener;

    /// A fake edge: the real pure admin handler behind a token check.
    async fn fake_edge(token: &'static str) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(RolloutState::initial("s")));
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                let state = state.clone();
                tokio::spawn(async move {
                    let svc = service_fn(move |req: hyper::Request<Incoming>| {
                        let state = state.clone();
                        async move {
                            let authed = req
                                .headers()
                                .get("authorization")
                                .and_then(|v| v.to_str().ok())
                                == Some(&format!("Bearer {token}"));
                            let method = req.method().to_string();
                            let path = req.uri().path().to_string();
                            let body = req.into_body().collect().await.unwrap().to_bytes();
                            let o = if !authed {
                                AdminOutcome::problem(Problem::new(
                                    401,
                                    "unauthorized",
                                    "unauthorized",
                                    "bad token",
                                ))
                            } else {
                                let route =
                                    AdminRoute::parse(path.trim_start_matches(ADMIN_PREFIX))
                                        .unwrap();
                                let cur = state.lock().unwrap().clone();
                                let o =
                                    handle(route, &method, &body, "admin-token", &cur, false, 1);
                                if let Some(n) = &o.new_state {
                                    *state.lock().unwrap() = n.clone();
                                }
                                o
                            };
                            Ok::<_, hyper::Error>(
                                hyper::Response::builder()
                                    .status(o.status)
                                    .header("content-type", o.content_type)
                                    .body(Full::new(bytes::Bytes::from(o.body)))
                                    .unwrap(),
                            )
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        format!("http://{addr}")
    }

    #[tokio::test]
    async fn drives_a_rollout_and_reports_refusals() {
        let edge = fake_edge("t0ken").await;
        let c = AdminClient::new(&edge, Some("t0ken".into())).unwrap();
        assert_eq!(c.state().await.unwrap().state.epoch, 0);
        let v = c.set_weight(12.5, None, "canary").await.unwrap();
        assert_eq!((v.state.candidate_weight_bp, v.state.epoch), (1250, 1));
        // A stale explicit epoch is a conflict that names the current epoch.
        let e = c.promote(Some(0), "go").await.unwrap_err();
        assert!(
            matches!(&e, AdminError::Conflict(p) if p.current_epoch == Some(1)),
            "{e:?}"
        );
        assert!(e.to_string().contains("epoch 1"));
        let v = c.promote(None, "go").await.unwrap();
        assert_eq!(v.state.active, greenlight_common::Color::Green);
        let e = c.abort(None, "nothing to abort").await.unwrap_err();
        assert!(e.to_string().starts_with("conflict:"), "{e}");
        assert!(describe(&c.rollback(None, "undo").await.unwrap()).contains("active     blue"));

        let bad = AdminClient::new(&edge, Some("wrong".into())).unwrap();
        let e = bad.state().await.unwrap_err();
        assert!(matches!(e, AdminError::Unauthorized { status: 401, .. }));
        assert!(e.to_string().contains(TOKEN_ENV));
        assert!(c.set_weight(101.0, None, "").await.is_err());

        // A transport error says what went wrong, not only "error sending request".
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dead = AdminClient::new(&format!("http://127.0.0.1:{port}"), None).unwrap();
        let e = dead.state().await.unwrap_err();
        assert!(
            matches!(&e, AdminError::Transport(m) if m.to_lowercase().contains("refused")),
            "{e}"
        );
    }

    #[test]
    fn a_success_must_be_the_next_epoch() {
        let mut s = RolloutState::initial("s");
        s.epoch = 4;
        assert!(committed(3, StateView::of(s.clone(), false)).is_ok());
        for expected in [4, 2, u64::MAX] {
            assert!(matches!(
                committed(expected, StateView::of(s.clone(), false)),
                Err(AdminError::BadResponse(_))
            ));
        }
    }

    #[test]
    fn error_bodies_are_summarized() {
        assert_eq!(brief_error(r#"{"error":"invalid_token"}"#), "invalid_token");
        assert_eq!(
            brief_error(r#"{"error":"x","error_description":"expired"}"#),
            "expired"
        );
        assert_eq!(brief_error(" plain text \n"), "plain text");
    }

    #[test]
    fn token_and_config_resolution() {
        let cfg = ClientConfig {
            admin_token: Some("from-file".into()),
            edge: None,
        };
        assert_eq!(
            resolve_token(Some("env".into()), &cfg).as_deref(),
            Some("env")
        );
        assert_eq!(
            resolve_token(Some(" ".into()), &cfg).as_deref(),
            Some("from-file")
        );
        assert_eq!(resolve_token(None, &ClientConfig::default()), None);
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(&p, "admin_token = \"x\"\nedge = \"http://127.0.0.1:1\"\n").unwrap();
        assert_eq!(
            ClientConfig::load(&p, false)
                .unwrap()
                .admin_token
                .as_deref(),
            Some("x")
        );
        std::fs::write(&p, "admin_tokn = \"x\"\n").unwrap();
        assert!(ClientConfig::load(&p, false)
            .unwrap_err()
            .to_string()
            .contains("admin_tokn"));
        assert_eq!(
            ClientConfig::load(&dir.path().join("none"), true).unwrap(),
            ClientConfig::default()
        );
        assert!(AdminClient::new("not a url", None).is_err());
        assert!(AdminClient::new("ftp://x", None).is_err());
    }
}

#[cfg(test)]
mod history_tests {
    use super::*;
    use greenlight_common::history::History;
    use greenlight_common::rollout::{ChangeMeta, RolloutOp};
    use greenlight_common::RolloutState;

    #[test]
    fn the_history_table_names_who_when_and_what() {
        let s0 = RolloutState::initial("s");
        let mut s1 = s0
            .apply(
                RolloutOp::SetWeight { weight_bp: 2_500 },
                0,
                ChangeMeta {
                    actor: "release bot".into(),
                    at_ms: 1_700_000_000_000,
                    reason: "step 2".into(),
                },
            )
            .unwrap();
        s1.last_change.credential = "otto".into();
        let mut h = History::default();
        h.record(&s0, &s1, Some(serde_json::json!({"verdict": "pass"})));
        let text = describe_history(&h.view(), 10);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[1].contains("2023-11-14T22:13:20Z"), "{text}");
        assert!(lines[1].contains("release bot (otto)"), "{text}");
        assert!(
            lines[1].contains("25.00%") && lines[1].contains("step 2"),
            "{text}"
        );
        assert!(
            lines[2].contains(r#"evidence: {"verdict":"pass"}"#),
            "{text}"
        );
        assert!(lines[3].contains("init"), "{text}");
        assert_eq!(lines[4], "2 of 2 kept (the edge keeps the last 100)");
        let one = describe_history(&h.view(), 1);
        assert!(
            one.ends_with("1 of 2 kept (the edge keeps the last 100)\n"),
            "{one}"
        );
    }

    #[test]
    fn replicas_are_described_one_region_a_line_with_those_behind_marked() {
        use greenlight_common::propagation::{ReplicaTable, REGIONS};
        let mut t = ReplicaTable::default();
        t.committed(&REGIONS[..2], 4, 1_000);
        t.confirmed("wnam", 4, 1_080);
        t.failed("enam", "replica answered 503", 1_100);
        let text = describe_replicas(&t.view(3_000));
        assert!(text.contains("wnam") && text.contains("80 ms"), "{text}");
        assert!(
            text.contains("enam") && text.contains("BEHIND") && text.contains("2000 ms"),
            "{text}"
        );
        assert!(text.contains("replica answered 503"), "{text}");
        assert!(
            text.ends_with("epoch 4: 1 of 2 replicas behind\n"),
            "{text}"
        );
    }
}
