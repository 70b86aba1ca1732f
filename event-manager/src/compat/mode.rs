//! Compatibility modes: which reading direction(s) a change must keep working.

use std::fmt;
use std::str::FromStr;

/// Which direction(s) of compatibility a schema change must preserve.
///
/// * [`Mode::Backward`]: consumers on the **new** schema read data written with the **old** one.
/// * [`Mode::Forward`]: consumers on the **old** schema read data written with the **new** one.
/// * [`Mode::Full`]: both. This is the default inside one major version, because producers and
///   consumers of the same routing key are upgraded independently.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Mode {
    /// New readers must accept old data.
    Backward,
    /// Old readers must accept new data.
    Forward,
    /// Both backward and forward.
    #[default]
    Full,
}

impl Mode {
    /// Whether this mode requires backward compatibility (new reader, old data).
    pub fn requires_backward(self) -> bool {
        matches!(self, Mode::Backward | Mode::Full)
    }

    /// Whether this mode requires forward compatibility (old reader, new data).
    pub fn requires_forward(self) -> bool {
        matches!(self, Mode::Forward | Mode::Full)
    }

    /// The lowercase name used on the command line and in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Backward => "backward",
            Mode::Forward => "forward",
            Mode::Full => "full",
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Error returned when a string names no [`Mode`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown compatibility mode `{0}` (expected backward, forward or full)")]
pub struct ParseModeError(pub String);

impl FromStr for Mode {
    type Err = ParseModeError;

    /// Parses `backward`, `forward` or `full` (case-insensitive, surrounding spaces ignored).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "backward" => Ok(Mode::Backward),
            "forward" => Ok(Mode::Forward),
            "full" => Ok(Mode::Full),
            _ => Err(ParseModeError(s.to_owned())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_displays() {
        for mode in [Mode::Backward, Mode::Forward, Mode::Full] {
            assert_eq!(mode.to_string().parse::<Mode>(), Ok(mode));
        }
        assert_eq!(" FULL ".parse::<Mode>(), Ok(Mode::Full));
        assert!("transitive".parse::<Mode>().is_err());
        assert_eq!(Mode::default(), Mode::Full);
    }

    #[test]
    fn directions() {
        assert!(Mode::Full.requires_backward() && Mode::Full.requires_forward());
        assert!(Mode::Backward.requires_backward() && !Mode::Backward.requires_forward());
        assert!(!Mode::Forward.requires_backward() && Mode::Forward.requires_forward());
    }
}
