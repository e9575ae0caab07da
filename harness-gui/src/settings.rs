//! Dashboard settings that persist between runs (JSON in the platform's
//! config directory). The admin token is never stored: only the *name* of
//! the environment variable that holds it.

use greenlight_verdict::Policy;
use rollout::{OnInconclusive, RolloutPlan};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Environment variable read for the admin token unless the settings name another.
pub const DEFAULT_TOKEN_ENV: &str = greenlight_engine::admin_client::TOKEN_ENV;

/// Load controls (what the "Load" panel starts).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LoadSettings {
    /// Where the synthetic load goes (normally the edge itself).
    pub target_url: String,
    /// Requests per second (open loop).
    pub rate: f64,
    /// Sticky users for the weighted share; 0 (the default): every weighted
    /// request is a fresh anonymous caller, so the candidate gets its
    /// weight's share of requests.
    pub users: usize,
    /// Optional scenario file (TOML request mix).
    pub scenario: String,
    /// Environment variable holding an API key with the `preview` role
    /// (comparison traffic); never the key itself.
    pub preview_key_env: String,
    /// Environment variable holding a JWT with the `preview` role.
    pub preview_jwt_env: String,
    /// Share of requests (0..=1) that follow the weight (the routing check)
    /// while comparison traffic runs.
    pub weighted_share: f64,
}

impl Default for LoadSettings {
    fn default() -> Self {
        LoadSettings {
            target_url: "http://127.0.0.1:8787/".into(),
            rate: 200.0,
            users: 0,
            scenario: String::new(),
            preview_key_env: greenlight_engine::sampling::PREVIEW_KEY_ENV.into(),
            preview_jwt_env: greenlight_engine::sampling::PREVIEW_JWT_ENV.into(),
            weighted_share: greenlight_engine::sampling::DEFAULT_WEIGHTED_SHARE,
        }
    }
}

/// Everything the dashboard remembers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// Base URL of the edge (its admin API lives under `/__greenlight/`).
    pub edge_url: String,
    /// Name of the environment variable holding the admin bearer token.
    pub token_env: String,
    /// Who the audit log names for actions taken from this dashboard.
    pub actor: String,
    pub policy: Policy,
    /// Automated rollout: candidate weights in percent, in order.
    pub steps: Vec<f64>,
    /// Seconds to dwell (and gather evidence) at each step.
    pub dwell_s: u64,
    /// Extra dwells allowed when a step's analysis is inconclusive.
    pub max_extensions: u32,
    pub on_inconclusive: OnInconclusive,
    /// Which evidence the automated rollout judges each step on.
    pub judge: greenlight_verdict::Judge,
    pub load: LoadSettings,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            edge_url: "http://127.0.0.1:8787".into(),
            token_env: DEFAULT_TOKEN_ENV.into(),
            actor: default_actor(),
            policy: Policy::default(),
            steps: vec![1.0, 5.0, 25.0, 50.0, 100.0],
            dwell_s: 30,
            max_extensions: 2,
            on_inconclusive: OnInconclusive::Pause,
            judge: greenlight_verdict::Judge::default(),
            load: LoadSettings::default(),
        }
    }
}

fn default_actor() -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("USERNAME"))
        .unwrap_or_else(|_| "operator".into());
    format!("{user}@dashboard")
}

impl Settings {
    /// `<config dir>/dashboard.json` (e.g. `~/.config/greenlight/dashboard.json` on Linux).
    pub fn default_path() -> Option<PathBuf> {
        directories::ProjectDirs::from("dev", "greenlight", "greenlight")
            .map(|d| d.config_dir().join("dashboard.json"))
    }

