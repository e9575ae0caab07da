//! The admin calls the controller asks for, and how one is made.

use greenlight_common::admin::{AdminRoute, ChangeRequest, StateView};
use greenlight_engine::admin_client::{AdminClient, AdminError};

/// An admin call the controller wants made.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    SetWeight {
        percent: f64,
        expected_epoch: u64,
        reason: String,
    },
    Promote {
        expected_epoch: u64,
        reason: String,
    },
    Rollback {
        expected_epoch: u64,
        reason: String,
    },
    Abort {
        expected_epoch: u64,
        reason: String,
    },
}

impl Command {
    /// Short name for logs (`weight 25%`, `promote`...).
    pub fn action(&self) -> String {
        match self {
            Command::SetWeight { percent, .. } => format!("weight {percent}%"),
            Command::Promote { .. } => "promote".into(),
            Command::Rollback { .. } => "rollback".into(),
            Command::Abort { .. } => "abort".into(),
        }
    }

    pub fn expected_epoch(&self) -> u64 {
        match self {
            Command::SetWeight { expected_epoch, .. }
            | Command::Promote { expected_epoch, .. }
            | Command::Rollback { expected_epoch, .. }
            | Command::Abort { expected_epoch, .. } => *expected_epoch,
        }
    }

    pub fn reason(&self) -> &str {
        match self {
            Command::SetWeight { reason, .. }
            | Command::Promote { reason, .. }
            | Command::Rollback { reason, .. }
            | Command::Abort { reason, .. } => reason,
        }
    }

    /// Executes the call against an edge, naming `actor` in the edge's own record.
    pub async fn execute(
        &self,
        client: &AdminClient,
        actor: &str,
    ) -> Result<StateView, AdminError> {
        let (route, weight) = match self {
            Command::SetWeight { percent, .. } => {
                if !(percent.is_finite() && (0.0..=100.0).contains(percent)) {
                    return Err(AdminError::Usage(format!(
                        "weight {percent} must be within 0..=100"
                    )));
                }
                (AdminRoute::Weight, Some(*percent))
            }
            Command::Promote { .. } => (AdminRoute::Promote, None),
            Command::Rollback { .. } => (AdminRoute::Rollback, None),
            Command::Abort { .. } => (AdminRoute::Abort, None),
        };
        let req = ChangeRequest {
            weight_percent: weight,
            actor: (!actor.is_empty()).then(|| actor.to_string()),
            reason: self.reason().to_string(),
            ..ChangeRequest::default()
        };
        client.change(route, req, Some(self.expected_epoch())).await
    }
}
