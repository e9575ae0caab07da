//! Who may call the admin API and what each caller may do.
//!
//! Three roles, each including the one below it:
//! - **viewer**: reads the state, the instance report (and what later read
//!   routes add);
//! - **operator**: changes the rollout (weight, promote, rollback, abort);
//! - **admin**: everything.
//!
//! Callers are named bearer tokens (`ADMIN_CREDENTIALS`, kept as SHA-256
//! digests like `API_KEYS`), the shared `ADMIN_TOKEN` (an admin named
//! `admin-token`), or an API key or JWT that carries one of the roles. The
//! name is what the rollout records as the credential behind a change: an
//! `actor` in a request body is what the caller declares, the name is what
//! the edge verified.

use crate::admin::AdminRoute;
use crate::auth::Role;
use crate::config_error::ConfigError;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// What an admin caller may do; ordered, each role includes those below.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AdminRole {
    Viewer,
    Operator,
    Admin,
}

impl AdminRole {
    pub fn name(self) -> &'static str {
        match self {
            AdminRole::Viewer => "viewer",
            AdminRole::Operator => "operator",
            AdminRole::Admin => "admin",
        }
    }

    /// The highest admin role among an API key's or a JWT's roles.
    pub fn of_roles(roles: &[Role]) -> Option<AdminRole> {
        roles
            .iter()
            .filter_map(|r| match r {
                Role::Admin => Some(AdminRole::Admin),
                Role::Operator => Some(AdminRole::Operator),
                Role::Viewer => Some(AdminRole::Viewer),
                Role::Preview => None,
            })
            .max()
    }
}

impl AdminRoute {
    /// The least role that may call this route.
    pub fn required_role(self) -> AdminRole {
        match self {
            AdminRoute::State
            | AdminRoute::Isolate
            | AdminRoute::History
            | AdminRoute::Metrics
            | AdminRoute::MetricsPrometheus
            | AdminRoute::Replicas => AdminRole::Viewer,
            AdminRoute::Weight
            | AdminRoute::Promote
            | AdminRoute::Rollback
            | AdminRoute::Abort
            | AdminRoute::Undo
            | AdminRoute::PlanStart
            | AdminRoute::PlanPause
            | AdminRoute::PlanResume
            | AdminRoute::PlanAbort
            | AdminRoute::PlanEvidence => AdminRole::Operator,
        }
    }
}

/// An admin caller the edge verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminCaller {
    /// The credential's name (`admin-token` for the shared token, `k:<id>`
    /// for an API key, `s:<sub>` for a JWT).
    pub name: String,
    pub role: AdminRole,
}

impl AdminCaller {
    pub fn may_call(&self, route: AdminRoute) -> bool {
        self.role >= route.required_role()
    }
}

/// The name the shared `ADMIN_TOKEN` is recorded under.
pub const SHARED_TOKEN_NAME: &str = "admin-token";

/// Longest credential name.
pub const MAX_NAME_LEN: usize = 64;

/// One entry of `ADMIN_CREDENTIALS`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct CredentialEntry {
    name: String,
    /// Hex SHA-256 of the token.
    sha256: String,
    role: AdminRole,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Named {
    name: String,
    digest: [u8; 32],
    role: AdminRole,
}

/// The admin bearer tokens an edge accepts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AdminCredentials {
    named: Vec<Named>,
}

