//! The rollout state document: what the edge reads from key-value on every
//! cache miss and what the admin API writes.

use crate::color::Color;
use crate::plan::PlanRun;
use serde::{Deserialize, Serialize};
use std::fmt;

/// Version of the JSON wire format. A document with any other `schema` is
/// refused whole: an old edge must not half-understand a newer document.
pub const SCHEMA_VERSION: u32 = 1;
/// Weights are in basis points: 10 000 = 100 %.
pub const WEIGHT_SCALE: u16 = 10_000;
/// Longest accepted actor / reason / salt string, so a state document stays small.
pub const MAX_TEXT_LEN: usize = 256;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RolloutState {
    pub schema: u32,
    /// The color that serves everyone who is not in the candidate's share.
    pub active: Color,
    /// The color being rolled out (always the other one; stored for readability
    /// and checked on parse).
    pub candidate: Color,
    /// Share of users routed to the candidate, in basis points.
    pub candidate_weight_bp: u16,
    /// After a promote: the previous active color, the instant rollback target.
    pub rollback_target: Option<Color>,
    /// Monotonic version; every accepted change bumps it by one.
    pub epoch: u64,
    pub stickiness: Stickiness,
    pub preview: PreviewRules,
    pub last_change: ChangeRecord,
    /// The rollout plan the edge carries out ([`crate::plan`]), kept in
    /// the document so each of its steps is a change like any other: one
    /// winner per epoch, in the history. Absent until a plan is started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<PlanRun>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stickiness {
    /// When true a user's color follows from a hash of their identity;
    /// otherwise every request is an independent weighted draw.
    pub enabled: bool,
    /// Per-rollout salt: changing it reshuffles who is in the canary.
    pub salt: String,
    /// Whether a new canary (one started from 0 %) draws a new population
    /// (a new salt) or keeps the users of the last one. Omitted from the
    /// document when `fresh`, so documents of edges that predate it parse.
    #[serde(default, skip_serializing_if = "Population::is_fresh")]
    pub population: Population,
}

/// Who the canary's users are, rollout after rollout.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Population {
    /// Every new canary gets a new salt, so a different share of users
    /// carries the risk of each release (the default).
    #[default]
    Fresh,
    /// The salt never changes by itself: the same users are first every
    /// time ("employees first", a beta cohort); a new salt only by hand.
    Fixed,
}

