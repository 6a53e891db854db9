//! Configuration: TOML (`/etc/leash/leash.toml`) and UCI (`/etc/config/leash`)
//! carry one schema (SPEC §3) and are validated into one `Config`.
//! Nothing is half-applied: a file either yields a whole `Config` or every
//! error found in it, each with file, line and key.

mod model;
mod raw;
#[cfg(test)]
mod tests;
mod toml_source;
mod uci;
pub mod units;
mod validate;
pub use model::*;

use std::fmt;
use std::path::{Path, PathBuf};

pub const DEFAULT_TOML: &str = "/etc/leash/leash.toml";
pub const DEFAULT_UCI: &str = "/etc/config/leash";

/// One problem in a configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: PathBuf,
    /// 1-based; 0 when the problem has no line (e.g. the file is missing).
    pub line: usize,
    /// Dotted key path, e.g. `profile.iot.unlisted` or `device[2].mac`
    /// (1-based, file order); `syntax` for a line that does not parse and
    /// `file` when the file cannot be read.
    pub key: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}: {}", self.file.display(), self.line, self.key, self.message)
    }
}

/// Every problem found; never empty.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

/// Reads and validates the configuration. `path = None` picks the UCI file
/// when it exists, else the default TOML file. A path ending in `.toml` is
/// TOML; any other path is UCI.
pub fn load(path: Option<&Path>) -> Result<Config, ConfigErrors> {
    let path = match path {
        Some(p) => p.to_path_buf(),
        None if Path::new(DEFAULT_UCI).exists() => PathBuf::from(DEFAULT_UCI),
        None => PathBuf::from(DEFAULT_TOML),
    };
    let text = std::fs::read_to_string(&path).map_err(|e| {
        ConfigErrors(vec![ConfigError {
            file: path.clone(),
            line: 0,
            key: "file".to_string(),
            message: format!("cannot read configuration: {e}"),
        }])
    })?;
    if is_toml(&path) {
        parse_toml(&path, &text)
    } else {
        parse_uci(&path, &text)
    }
}

fn is_toml(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "toml")
}

/// Validates TOML text; `file` is only used in messages and `Config::source`.
pub fn parse_toml(file: &Path, text: &str) -> Result<Config, ConfigErrors> {
    let raw = toml_source::read(file, text).map_err(ConfigErrors)?;
    validate::validate(file, raw)
}

/// Validates UCI text; `file` is only used in messages and `Config::source`.
pub fn parse_uci(file: &Path, text: &str) -> Result<Config, ConfigErrors> {
    let raw = uci::read(file, text).map_err(ConfigErrors)?;
    validate::validate(file, raw)
}
