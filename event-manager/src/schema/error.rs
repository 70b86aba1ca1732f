//! [`SchemaError`]: why an export could not be produced, written or checked.

use std::io;
use std::path::PathBuf;

use crate::registry::RegistryError;

/// Why the schema files could not be produced, written or checked. Every IO failure names the
/// path it happened on.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SchemaError {
    /// The contracts contradict each other (two payload types for one routing key, ...), so
    /// their files would overwrite each other.
    #[error("cannot export contradictory contracts: {0}")]
    Registry(#[from] RegistryError),
    /// A document could not be encoded as JSON.
    #[error("cannot encode `{file}` as JSON: {source}")]
    Json {
        /// The file name the document was meant for.
        file: String,
        /// The encoder's error.
        #[source]
        source: serde_json::Error,
    },
    /// The output directory could not be created.
    #[error("cannot create directory `{}`: {source}", path.display())]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// The IO error.
        #[source]
        source: io::Error,
    },
    /// The output directory could not be listed.
    #[error("cannot list directory `{}`: {source}", path.display())]
    ReadDir {
        /// The directory.
        path: PathBuf,
        /// The IO error.
        #[source]
        source: io::Error,
    },
    /// A file could not be read.
    #[error("cannot read `{}`: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The IO error.
        #[source]
        source: io::Error,
    },
    /// A file could not be written.
    #[error("cannot write `{}`: {source}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// The IO error.
        #[source]
        source: io::Error,
    },
    /// A stale file could not be removed.
    #[error("cannot remove `{}`: {source}", path.display())]
    Remove {
        /// The file.
        path: PathBuf,
        /// The IO error.
        #[source]
        source: io::Error,
    },
}
