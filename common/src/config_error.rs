//! The one error type of configuration loading, shared by every module
//! that reads settings (authentication, paths, origins, limits, models).

use std::fmt;

/// A configuration mistake found while loading settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}