    /// Reads settings; a missing file gives the defaults. A broken file also
    /// gives the defaults, with a message saying why (the app must start).
    pub fn load(path: &Path) -> (Settings, Option<String>) {
        match std::fs::read_to_string(path) {
            Ok(text) => match serde_json::from_str::<Settings>(&text) {
                Ok(s) => match s.validate() {
                    Ok(()) => (s, None),
                    Err(e) => (
                        Settings::default(),
                        Some(format!("settings {}: {e}; using defaults", path.display())),
                    ),
                },
                Err(e) => (
                    Settings::default(),
                    Some(format!(
                        "settings {} unreadable ({e}); using defaults",
                        path.display()
                    )),
                ),
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => (Settings::default(), None),
            Err(e) => (
                Settings::default(),
                Some(format!("settings {}: {e}; using defaults", path.display())),
            ),
        }
    }

    /// Writes atomically (temp file + rename), creating the directory.
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let text = serde_json::to_string_pretty(self).map_err(std::io::Error::other)?;
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, text)?;
        std::fs::rename(&tmp, path)
    }

    pub fn validate(&self) -> Result<(), String> {
        self.policy.validate()?;
        if !(0.0..=1.0).contains(&self.load.weighted_share) {
            return Err(format!(
                "load.weighted_share must be within 0..=1, got {}",
                self.load.weighted_share
            ));
        }
        self.rollout_plan().map(|_| ())
    }

    /// The token from the configured environment variable (never stored).
    pub fn resolve_token(&self) -> Option<String> {
        std::env::var(self.token_env.trim())
            .ok()
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty())
    }

    /// The preview credential from the configured environment variables
    /// (never stored), or why there is none.
    pub fn resolve_preview(
        &self,
    ) -> Result<greenlight_engine::sampling::PreviewCredential, String> {
        let (k, j) = (&self.load.preview_key_env, &self.load.preview_jwt_env);
        match greenlight_engine::sampling::PreviewCredential::from_env(k, j) {
            Ok(Some(c)) => Ok(c),
            Ok(None) => Err(rollout::synthetic::missing_credential(k, j)),
            Err(e) => Err(e),
        }
    }

    /// The automated-rollout plan these settings describe.
    pub fn rollout_plan(&self) -> Result<RolloutPlan, String> {
        let mut plan = RolloutPlan::new(
            self.steps.clone(),
            Duration::from_secs(self.dwell_s),
            self.max_extensions,
            self.on_inconclusive,
            self.policy.clone(),
            self.actor.clone(),
        )?;
        plan.judge = self.judge;
        Ok(plan)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rollout::{format_steps, parse_steps};

    #[test]
    fn round_trips_without_secrets() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/dashboard.json");
        let s = Settings {
            edge_url: "http://127.0.0.1:9999".into(),
            token_env: "MY_TOKEN_VAR".into(),
            steps: vec![2.0, 10.0, 100.0],
            dwell_s: 5,
            ..Settings::default()
        };
        s.save(&path).unwrap();
        let (back, warn) = Settings::load(&path);
        assert_eq!(warn, None);
        assert_eq!(back, s);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("MY_TOKEN_VAR"));
        assert!(!text.to_lowercase().contains("\"token\""));
    }

    #[test]
    fn broken_or_missing_files_give_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let (s, w) = Settings::load(&dir.path().join("none.json"));
        assert_eq!((s, w), (Settings::default(), None));
        let p = dir.path().join("bad.json");
        std::fs::write(&p, "{not json").unwrap();
        let (s, w) = Settings::load(&p);
        assert_eq!(s, Settings::default());
        assert!(w.unwrap().contains("unreadable"));
        std::fs::write(&p, r#"{"steps":[50,10]}"#).unwrap();
        let (_, w) = Settings::load(&p);
        assert!(
            w.unwrap().contains("increasing"),
            "invalid plans are refused"
        );
        // Unknown fields of older/newer versions are ignored, missing ones defaulted.
        std::fs::write(&p, r#"{"edge_url":"http://x:1","future":1}"#).unwrap();
        let (s, w) = Settings::load(&p);
        assert_eq!((s.edge_url.as_str(), w), ("http://x:1", None));
    }

    #[test]
    fn steps_parse_in_several_spellings() {
        assert_eq!(
            parse_steps("1 → 5 → 25 → 50 → 100").unwrap(),
            vec![1.0, 5.0, 25.0, 50.0, 100.0]
        );
        assert_eq!(parse_steps("1%,5%, 100%").unwrap(), vec![1.0, 5.0, 100.0]);
        assert_eq!(parse_steps("0.5->100").unwrap(), vec![0.5, 100.0]);
        assert!(parse_steps("1, x").unwrap_err().contains("\"x\""));
        assert!(parse_steps("  ").is_err());
        assert_eq!(format_steps(&[0.5, 5.0, 100.0]), "0.5, 5, 100");
    }
}