impl AdminCredentials {
    /// From `ADMIN_TOKEN` (the shared admin secret, optional) and
    /// `ADMIN_CREDENTIALS` (a JSON array of `{"name", "sha256", "role"}`,
    /// optional). Names are unique, at most [`MAX_NAME_LEN`] characters of
    /// letters, digits, `.`, `_`, `-` and `@`, so they can never be taken
    /// for an API key's (`k:`) or a JWT's (`s:`) name, and `admin-token` is
    /// reserved for the shared token.
    pub fn parse(
        admin_token: Option<&str>,
        credentials: Option<&str>,
    ) -> Result<AdminCredentials, ConfigError> {
        let mut named = Vec::new();
        if let Some(token) = admin_token {
            named.push(Named {
                name: SHARED_TOKEN_NAME.to_string(),
                digest: Sha256::digest(token.as_bytes()).into(),
                role: AdminRole::Admin,
            });
        }
        let entries: Vec<CredentialEntry> = match credentials {
            None => Vec::new(),
            Some(json) => serde_json::from_str(json).map_err(|e| {
                ConfigError(format!(
                    "ADMIN_CREDENTIALS must be a JSON array of {{\"name\", \"sha256\", \
                     \"role\": viewer|operator|admin}}: {e}"
                ))
            })?,
        };
        for e in entries {
            let err = |why: &str| ConfigError(format!("ADMIN_CREDENTIALS {:?}: {why}", e.name));
            if e.name == SHARED_TOKEN_NAME {
                return Err(err("the name is reserved for ADMIN_TOKEN"));
            }
            let well_formed = !e.name.is_empty()
                && e.name.len() <= MAX_NAME_LEN
                && e.name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'));
            if !well_formed {
                return Err(err(
                    "a name is 1 to 64 letters, digits, '.', '_', '-' or '@'",
                ));
            }
            if named.iter().any(|n: &Named| n.name == e.name) {
                return Err(err("the name is used twice"));
            }
            let digest: [u8; 32] = hex::decode(e.sha256.trim())
                .ok()
                .and_then(|raw| raw.try_into().ok())
                .ok_or_else(|| err("sha256 must be 64 hex digits (SHA-256 of the token)"))?;
            if named.iter().any(|n| n.digest == digest) {
                return Err(err("its token is another credential's"));
            }
            named.push(Named {
                name: e.name,
                digest,
                role: e.role,
            });
        }
        Ok(AdminCredentials { named })
    }

    /// The caller whose token this is. Every entry is compared, in
    /// constant time, so the answer's timing does not tell how many
    /// entries there are before the match.
    pub fn caller(&self, token: &str) -> Option<AdminCaller> {
        let given: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let mut found = None;
        for n in &self.named {
            if bool::from(given.ct_eq(&n.digest)) {
                found = Some(AdminCaller {
                    name: n.name.clone(),
                    role: n.role,
                });
            }
        }
        found
    }