impl Population {
    pub fn is_fresh(&self) -> bool {
        *self == Population::Fresh
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Population::Fresh => "fresh",
            Population::Fixed => "fixed",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PreviewRules {
    /// Request header that asks for a color (lowercase name).
    pub header: String,
    /// Cookie that asks for a color, if cookie previews are allowed.
    pub cookie: Option<String>,
    /// When true only callers with the `preview` role may use an override;
    /// when false anyone may (useful for internal-only deployments).
    pub require_role: bool,
}

/// Who changed the state last, when and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChangeRecord {
    pub op: String,
    /// Who the caller said was acting (the request's `actor`), else the
    /// credential's name.
    pub actor: String,
    /// The name of the admin credential the edge verified for this change
    /// ([`crate::admin_credentials`]); empty for the initial state.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub credential: String,
    /// Unix time in milliseconds.
    pub at_ms: u64,
    pub reason: String,
}

impl ChangeRecord {
    /// Who made the change, for people: the declared actor, with the
    /// verified credential when that is another name.
    pub fn by(&self) -> String {
        if self.credential.is_empty() || self.credential == self.actor {
            self.actor.clone()
        } else {
            format!("{} ({})", self.actor, self.credential)
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateError {
    /// Not JSON, wrong types, unknown or missing fields.
    Malformed(String),
    /// The document has no `schema` number.
    MissingSchema,
    /// The document was written by a different (usually newer) greenlight.
    UnsupportedSchema { found: u64, supported: u32 },
    /// Well-formed JSON that violates an invariant.
    Invalid(String),
}

impl fmt::Display for StateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StateError::Malformed(m) => write!(f, "malformed state document: {m}"),
            StateError::MissingSchema => write!(f, "state document has no \"schema\" number"),
            StateError::UnsupportedSchema { found, supported } => write!(
                f,
                "state document schema {found} is not supported (this build reads schema {supported})"
            ),
            StateError::Invalid(m) => write!(f, "invalid state document: {m}"),
        }
    }
}

impl std::error::Error for StateError {}

/// Why a document did not parse: a missing or foreign `schema` takes
/// precedence over the field-level error, so an old edge reading a newer
/// document says "schema 2 is not supported" rather than "unknown field".
fn diagnose(text: &str, parse_error: serde_json::Error) -> StateError {
    #[derive(Deserialize)]
    struct SchemaProbe {
        schema: Option<serde_json::Value>,
    }
    match serde_json::from_str::<SchemaProbe>(text) {
        Ok(SchemaProbe { schema: None }) => StateError::MissingSchema,
        Ok(SchemaProbe { schema: Some(v) }) => match v.as_u64() {
            None => StateError::Malformed("\"schema\" must be a number".into()),
            Some(found) if found != u64::from(SCHEMA_VERSION) => StateError::UnsupportedSchema {
                found,
                supported: SCHEMA_VERSION,
            },
            Some(_) => StateError::Malformed(parse_error.to_string()),
        },
        // Valid JSON that is not an object has no schema to read.
        Err(_) if serde_json::from_str::<serde_json::Value>(text).is_ok() => {
            StateError::MissingSchema
        }
        Err(_) => StateError::Malformed(parse_error.to_string()),
    }
}

impl Default for PreviewRules {
    fn default() -> Self {
        PreviewRules {
            header: "x-greenlight-color".to_string(),
            cookie: Some("greenlight-preview".to_string()),
            require_role: true,
        }
    }
}

impl RolloutState {
    /// The state an edge assumes before anyone has written one: everything on
    /// blue, green ready as the candidate at 0 %.
    pub fn initial(salt: &str) -> RolloutState {
        RolloutState {
            schema: SCHEMA_VERSION,
            active: Color::Blue,
            candidate: Color::Green,
            candidate_weight_bp: 0,
            rollback_target: None,
            epoch: 0,
            stickiness: Stickiness {
                enabled: true,
                salt: salt.to_string(),
                population: Population::Fresh,
            },
            preview: PreviewRules::default(),
            last_change: ChangeRecord {
                op: "init".to_string(),
                actor: "greenlight".to_string(),
                credential: String::new(),
                at_ms: 0,
                reason: "initial state".to_string(),
            },
            plan: None,
        }
    }

    /// Parses and validates a state document. Nothing is returned unless the
    /// whole document is valid.
    pub fn from_json(text: &str) -> Result<RolloutState, StateError> {
        // The common case is one typed parse; only a failure pays for a
        // second look that says precisely what is wrong (schema first).
        let state = match serde_json::from_str::<RolloutState>(text) {
            Ok(state) => state,
            Err(e) => return Err(diagnose(text, e)),
        };
        if state.schema != SCHEMA_VERSION {
            return Err(StateError::UnsupportedSchema {
                found: u64::from(state.schema),
                supported: SCHEMA_VERSION,
            });
        }
        state.validate()?;
        Ok(state)
    }

    pub fn to_json(&self) -> String {
        // Serialising a struct of strings and integers cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Checks every invariant a document must hold.
    pub fn validate(&self) -> Result<(), StateError> {
        let invalid = |m: String| Err(StateError::Invalid(m));
        if self.candidate == self.active {
            return invalid(format!(
                "candidate and active are both {}; they must differ",
                self.active
            ));
        }
        if self.candidate_weight_bp > WEIGHT_SCALE {
            return invalid(format!(
                "candidate_weight_bp {} exceeds {WEIGHT_SCALE}",
                self.candidate_weight_bp
            ));
        }
        if self.rollback_target == Some(self.active) {
            return invalid("rollback_target equals the active color".to_string());
        }
        if self.stickiness.salt.is_empty() || self.stickiness.salt.len() > MAX_TEXT_LEN {
            return invalid(format!("stickiness.salt must be 1..={MAX_TEXT_LEN} bytes"));
        }
        let h = &self.preview.header;
        if h.is_empty()
            || h.len() > 64
            || !h
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return invalid(format!(
                "preview.header {h:?} must be a lowercase header name"
            ));
        }
        if let Some(c) = &self.preview.cookie {
            if c.is_empty()
                || c.len() > 64
                || !c
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            {
                return invalid(format!("preview.cookie {c:?} is not a valid cookie name"));
            }
        }
        if let Some(plan) = &self.plan {
            if let Err(e) = plan.spec.validate() {
                return invalid(format!("plan: {e}"));
            }
            if plan.step >= plan.spec.steps_bp.len() {
                return invalid(format!(
                    "plan.step {} is past its {} steps",
                    plan.step,
                    plan.spec.steps_bp.len()
                ));
            }
        }
        let lc = &self.last_change;
        for (name, text) in [("op", &lc.op), ("actor", &lc.actor), ("reason", &lc.reason)] {
            if text.len() > MAX_TEXT_LEN {
                return invalid(format!("last_change.{name} is longer than {MAX_TEXT_LEN}"));
            }
        }
        Ok(())
    }

