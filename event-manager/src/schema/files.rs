//! The exported files as a set: producing them, writing them and finding checked-in copies that are stale.

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::registry;

use super::asyncapi::{ASYNCAPI_FILE, AsyncApi};
use super::error::SchemaError;
use super::json_schema::{json_schema, schema_file_name};

/// The extension of every exported file; files with it that the export does not produce are
/// reported (and removed by [`write`]) as [`Staleness::Extra`].
const EXTENSION: &str = "json";

/// Why a file in the schema directory disagrees with the export.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Staleness {
    /// The export produces the file but the directory lacks it.
    Missing,
    /// The file's content is not what the export produces.
    Differs,
    /// A `*.json` file the export no longer produces (e.g. of a removed contract).
    Extra,
}

impl fmt::Display for Staleness {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Missing => "missing",
            Self::Differs => "differs from the export",
            Self::Extra => "no longer exported",
        })
    }
}

/// A file of the schema directory that disagrees with the export.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StaleFile {
    /// The file name (`order.v1.submit.json`).
    pub name: String,
    /// The file's path in the compared directory.
    pub path: PathBuf,
    /// How it disagrees.
    pub staleness: Staleness,
}

impl fmt::Display for StaleFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.staleness)
    }
}

/// `value` as pretty JSON (two-space indent, keys sorted) with a trailing newline.
fn to_file_text(name: &str, value: &Value) -> Result<String, SchemaError> {
    let mut value = value.clone();
    value.sort_all_objects();
    let mut text = serde_json::to_string_pretty(&value).map_err(|source| SchemaError::Json {
        file: name.to_owned(),
        source,
    })?;
    text.push('\n');
    Ok(text)
}

/// Every exported file by name: one JSON Schema per contract (`order.v1.submit.json`) and
/// the AsyncAPI document ([`ASYNCAPI_FILE`]), each as pretty JSON with sorted keys and a
/// trailing newline, so the same contracts always give the same bytes.
///
/// Fails with [`SchemaError::Registry`] when the contracts contradict each other (two payload
/// types for one routing key would write the same file).
pub fn files(api: &AsyncApi) -> Result<BTreeMap<String, String>, SchemaError> {
    let events = api.events();
    registry::conflicts_among(&events.iter().collect::<Vec<_>>())?;
    let mut out = BTreeMap::new();
    for contract in &events {
        let name = schema_file_name(contract);
        let text = to_file_text(&name, &json_schema(contract))?;
        out.insert(name, text);
    }
    let text = to_file_text(ASYNCAPI_FILE, &api.document())?;
    out.insert(ASYNCAPI_FILE.to_owned(), text);
    Ok(out)
}

/// Compares `dir` with the export and names each file that is missing, differs, or is an
/// extra `*.json` the export no longer produces, ordered by name. An empty list means `dir`
/// is up to date; a directory that does not exist lacks every file.
pub fn find_stale(api: &AsyncApi, dir: impl AsRef<Path>) -> Result<Vec<StaleFile>, SchemaError> {
    let dir = dir.as_ref();
    let expected = files(api)?;
    stale_files(dir, &expected)
}

/// Writes the export to `dir` (created if needed): writes every missing or differing file
/// and removes every extra `*.json`, so that [`find_stale`] then finds nothing. Returns what it
/// changed, ordered by name; files already up to date are left untouched.
pub fn write(api: &AsyncApi, dir: impl AsRef<Path>) -> Result<Vec<StaleFile>, SchemaError> {
    let dir = dir.as_ref();
    let expected = files(api)?;
    fs::create_dir_all(dir).map_err(|source| SchemaError::CreateDir {
        path: dir.to_owned(),
        source,
    })?;
    let stale = stale_files(dir, &expected)?;
    for file in &stale {
        match (file.staleness, expected.get(&file.name)) {
            (Staleness::Missing | Staleness::Differs, Some(text)) => {
                fs::write(&file.path, text).map_err(|source| SchemaError::Write {
                    path: file.path.clone(),
                    source,
                })?;
            }
            _ => {
                fs::remove_file(&file.path).map_err(|source| SchemaError::Remove {
                    path: file.path.clone(),
                    source,
                })?;
            }
        }
    }
    Ok(stale)
}

fn stale_files(
    dir: &Path,
    expected: &BTreeMap<String, String>,
) -> Result<Vec<StaleFile>, SchemaError> {
    let mut stale = Vec::new();
    for (name, text) in expected {
        let path = dir.join(name);
        let staleness = match fs::read(&path) {
            Ok(found) if found == text.as_bytes() => continue,
            Ok(_) => Staleness::Differs,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Staleness::Missing,
            Err(source) => return Err(SchemaError::Read { path, source }),
        };
        stale.push(StaleFile {
            name: name.clone(),
            path,
            staleness,
        });
    }
    for (name, path) in exported_looking_files(dir)? {
        if !expected.contains_key(&name) {
            stale.push(StaleFile {
                path,
                name,
                staleness: Staleness::Extra,
            });
        }
    }
    stale.sort();
    Ok(stale)
}

/// The names and paths of the regular `*.json` files directly in `dir`; none when `dir` does
/// not exist.
fn exported_looking_files(dir: &Path) -> Result<Vec<(String, PathBuf)>, SchemaError> {
    let read_dir_error = |source| SchemaError::ReadDir {
        path: dir.to_owned(),
        source,
    };
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(read_dir_error(e)),
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(read_dir_error)?;
        let path = entry.path();
        let is_json = path.extension().is_some_and(|e| e == EXTENSION);
        if !is_json || !path.is_file() {
            continue;
        }
        // A name that is not UTF-8 is no export's (those are routing keys): extra, named
        // lossily; its path stays exact, for `write` to remove it.
        names.push((entry.file_name().to_string_lossy().into_owned(), path));
    }
    Ok(names)
}
