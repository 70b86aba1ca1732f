//! Reading schema files and the directory-level CI gate.

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

use semver::Version;
use serde_json::Value;

use super::mode::Mode;
use super::report::{Report, check};
use super::resolve::VERSION_KEYWORD;

/// The file in a schema directory that is not a contract schema.
const SKIPPED_FILE: &str = "asyncapi.json";

/// Why a schema file or directory could not be checked.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CompatError {
    /// The file could not be read.
    #[error("cannot read `{}`: {source} (check that the file exists and is readable)", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The directory could not be listed.
    #[error("cannot list directory `{}`: {source} (pass an existing schema directory)", path.display())]
    ReadDir {
        /// The directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not JSON.
    #[error("`{}` is not valid JSON: {source} (fix or regenerate the schema file)", path.display())]
    InvalidJson {
        /// The file.
        path: PathBuf,
        /// The parse error.
        source: serde_json::Error,
    },
    /// The file is JSON but not a schema: a JSON Schema is an object or a boolean.
    #[error(
        "`{}` is not a JSON Schema: its root is {found}, expected an object or a boolean \
         (point at the contract's exported schema file)",
        path.display()
    )]
    NotASchema {
        /// The file.
        path: PathBuf,
        /// What the root is instead, e.g. `an array`.
        found: &'static str,
    },
    /// The schema has no version and none was given.
    #[error(
        "`{}` has no root \"x-event-version\" string (add one to the schema, or pass \
         --old-version/--new-version)",
        path.display()
    )]
    MissingVersion {
        /// The file.
        path: PathBuf,
    },
    /// The schema's version is not a semantic version.
    #[error(
        "`{}` has an invalid \"x-event-version\" {value}: {reason} (use a semantic version \
         such as \"1.2.0\")",
        path.display()
    )]
    InvalidVersion {
        /// The file.
        path: PathBuf,
        /// The offending value, as JSON.
        value: String,
        /// Why it is invalid.
        reason: String,
    },
}

/// Reads and parses one schema file; its root must be a JSON object or a boolean.
pub fn load_schema(path: &Path) -> Result<Value, CompatError> {
    let bytes = fs::read(path).map_err(|source| CompatError::Read {
        path: path.to_owned(),
        source,
    })?;
    let schema: Value =
        serde_json::from_slice(&bytes).map_err(|source| CompatError::InvalidJson {
            path: path.to_owned(),
            source,
        })?;
    let found = match &schema {
        Value::Object(_) | Value::Bool(_) => return Ok(schema),
        Value::Array(_) => "an array",
        Value::String(_) => "a string",
        Value::Number(_) => "a number",
        Value::Null => "null",
    };
    Err(CompatError::NotASchema {
        path: path.to_owned(),
        found,
    })
}

/// The root `"x-event-version"` of a schema read from `path`, with errors naming the file.
pub fn require_version(path: &Path, schema: &Value) -> Result<Version, CompatError> {
    match schema.get(VERSION_KEYWORD) {
        None => Err(CompatError::MissingVersion {
            path: path.to_owned(),
        }),
        Some(Value::String(text)) => {
            text.trim()
                .parse()
                .map_err(|error: semver::Error| CompatError::InvalidVersion {
                    path: path.to_owned(),
                    value: Value::String(text.clone()).to_string(),
                    reason: error.to_string(),
                })
        }
        Some(other) => Err(CompatError::InvalidVersion {
            path: path.to_owned(),
            value: other.to_string(),
            reason: "not a string".to_owned(),
        }),
    }
}

/// The version of a schema if it declares one; an error only if it declares an invalid one.
fn optional_version(path: &Path, schema: &Value) -> Result<Option<Version>, CompatError> {
    match schema.get(VERSION_KEYWORD) {
        None => Ok(None),
        Some(_) => require_version(path, schema).map(Some),
    }
}

/// Compares two schema files. A version given here overrides the file's `"x-event-version"`
/// (which is then not read at all); otherwise the file must declare one.
pub fn check_files(
    old_path: &Path,
    new_path: &Path,
    old_version: Option<&Version>,
    new_version: Option<&Version>,
    mode: Mode,
) -> Result<Report, CompatError> {
    let old = load_schema(old_path)?;
    let new = load_schema(new_path)?;
    let old_version = match old_version {
        Some(version) => version.clone(),
        None => require_version(old_path, &old)?,
    };
    let new_version = match new_version {
        Some(version) => version.clone(),
        None => require_version(new_path, &new)?,
    };
    Ok(check(&old, &new, &old_version, &new_version, mode))
}

/// What the directory gate found for one file name.
#[derive(Debug, Clone, PartialEq)]
pub enum FileOutcome {
    /// Present in both directories and compared.
    Compared(Report),
    /// Only in the new directory: a new contract, always acceptable.
    Added {
        /// Its declared version, if any.
        version: Option<Version>,
    },
    /// Only in the old directory: the contract was removed, which always fails the gate
    /// (its consumers silently stop receiving messages; retire contracts deliberately).
    Removed {
        /// Its declared version, if any.
        version: Option<Version>,
    },
}

