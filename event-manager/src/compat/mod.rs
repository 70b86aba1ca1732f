#![doc = include_str!("../../COMPAT.md")]

mod array;
mod change;
mod conjoin;
mod conjuncts;
mod constraints;
mod diff;
mod exclusive;
mod files;
mod keywords;
mod mode;
mod normalize;
mod object;
mod report;
mod resolve;
mod values;
mod variants;

pub use change::{Change, ChangeKind};
pub use diff::diff;
pub use files::{
    CompatError, FileOutcome, FileReport, check_dirs, check_files, load_schema, require_version,
};
pub use mode::{Mode, ParseModeError};
pub use report::{Bump, Report, check, schema_version};
pub use semver::Version;