    pub fn is_empty(&self) -> bool {
        self.named.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::hash_api_key;

    fn creds(json: &str) -> Result<AdminCredentials, ConfigError> {
        AdminCredentials::parse(Some("shared-secret"), Some(json))
    }

    fn entry(name: &str, token: &str, role: &str) -> String {
        format!(
            r#"{{"name":"{name}","sha256":"{}","role":"{role}"}}"#,
            hash_api_key(token)
        )
    }

    #[test]
    fn each_token_names_its_caller_and_role() {
        let json = format!(
            "[{},{},{}]",
            entry("viv", "t-viewer", "viewer"),
            entry("opal", "t-operator", "operator"),
            entry("ada", "t-admin", "admin")
        );
        let c = creds(&json).unwrap();
        let role = |t: &str| c.caller(t).map(|c| (c.name, c.role));
        assert_eq!(role("t-viewer"), Some(("viv".into(), AdminRole::Viewer)));
        assert_eq!(
            role("t-operator"),
            Some(("opal".into(), AdminRole::Operator))
        );
        assert_eq!(role("t-admin"), Some(("ada".into(), AdminRole::Admin)));
        assert_eq!(
            role("shared-secret"),
            Some((SHARED_TOKEN_NAME.into(), AdminRole::Admin))
        );
        assert_eq!(role("t-viewe"), None);
        assert_eq!(role(""), None);
    }

    #[test]
    fn none_configured_accepts_nobody() {
        let c = AdminCredentials::parse(None, None).unwrap();
        assert!(c.is_empty());
        assert_eq!(c.caller(""), None);
        assert_eq!(c.caller("anything"), None);
    }

    #[test]
    fn roles_include_the_ones_below() {
        let caller = |role| AdminCaller {
            name: "x".into(),
            role,
        };
        let reads = [AdminRoute::State, AdminRoute::Isolate, AdminRoute::History];
        let changes = [
            AdminRoute::Weight,
            AdminRoute::Promote,
            AdminRoute::Rollback,
            AdminRoute::Abort,
            AdminRoute::Undo,
        ];
        for route in reads {
            for role in [AdminRole::Viewer, AdminRole::Operator, AdminRole::Admin] {
                assert!(caller(role).may_call(route), "{role:?} {route:?}");
            }
        }
        for route in changes {
            assert!(!caller(AdminRole::Viewer).may_call(route), "{route:?}");
            assert!(caller(AdminRole::Operator).may_call(route), "{route:?}");
            assert!(caller(AdminRole::Admin).may_call(route), "{route:?}");
        }
    }

    #[test]
    fn the_highest_role_of_a_key_or_token_counts() {
        assert_eq!(AdminRole::of_roles(&[]), None);
        assert_eq!(AdminRole::of_roles(&[Role::Preview]), None);
        assert_eq!(
            AdminRole::of_roles(&[Role::Viewer, Role::Preview]),
            Some(AdminRole::Viewer)
        );
        assert_eq!(
            AdminRole::of_roles(&[Role::Operator, Role::Viewer]),
            Some(AdminRole::Operator)
        );
        assert_eq!(
            AdminRole::of_roles(&[Role::Viewer, Role::Admin, Role::Operator]),
            Some(AdminRole::Admin)
        );
    }

    #[test]
    fn bad_entries_are_refused_with_the_reason() {
        let cases = [
            ("not json", "JSON array"),
            (r#"{"name":"a"}"#, "JSON array"),
            (
                r#"[{"name":"a","sha256":"00","role":"operator"}]"#,
                "64 hex",
            ),
            (
                &format!(
                    r#"[{{"name":"a","sha256":"{}","role":"root"}}]"#,
                    hash_api_key("x")
                ),
                "JSON array",
            ),
            (
                &format!(
                    r#"[{{"name":"a","sha256":"{}","role":"viewer","extra":1}}]"#,
                    hash_api_key("x")
                ),
                "JSON array",
            ),
            (&format!("[{}]", entry("", "x", "viewer")), "a name is"),
            (&format!("[{}]", entry("k:ops", "x", "viewer")), "a name is"),
            (
                &format!("[{}]", entry(&"a".repeat(65), "x", "viewer")),
                "a name is",
            ),
            (
                &format!("[{}]", entry(SHARED_TOKEN_NAME, "x", "admin")),
                "reserved",
            ),
            (
                &format!(
                    "[{},{}]",
                    entry("a", "x", "viewer"),
                    entry("a", "y", "viewer")
                ),
                "used twice",
            ),
            (
                &format!(
                    "[{},{}]",
                    entry("a", "x", "viewer"),
                    entry("b", "x", "admin")
                ),
                "another credential's",
            ),
            (
                &format!("[{}]", entry("a", "shared-secret", "viewer")),
                "another credential's",
            ),
        ];
        for (json, why) in cases {
            let e = creds(json).expect_err(json);
            assert!(e.0.contains(why), "{json}: {}", e.0);
        }
    }

    #[test]
    fn names_may_be_emails_and_handles() {
        let json = format!(
            "[{},{}]",
            entry("alice@example.com", "a", "operator"),
            entry("ci.deploy-bot_2", "b", "viewer")
        );
        let c = creds(&json).unwrap();
        assert_eq!(c.caller("a").unwrap().name, "alice@example.com");
        assert_eq!(c.caller("b").unwrap().name, "ci.deploy-bot_2");
    }
}
