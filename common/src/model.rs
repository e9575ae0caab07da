//! Per-color model: on the routes listed in `MODEL_ROUTES` (e.g.
//! `/v1/chat/completions`), the `model` field of a JSON request body is set
//! to the color's model (`BLUE_MODEL`, `GREEN_MODEL`), so one client
//! request canaries model A against model B behind an OpenAI-compatible
//! API. The answer carries `x-greenlight-model`.
//!
//! The body is rewritten, not re-encoded: every other member keeps its
//! bytes and its place, `model` is replaced where it is (or added last).
//! A body the edge cannot rewrite faithfully is refused with a `400`
//! problem and reaches no origin: over [`MAX_MODEL_BODY`], not JSON, not a
//! JSON object, or with `model` twice (parsers disagree on which one wins).

use crate::color::Color;
use crate::config_error::ConfigError;
use crate::failover::MAX_REPLAY_BODY;
use serde::de::{Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;
use std::fmt;

/// The response header naming the model the request was sent with.
pub const HEADER_MODEL: &str = "x-greenlight-model";
/// The largest body rewritten: the retry limit (a rewritten body is kept
/// in memory, and may be sent again on a retry).
pub const MAX_MODEL_BODY: u64 = MAX_REPLAY_BODY;

/// `MODEL_ROUTES` with both colors' models.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelRoutes {
    /// Normalized paths, matched exactly.
    pub paths: Vec<String>,
    pub blue: String,
    pub green: String,
}

impl ModelRoutes {
    /// From `MODEL_ROUTES` (comma-separated paths), `BLUE_MODEL` and
    /// `GREEN_MODEL`: all three or none.
    pub fn parse(
        routes: Option<&str>,
        blue: Option<&str>,
        green: Option<&str>,
    ) -> Result<Option<ModelRoutes>, ConfigError> {
        let Some(routes) = routes else {
            return match (blue, green) {
                (None, None) => Ok(None),
                _ => Err(ConfigError(
                    "BLUE_MODEL/GREEN_MODEL are set but MODEL_ROUTES is not".into(),
                )),
            };
        };
        let paths: Vec<String> = routes
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(str::to_string)
            .collect();
        if let Some(bad) = paths
            .iter()
            .find(|p| !p.starts_with('/') || p.contains(['?', '#']))
        {
            return Err(ConfigError(format!(
                "MODEL_ROUTES: {bad:?} is not a path (/v1/chat/completions)"
            )));
        }
        let model = |name: &str, v: Option<&str>| -> Result<String, ConfigError> {
            let v =
                v.ok_or_else(|| ConfigError(format!("MODEL_ROUTES is set but {name} is not")))?;
            if v.len() > 256 || !v.bytes().all(|b| (b'!'..=b'~').contains(&b)) {
                return Err(ConfigError(format!(
                    "{name} {v:?} must be up to 256 printable ASCII characters without spaces"
                )));
            }
            Ok(v.to_string())
        };
        Ok(Some(ModelRoutes {
            paths,
            blue: model("BLUE_MODEL", blue)?,
            green: model("GREEN_MODEL", green)?,
        }))
    }

    /// Whether the (normalized) path is a model route.
    pub fn matches(&self, path: &str) -> bool {
        self.paths.iter().any(|p| p == path)
    }

    pub fn of(&self, color: Color) -> &str {
        match color {
            Color::Blue => &self.blue,
            Color::Green => &self.green,
        }
    }
}

/// Why a body was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelError {
    TooLarge,
    NotJson,
    NotObject,
    DuplicateModel,
}

impl fmt::Display for ModelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ModelError::TooLarge => write!(
                f,
                "the body of a model route must be at most {MAX_MODEL_BODY} bytes"
            ),
            ModelError::NotJson => write!(f, "the body of a model route must be JSON"),
            ModelError::NotObject => write!(f, "the body of a model route must be a JSON object"),
            ModelError::DuplicateModel => write!(f, "the body has more than one model member"),
        }
    }
}

/// A JSON object's members in order, each value as its own bytes.
struct Members<'a>(Vec<(String, &'a RawValue)>);

impl<'de> serde::Deserialize<'de> for Members<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Object;
        impl<'de> Visitor<'de> for Object {
            type Value = Members<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some(entry) = map.next_entry::<String, &'de RawValue>()? {
                    out.push(entry);
                }
                Ok(Members(out))
            }
        }
        d.deserialize_map(Object)
    }
}

