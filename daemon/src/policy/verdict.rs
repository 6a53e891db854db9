//! The four verdicts, ordered by severity.

use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Allow,
    Alert,
    Block,
    Quarantine,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("not a verdict (want allow, alert, block or quarantine): {0:?}")]
pub struct BadVerdict(pub String);

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Allow => "allow",
            Verdict::Alert => "alert",
            Verdict::Block => "block",
            Verdict::Quarantine => "quarantine",
        }
    }
}

impl FromStr for Verdict {
    type Err = BadVerdict;
    fn from_str(s: &str) -> Result<Self, BadVerdict> {
        Ok(match s {
            "allow" => Verdict::Allow,
            "alert" => Verdict::Alert,
            "block" => Verdict::Block,
            "quarantine" => Verdict::Quarantine,
            _ => return Err(BadVerdict(s.to_string())),
        })
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn ordered_by_severity() {
        assert!(Verdict::Allow < Verdict::Alert);
        assert!(Verdict::Alert < Verdict::Block);
        assert!(Verdict::Block < Verdict::Quarantine);
        assert_eq!("block".parse::<Verdict>().unwrap(), Verdict::Block);
        assert!("Block".parse::<Verdict>().is_err());
    }
}