    /// Weight as a percentage, for display.
    pub fn candidate_percent(&self) -> f64 {
        f64::from(self.candidate_weight_bp) / 100.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_json() {
        let s = RolloutState::initial("salt-1");
        let text = s.to_json();
        assert_eq!(RolloutState::from_json(&text), Ok(s));
    }

    #[test]
    fn rejects_future_schema_precisely() {
        let mut v: serde_json::Value =
            serde_json::from_str(&RolloutState::initial("s").to_json()).unwrap();
        v["schema"] = 2.into();
        assert_eq!(
            RolloutState::from_json(&v.to_string()),
            Err(StateError::UnsupportedSchema {
                found: 2,
                supported: 1
            })
        );
        v.as_object_mut().unwrap().remove("schema");
        assert_eq!(
            RolloutState::from_json(&v.to_string()),
            Err(StateError::MissingSchema)
        );
    }

    #[test]
    fn rejects_unknown_fields_and_truncation() {
        let mut v: serde_json::Value =
            serde_json::from_str(&RolloutState::initial("s").to_json()).unwrap();
        v["surprise"] = true.into();
        assert!(matches!(
            RolloutState::from_json(&v.to_string()),
            Err(StateError::Malformed(m)) if m.contains("surprise")
        ));
        let text = RolloutState::initial("s").to_json();
        assert!(matches!(
            RolloutState::from_json(&text[..text.len() / 2]),
            Err(StateError::Malformed(_))
        ));
        assert!(matches!(
            RolloutState::from_json("[]"),
            Err(StateError::MissingSchema)
        ));
        assert!(matches!(
            RolloutState::from_json("{\"schema\":\"1\"}"),
            Err(StateError::Malformed(_))
        ));
    }

    #[test]
    fn rejects_broken_invariants() {
        let base = RolloutState::initial("s");
        let cases: Vec<(RolloutState, &str)> = vec![
            (
                RolloutState {
                    candidate: Color::Blue,
                    ..base.clone()
                },
                "must differ",
            ),
            (
                RolloutState {
                    candidate_weight_bp: 10_001,
                    ..base.clone()
                },
                "exceeds",
            ),
            (
                RolloutState {
                    rollback_target: Some(Color::Blue),
                    ..base.clone()
                },
                "rollback_target",
            ),
            (
                RolloutState {
                    stickiness: Stickiness {
                        enabled: true,
                        salt: String::new(),
                        population: Population::Fresh,
                    },
                    ..base.clone()
                },
                "salt",
            ),
            (
                RolloutState {
                    preview: PreviewRules {
                        header: "X Bad".into(),
                        ..PreviewRules::default()
                    },
                    ..base.clone()
                },
                "preview.header",
            ),
            (
                RolloutState {
                    preview: PreviewRules {
                        cookie: Some("a;b".into()),
                        ..PreviewRules::default()
                    },
                    ..base.clone()
                },
                "preview.cookie",
            ),
        ];
        for (state, needle) in cases {
            let err = RolloutState::from_json(&state.to_json()).unwrap_err();
            assert!(
                matches!(&err, StateError::Invalid(m) if m.contains(needle)),
                "{needle}: {err}"
            );
        }
    }
}