/// `body` with its `model` member set to `model`.
pub fn rewrite(body: &[u8], model: &str) -> Result<Vec<u8>, ModelError> {
    if body.len() as u64 > MAX_MODEL_BODY {
        return Err(ModelError::TooLarge);
    }
    let text = std::str::from_utf8(body).map_err(|_| ModelError::NotJson)?;
    let members = match serde_json::from_str::<Members<'_>>(text) {
        Ok(m) => m.0,
        // Valid JSON of another kind, or no JSON at all.
        Err(_) if serde_json::from_str::<&RawValue>(text).is_ok() => {
            return Err(ModelError::NotObject)
        }
        Err(_) => return Err(ModelError::NotJson),
    };
    if members.iter().filter(|(k, _)| k == "model").count() > 1 {
        return Err(ModelError::DuplicateModel);
    }
    let quoted = |s: &str| serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into());
    let mut out = String::with_capacity(body.len() + model.len() + 12);
    out.push('{');
    let mut replaced = false;
    for (i, (key, value)) in members.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&quoted(key));
        out.push(':');
        if key == "model" {
            out.push_str(&quoted(model));
            replaced = true;
        } else {
            out.push_str(value.get());
        }
    }
    if !replaced {
        if !members.is_empty() {
            out.push(',');
        }
        out.push_str("\"model\":");
        out.push_str(&quoted(model));
    }
    out.push('}');
    Ok(out.into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rw(body: &str) -> Result<String, ModelError> {
        rewrite(body.as_bytes(), "model-b").map(|b| String::from_utf8(b).unwrap())
    }

    #[test]
    fn sets_the_model_and_keeps_everything_else() {
        assert_eq!(
            rw(r#"{"model":"gpt-x","stream":true,"temperature":0.70,"messages":[{"role":"user","content":"hé \u00e9"}]}"#)
                .unwrap(),
            r#"{"model":"model-b","stream":true,"temperature":0.70,"messages":[{"role":"user","content":"hé \u00e9"}]}"#
        );
        // Missing: added last; whitespace inside values kept.
        assert_eq!(
            rw("{ \"messages\" : [ 1, 2 ] }\n").unwrap(),
            r#"{"messages":[ 1, 2 ],"model":"model-b"}"#
        );
        assert_eq!(rw("{}").unwrap(), r#"{"model":"model-b"}"#);
        // Any JSON type of `model` is replaced.
        assert_eq!(rw(r#"{"model":null}"#).unwrap(), r#"{"model":"model-b"}"#);
        let out = rw(r#"{"n":12345678901234567890123,"model":"a"}"#).unwrap();
        assert_eq!(out, r#"{"n":12345678901234567890123,"model":"model-b"}"#);
    }

    #[test]
    fn refuses_what_it_cannot_rewrite_faithfully() {
        assert_eq!(rw("not json"), Err(ModelError::NotJson));
        assert_eq!(rw(r#"{"model":"a""#), Err(ModelError::NotJson));
        assert_eq!(rw(""), Err(ModelError::NotJson));
        assert_eq!(rw(r#"[{"model":"a"}]"#), Err(ModelError::NotObject));
        assert_eq!(rw(r#""model""#), Err(ModelError::NotObject));
        assert_eq!(rw(r#"{"a":1} {"b":2}"#), Err(ModelError::NotJson));
        assert_eq!(
            rw(r#"{"model":"a","x":1,"model":"b"}"#),
            Err(ModelError::DuplicateModel)
        );
        assert_eq!(rewrite(&[0xff, b'{', b'}'], "m"), Err(ModelError::NotJson));
        let huge = format!(r#"{{"p":"{}"}}"#, "x".repeat(MAX_MODEL_BODY as usize));
        assert_eq!(rw(&huge), Err(ModelError::TooLarge));
    }

    #[test]
    fn configuration_is_all_or_nothing() {
        assert_eq!(ModelRoutes::parse(None, None, None), Ok(None));
        let r = ModelRoutes::parse(
            Some("/v1/chat/completions, /v1/completions"),
            Some("a"),
            Some("b"),
        )
        .unwrap()
        .unwrap();
        assert!(r.matches("/v1/completions") && !r.matches("/v1/models"));
        assert_eq!((r.of(Color::Blue), r.of(Color::Green)), ("a", "b"));
        for (routes, blue, green) in [
            (None, Some("a"), None),
            (Some("/v1/chat/completions"), Some("a"), None),
            (Some("v1/chat"), Some("a"), Some("b")),
            (Some("/v1"), Some("a b"), Some("b")),
            (Some("/v1"), Some("a"), Some("b\n")),
        ] {
            assert!(
                ModelRoutes::parse(routes, blue, green).is_err(),
                "{routes:?} {blue:?} {green:?}"
            );
        }
    }
}
