//! The request mix, from a TOML scenario file:
//!
//! ```toml
//! [defaults]                       # optional, merged into every request
//! headers = { accept = "application/json" }
//!
//! [[requests]]
//! name = "list"                    # optional, for messages
//! method = "GET"                   # default GET
//! path = "/api/items?page=1"       # required, starts with '/'
//! weight = 5                       # default 1, > 0
//! headers = { "x-trace" = "1" }
//! body = '{"q": 1}'                # optional
//!
//! [verdict]                        # optional, see `greenlight_verdict::Policy`
//! p99_ratio_max = 1.10
//! ```

use greenlight_verdict::Policy;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::Method;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScenarioError(pub String);

impl fmt::Display for ScenarioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ScenarioError {}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    defaults: Defaults,
    #[serde(default)]
    requests: Vec<RawRequest>,
    verdict: Option<Policy>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Defaults {
    #[serde(default)]
    headers: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRequest {
    name: Option<String>,
    method: Option<String>,
    path: String,
    weight: Option<f64>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    body: Option<String>,
}

/// One kind of request in the mix.
#[derive(Debug, Clone)]
pub struct RequestTemplate {
    pub name: String,
    pub method: Method,
    /// Path and query, starting with '/'.
    pub path: String,
    pub headers: HeaderMap,
    pub body: Option<bytes::Bytes>,
    pub weight: f64,
}

/// A weighted request mix.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub requests: Vec<RequestTemplate>,
    /// Cumulative weights, normalized to end at 1.0.
    cumulative: Vec<f64>,
    /// A `[verdict]` section, when the file had one.
    pub policy: Option<Policy>,
}

impl Scenario {
    /// A single `GET <path>`.
    pub fn single(path: &str) -> Scenario {
        let path = if path.is_empty() { "/" } else { path };
        Scenario {
            requests: vec![RequestTemplate {
                name: "default".into(),
                method: Method::GET,
                path: path.to_string(),
                headers: HeaderMap::new(),
                body: None,
                weight: 1.0,
            }],
            cumulative: vec![1.0],
            policy: None,
        }
    }

    /// One request from the command line: `method` on `path`, headers as
    /// `name: value` lines, an optional body. A body without a
    /// `content-type` header is sent as `application/json` (what a
    /// chat-completions endpoint reads).
    pub fn one(
        method: &str,
        path: &str,
        headers: &[String],
        body: Option<bytes::Bytes>,
    ) -> Result<Scenario, ScenarioError> {
        let mut table = toml::Table::new();
        table.insert("method".into(), method.into());
        table.insert(
            "path".into(),
            (if path.is_empty() { "/" } else { path }).into(),
        );
        let mut h = toml::Table::new();
        for line in headers {
            let (k, v) = line
                .split_once(':')
                .ok_or_else(|| ScenarioError(format!("--header {line:?} is not `name: value`")))?;
            h.insert(k.trim().to_ascii_lowercase(), v.trim().into());
        }
        if body.is_some() && !h.contains_key("content-type") {
            h.insert("content-type".into(), "application/json".into());
        }
        table.insert("headers".into(), h.into());
        let mut file = toml::Table::new();
        file.insert(
            "requests".into(),
            toml::Value::Array(vec![toml::Value::Table(table)]),
        );
        let mut scenario = Scenario::parse(&file.to_string())?;
        scenario.requests[0].name = "command line".into();
        scenario.requests[0].body = body;
        Ok(scenario)
    }

    pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ScenarioError(format!("scenario file {}: {e}", path.display())))?;
        Scenario::parse(&text)
            .map_err(|e| ScenarioError(format!("scenario file {}: {}", path.display(), e.0)))
    }

    pub fn parse(text: &str) -> Result<Scenario, ScenarioError> {
        let file: File =
            toml::from_str(text).map_err(|e| ScenarioError(e.to_string().trim().to_string()))?;
        if file.requests.is_empty() {
            return Err(ScenarioError("no [[requests]] entries".into()));
        }
        let mut requests = Vec::new();
        for (i, r) in file.requests.into_iter().enumerate() {
            let name = r.name.clone().unwrap_or_else(|| format!("requests[{i}]"));
            let bad = |m: String| ScenarioError(format!("{name}: {m}"));
            let method_text = r.method.as_deref().unwrap_or("GET").to_ascii_uppercase();
            let method = Method::from_bytes(method_text.as_bytes())
                .map_err(|_| bad(format!("method {method_text:?} is not an HTTP method")))?;
            if !r.path.starts_with('/') {
                return Err(bad(format!("path {:?} must start with '/'", r.path)));
            }
            if r.path.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(bad(format!("path {:?} contains whitespace", r.path)));
            }
            let weight = r.weight.unwrap_or(1.0);
            if !(weight.is_finite() && weight > 0.0) {
                return Err(bad(format!(
                    "weight must be a positive number, got {weight}"
                )));
            }
            let mut headers = HeaderMap::new();
            for (k, v) in file.defaults.headers.iter().chain(r.headers.iter()) {
                let hn = HeaderName::from_bytes(k.as_bytes())
                    .map_err(|_| bad(format!("header name {k:?} is not valid")))?;
                let hv = HeaderValue::from_str(v)
                    .map_err(|_| bad(format!("header {k}: value {v:?} is not valid")))?;
                headers.insert(hn, hv);
            }
            requests.push(RequestTemplate {
                name,
                method,
                path: r.path,
                headers,
                body: r.body.map(bytes::Bytes::from),
                weight,
            });
        }
        let sum: f64 = requests.iter().map(|r| r.weight).sum();
        let mut acc = 0.0;
        let cumulative = requests
            .iter()
            .map(|r| {
                acc += r.weight / sum;
                acc
            })
            .collect();
        if let Some(p) = &file.verdict {
            p.validate()
                .map_err(|e| ScenarioError(format!("[verdict]: {e}")))?;
        }
        Ok(Scenario {
            requests,
            cumulative,
            policy: file.verdict,
        })
    }

    /// The template for a uniform draw `u` in [0, 1).
    pub fn pick(&self, u: f64) -> &RequestTemplate {
        &self.requests[self.pick_index(u)]
    }

    /// Index of [`Scenario::pick`]'s template.
    pub fn pick_index(&self, u: f64) -> usize {
        self.cumulative
            .partition_point(|&c| c <= u)
            .min(self.requests.len().saturating_sub(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[defaults]
headers = { accept = "application/json" }

[[requests]]
name = "list"
path = "/api/items"
weight = 3

[[requests]]
method = "post"
path = "/api/items"
body = '{"x":1}'
headers = { "content-type" = "application/json" }

[verdict]
p99_ratio_max = 1.2
"#;

    #[test]
    fn parses_a_weighted_mix() {
        let s = Scenario::parse(GOOD).unwrap();
        assert_eq!(s.requests.len(), 2);
        assert_eq!(s.requests[1].method, Method::POST);
        assert_eq!(s.requests[1].name, "requests[1]");
        assert_eq!(
            s.requests[1].headers.get("accept").unwrap(),
            "application/json"
        );
        assert_eq!(s.requests[1].body.as_deref(), Some(&b"{\"x\":1}"[..]));
        assert_eq!(s.pick(0.0).name, "list");
        assert_eq!(s.pick(0.7499).name, "list");
        assert_eq!(s.pick(0.76).method, Method::POST);
        assert_eq!(s.pick(0.999_999).method, Method::POST);
        assert_eq!(s.policy.as_ref().unwrap().p99_ratio_max, 1.2);
        let counts = (0..10_000)
            .filter(|i| s.pick(*i as f64 / 10_000.0).name == "list")
            .count();
        assert_eq!(counts, 7_500);
    }

    #[test]
    fn one_request_from_the_command_line() {
        let body = bytes::Bytes::from_static(b"{\"model\":\"m\",\"stream\":true}");
        let s = Scenario::one(
            "post",
            "/v1/chat/completions",
            &["Authorization: Bearer x".into()],
            Some(body.clone()),
        )
        .unwrap();
        let r = &s.requests[0];
        assert_eq!(
            (r.method.clone(), r.path.as_str()),
            (Method::POST, "/v1/chat/completions")
        );
        assert_eq!(r.headers["authorization"], "Bearer x");
        assert_eq!(r.headers["content-type"], "application/json");
        assert_eq!(r.body.as_ref(), Some(&body));
        assert_eq!(s.pick(0.3).name, "command line");
        let own = Scenario::one(
            "POST",
            "/",
            &["content-type: text/plain".into()],
            Some(body),
        )
        .unwrap();
        assert_eq!(own.requests[0].headers["content-type"], "text/plain");
        let get = Scenario::one("GET", "/x?y=1", &[], None).unwrap();
        assert!(get.requests[0].headers.is_empty() && get.requests[0].body.is_none());
        assert!(Scenario::one("GET", "/", &["nocolon".into()], None)
            .unwrap_err()
            .0
            .contains("name: value"));
        assert!(Scenario::one("G T", "/", &[], None).is_err());
    }

    #[test]
    fn errors_name_the_problem() {
        for (text, needle) in [
            ("", "no [[requests]]"),
            ("[[requests]]\npath = \"api\"", "must start with '/'"),
            (
                "[[requests]]\npath = \"/\"\nweight = 0",
                "weight must be a positive",
            ),
            (
                "[[requests]]\npath = \"/\"\nmethod = \"G T\"",
                "not an HTTP method",
            ),
            (
                "[[requests]]\npath = \"/\"\nheaders = { \"a b\" = \"1\" }",
                "header name",
            ),
            ("[[requests]]\npath = \"/\"\nsurprise = 1", "surprise"),
            ("[[requests]]\n", "path"),
            ("[[requests]\n", "TOML parse error"),
            (
                "[[requests]]\npath = \"/\"\n[verdict]\nalpha = 2.0",
                "alpha",
            ),
        ] {
            let e = Scenario::parse(text).unwrap_err();
            assert!(e.0.contains(needle), "{text:?}: {e}");
        }
        let missing = Scenario::load(Path::new("/nonexistent/x.toml")).unwrap_err();
        assert!(missing.0.contains("/nonexistent/x.toml"));
    }
}
