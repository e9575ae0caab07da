//! The audit log: every action taken from the dashboard or the headless
//! rollout (who, when, epoch before/after, outcome), kept in memory for the
//! panel and appended as JSON lines to a file so a rollout can be
//! reconstructed afterwards.

use greenlight_engine::admin_client::AdminError;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// How an action ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditOutcome {
    Ok,
    /// 409: someone else changed the state first, or the phase forbids it.
    Conflict,
    /// 401/403.
    Unauthorized,
    /// The edge could not be reached.
    Unreachable,
    /// Any other refusal or failure.
    Error,
    /// Not an admin call (rollout started/paused/resumed, load started...).
    Info,
}

impl AuditOutcome {
    pub fn of(e: &AdminError) -> AuditOutcome {
        match e {
            AdminError::Conflict(_) => AuditOutcome::Conflict,
            AdminError::Unauthorized { .. } => AuditOutcome::Unauthorized,
            AdminError::Transport(_) => AuditOutcome::Unreachable,
            _ => AuditOutcome::Error,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            AuditOutcome::Ok => "ok",
            AuditOutcome::Conflict => "conflict",
            AuditOutcome::Unauthorized => "unauthorized",
            AuditOutcome::Unreachable => "unreachable",
            AuditOutcome::Error => "error",
            AuditOutcome::Info => "info",
        }
    }
}

/// One line of the audit log (schema `greenlight.audit/1`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Unix time, ms.
    pub at_ms: u64,
    pub actor: String,
    /// `promote`, `rollback`, `abort`, `weight 25%`, `rollout start`, ...
    pub action: String,
    pub epoch_before: Option<u64>,
    pub epoch_after: Option<u64>,
    pub outcome: AuditOutcome,
    /// Reason sent, or the error.
    pub detail: String,
    /// On success: the state the edge committed and answered with (phase,
    /// colors, weight, epoch, and who it records as the change's author),
    /// not what was asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub committed: Option<String>,
}

/// One line for a committed state, as the edge returned it.
pub fn committed_summary(v: &greenlight_common::admin::StateView) -> String {
    let s = &v.state;
    format!(
        "epoch {} {}: active {}, candidate {} at {:.2}%{} ({} by {})",
        s.epoch,
        v.phase,
        s.active,
        s.candidate,
        s.candidate_percent(),
        s.rollback_target
            .map(|t| format!(", rollback to {t}"))
            .unwrap_or_default(),
        s.last_change.op,
        s.last_change.actor
    )
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl AuditEntry {
    /// An entry for an admin call and its result.
    pub fn for_change(
        actor: &str,
        action: impl Into<String>,
        epoch_before: Option<u64>,
        result: &Result<greenlight_common::admin::StateView, AdminError>,
        reason: &str,
    ) -> AuditEntry {
        let committed = result.as_ref().ok().map(committed_summary);
        let (epoch_after, outcome, detail) = match result {
            Ok(v) => (Some(v.state.epoch), AuditOutcome::Ok, reason.to_string()),
            Err(e) => {
                let after = match e {
                    AdminError::Conflict(p) => p.current_epoch,
                    _ => None,
                };
                (after, AuditOutcome::of(e), e.to_string())
            }
        };
        AuditEntry {
            at_ms: now_ms(),
            actor: actor.to_string(),
            action: action.into(),
            epoch_before,
            epoch_after,
            outcome,
            detail,
            committed,
        }
    }

    /// A non-admin event (rollout started, paused, load started...).
    pub fn info(
        actor: &str,
        action: impl Into<String>,
        epoch: Option<u64>,
        detail: impl Into<String>,
    ) -> AuditEntry {
        AuditEntry {
            at_ms: now_ms(),
            actor: actor.to_string(),
            action: action.into(),
            epoch_before: epoch,
            epoch_after: epoch,
            outcome: AuditOutcome::Info,
            detail: detail.into(),
            committed: None,
        }
    }
}

/// Appends entries to a JSON-lines file (or nowhere, with `path: None`).
#[derive(Debug, Clone, Default)]
pub struct AuditFile {
    path: Option<PathBuf>,
}

impl AuditFile {
    pub fn new(path: Option<PathBuf>) -> AuditFile {
        AuditFile { path }
    }

    /// `<data dir>/audit.jsonl` (e.g. `~/.local/share/greenlight/audit.jsonl`).
    pub fn default_path() -> Option<PathBuf> {
        directories::ProjectDirs::from("dev", "greenlight", "greenlight")
            .map(|d| d.data_dir().join("audit.jsonl"))
    }

    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Appends one line; the file and its directory are created if needed.
    pub fn append(&self, e: &AuditEntry) -> std::io::Result<()> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let mut line = serde_json::to_string(e).map_err(std::io::Error::other)?;
        line.push('\n');
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        // One write per line keeps concurrent appenders from interleaving.
        f.write_all(line.as_bytes())
    }

    /// Reads a log back (lines that do not parse are skipped and counted).
    pub fn read(path: &Path) -> std::io::Result<(Vec<AuditEntry>, usize)> {
        let text = std::fs::read_to_string(path)?;
        let mut bad = 0;
        let entries = text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .filter_map(|l| match serde_json::from_str(l) {
                Ok(e) => Some(e),
                Err(_) => {
                    bad += 1;
                    None
                }
            })
            .collect();
        Ok((entries, bad))
    }
}

