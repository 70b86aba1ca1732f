#![doc = include_str!("../../COMPAT.md")]

mod change;
mod constraints;
mod diff;
mod files;
mod mode;
mod object;
mod report;
mod resolve;
mod variants;

pub use change::{Change, ChangeKind};
pub use diff::diff;
pub use files::{
    CompatError, FileOutcome, FileReport, check_dirs, check_files, load_schema, require_version,
};
pub use mode::{Mode, ParseModeError};
pub use report::{Bump, Report, check, schema_version};
pub use semver::Version;