/// The gate's verdict for one schema file.
#[derive(Debug, Clone, PartialEq)]
pub struct FileReport {
    /// The file name (no directory), e.g. `order.submit.json`.
    pub file: String,
    /// What was found.
    pub outcome: FileOutcome,
}

impl FileReport {
    /// Whether this file passes the gate.
    pub fn is_sufficient(&self) -> bool {
        match &self.outcome {
            FileOutcome::Compared(report) => report.is_sufficient(),
            FileOutcome::Added { .. } => true,
            FileOutcome::Removed { .. } => false,
        }
    }
}

fn version_text(version: &Option<Version>) -> String {
    version
        .as_ref()
        .map_or_else(|| "no x-event-version".to_owned(), Version::to_string)
}

impl fmt::Display for FileReport {
    /// The file's verdict line; for an insufficient comparison, then one line per change that
    /// needs a larger bump, each with the file name and the bump it requires.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let file = &self.file;
        match &self.outcome {
            FileOutcome::Compared(report) => {
                write!(f, "{file}: {}", report.verdict_line())?;
                if !report.is_sufficient() {
                    for change in report.insufficient_changes() {
                        write!(
                            f,
                            "\n{file}: {change}; requires {} bump",
                            change.required_bump(report.mode)
                        )?;
                    }
                }
                Ok(())
            }
            FileOutcome::Added { version } => {
                write!(f, "{file}: new contract ({}): OK", version_text(version))
            }
            FileOutcome::Removed { version } => write!(
                f,
                "{file}: contract removed (was {}): its consumers lose it; keep the file until \
                 the contract is retired deliberately: INSUFFICIENT",
                version_text(version)
            ),
        }
    }
}

/// The contract schema files of a directory by file name: every `*.json` file directly
/// inside it except `asyncapi.json`. A `*.json` entry the gate cannot compare (a name that is
/// not UTF-8, a dangling link, a directory) is an error, never skipped: a contract must not
/// leave the check unseen.
fn schema_files(dir: &Path) -> Result<BTreeMap<String, PathBuf>, CompatError> {
    let read_dir_error = |source| CompatError::ReadDir {
        path: dir.to_owned(),
        source,
    };
    let mut files = BTreeMap::new();
    for entry in fs::read_dir(dir).map_err(read_dir_error)? {
        let path = entry.map_err(read_dir_error)?.path();
        let Some(os_name) = path.file_name() else {
            continue;
        };
        if !os_name.as_encoded_bytes().ends_with(b".json") {
            continue;
        }
        let unusable = |why: &str| CompatError::Read {
            path: path.clone(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, why),
        };
        let name = os_name
            .to_str()
            .ok_or_else(|| unusable("a schema file name that is not UTF-8"))?;
        if name == SKIPPED_FILE {
            continue;
        }
        if !path.is_file() {
            return Err(unusable(
                "not a readable regular file (a dangling link or a directory?)",
            ));
        }
        files.insert(name.to_owned(), path);
    }
    Ok(files)
}

/// The CI gate: compares every contract schema present in both directories (matched by file
/// name; `asyncapi.json` is skipped), with versions read from each file's `"x-event-version"`.
///
/// A file only in `new_dir` is a new contract (passes); a file only in `old_dir` is a removed
/// contract (fails). Reports come sorted by file name. Errors (unreadable directory or file,
/// invalid JSON, missing or invalid version of a compared file) abort the whole check.
pub fn check_dirs(
    old_dir: &Path,
    new_dir: &Path,
    mode: Mode,
) -> Result<Vec<FileReport>, CompatError> {
    let old_files = schema_files(old_dir)?;
    let new_files = schema_files(new_dir)?;
    let mut names: Vec<&String> = old_files.keys().chain(new_files.keys()).collect();
    names.sort();
    names.dedup();

    let mut reports = Vec::with_capacity(names.len());
    for name in names {
        let outcome = match (old_files.get(name), new_files.get(name)) {
            (Some(old_path), Some(new_path)) => {
                FileOutcome::Compared(check_files(old_path, new_path, None, None, mode)?)
            }
            (None, Some(new_path)) => {
                let schema = load_schema(new_path)?;
                FileOutcome::Added {
                    version: optional_version(new_path, &schema)?,
                }
            }
            (Some(old_path), None) => {
                let schema = load_schema(old_path)?;
                FileOutcome::Removed {
                    version: optional_version(old_path, &schema)?,
                }
            }
            (None, None) => continue,
        };
        reports.push(FileReport {
            file: name.clone(),
            outcome,
        });
    }
    Ok(reports)
}