pub use greenlight_engine::admin_client::format_utc;

/// `08:10:03` (UTC) from Unix ms, for compact tables.
pub fn format_time(ms: u64) -> String {
    let s = format_utc(ms);
    s.get(11..19).unwrap_or(&s).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use greenlight_common::admin::{Problem, StateView};
    use greenlight_common::RolloutState;

    #[test]
    fn entries_from_results() {
        let mut s = RolloutState::initial("x");
        s.epoch = 8;
        let ok = AuditEntry::for_change(
            "ann",
            "promote",
            Some(7),
            &Ok(StateView::of(s, false)),
            "looks good",
        );
        assert_eq!(
            (ok.epoch_before, ok.epoch_after, ok.outcome),
            (Some(7), Some(8), AuditOutcome::Ok)
        );
        assert_eq!(ok.detail, "looks good");
        // The line records what the edge committed, not what was asked.
        let committed = ok.committed.as_deref().unwrap();
        assert!(
            committed.starts_with("epoch 8 stable: active blue"),
            "{committed}"
        );
        assert!(committed.contains("(init by greenlight)"), "{committed}");
        let conflict = AuditEntry::for_change(
            "ann",
            "rollback",
            Some(3),
            &Err(AdminError::Conflict(Problem {
                current_epoch: Some(5),
                ..Problem::new(409, "stale-epoch", "stale epoch", "stale")
            })),
            "",
        );
        assert_eq!(
            (conflict.epoch_after, conflict.outcome, conflict.committed),
            (Some(5), AuditOutcome::Conflict, None)
        );
        let down = AuditEntry::for_change(
            "ann",
            "abort",
            Some(3),
            &Err(AdminError::Transport("refused".into())),
            "",
        );
        assert_eq!(down.outcome, AuditOutcome::Unreachable);
        assert!(down.detail.contains("cannot reach"));
    }

    #[test]
    fn appends_json_lines_and_reads_them_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("logs/audit.jsonl");
        let f = AuditFile::new(Some(path.clone()));
        for i in 0..3 {
            f.append(&AuditEntry::info("bob", format!("step {i}"), Some(i), ""))
                .unwrap();
        }
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"garbage\n")
            .unwrap();
        let (back, bad) = AuditFile::read(&path).unwrap();
        assert_eq!((back.len(), bad), (3, 1));
        assert_eq!(back[2].action, "step 2");
        assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 4);
        // No file configured: appends are no-ops.
        AuditFile::new(None).append(&back[0]).unwrap();
    }

    #[test]
    fn formats_utc() {
        assert_eq!(format_utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_utc(1_700_000_000_123), "2023-11-14T22:13:20Z");
        assert_eq!(format_utc(951_782_400_000), "2000-02-29T00:00:00Z");
        assert_eq!(format_time(1_700_000_000_123), "22:13:20");
    }
}
