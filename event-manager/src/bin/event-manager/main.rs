//! `event-manager`: command-line tools for event contracts.
//!
//! * `event-manager compat OLD.json NEW.json [--old-version V] [--new-version V] [--mode M]`
//!   compares two versions of one contract schema.
//! * `event-manager compat-dir OLD_DIR NEW_DIR [--mode M]` is the CI gate over two schema
//!   directories.
//! * `event-manager queues list|dead-letters|replay|migrate|delete --service NAME
//!   [--namespace NS] [--url URL] [--retry-delays 1s,5s,30s,2m]` manages the queues of one
//!   service on the broker (built with the `runtime` feature; see `event-manager queues
//!   --help`); `migrate --bind EXCHANGE=PATTERN…` recreates queues declared otherwise (e.g.
//!   classic, where the service now declares quorum queues) without losing a message.
//!
//! Exit status of `compat` and `compat-dir`: 0 when every version bump is sufficient, 1 when
//! one is not, 2 when the input cannot be read (bad path, invalid JSON, missing or invalid
//! version, bad arguments).
//!
//! Exit status of `queues`: 0 on success, 1 on an operational failure (broker unreachable,
//! queue missing), 2 on a usage error.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use event_manager::compat::{self, CompatError, Mode, Version};

/// Exit status when every bump is sufficient.
const OK: u8 = 0;
/// Exit status when a bump is insufficient.
const INSUFFICIENT: u8 = 1;
/// Exit status when the input cannot be read.
const UNREADABLE: u8 = 2;
/// Exit status, of every command, when its output cannot be written (a full disk).
const UNWRITABLE: i32 = 3;

/// Tools for typed, versioned event contracts.
#[derive(Debug, Parser)]
#[command(name = "event-manager", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Compare two versions of one contract's JSON Schema and judge the version bump.
    ///
    /// Prints one line per change, then a verdict line. Exits 0 if the bump is sufficient,
    /// 1 if not, 2 if an input cannot be read.
    Compat {
        /// The old schema file.
        old: PathBuf,
        /// The new schema file.
        new: PathBuf,
        /// Version of the old schema (default: its root "x-event-version").
        #[arg(long, value_name = "V")]
        old_version: Option<Version>,
        /// Version of the new schema (default: its root "x-event-version").
        #[arg(long, value_name = "V")]
        new_version: Option<Version>,
        /// Compatibility required: backward, forward or full.
        #[arg(long, default_value_t = Mode::Full, value_name = "MODE")]
        mode: Mode,
    },
    /// CI gate: compare every *.json contract schema present in two directories.
    ///
    /// Files are matched by name (asyncapi.json is skipped); versions come from each file's
    /// "x-event-version". A file only in NEW_DIR is a new contract; a file missing from
    /// NEW_DIR is a removed contract and fails the gate.
    CompatDir {
        /// Directory with the old (e.g. main branch) schemas.
        old_dir: PathBuf,
        /// Directory with the new schemas.
        new_dir: PathBuf,
        /// Compatibility required: backward, forward or full.
        #[arg(long, default_value_t = Mode::Full, value_name = "MODE")]
        mode: Mode,
    },
    /// Manage the queues of one service on the broker: list, dead letters, replay, migrate,
    /// delete.
    ///
    /// The broker URL comes from --url or the AMQP_URL environment variable. Exits 0 on
    /// success, 1 on an operational failure (broker unreachable, queue missing), 2 on a usage
    /// error.
    #[cfg(feature = "runtime")]
    Queues {
        #[command(subcommand)]
        command: queues::QueuesCommand,
    },
}

/// Writes a line to stdout. A closed pipe (`| head`) is not an error; any other failure to
/// write ends the process with [`UNWRITABLE`], so that lost output never passes for success.
fn say(text: &str) {
    let mut out = std::io::stdout().lock();
    match writeln!(out, "{text}").and_then(|()| out.flush()) {
        Err(error) if error.kind() != std::io::ErrorKind::BrokenPipe => {
            eprintln!("error: writing the output failed: {error}");
            std::process::exit(UNWRITABLE);
        }
        _ => {}
    }
}

fn fail(error: &CompatError) -> ExitCode {
    eprintln!("error: {error}");
    ExitCode::from(UNREADABLE)
}

fn compat(
    old: &Path,
    new: &Path,
    old_version: Option<&Version>,
    new_version: Option<&Version>,
    mode: Mode,
) -> ExitCode {
    match compat::check_files(old, new, old_version, new_version, mode) {
        Ok(report) => {
            say(&report.to_string());
            ExitCode::from(if report.is_sufficient() {
                OK
            } else {
                INSUFFICIENT
            })
        }
        Err(error) => fail(&error),
    }
}

fn compat_dir(old_dir: &Path, new_dir: &Path, mode: Mode) -> ExitCode {
    let reports = match compat::check_dirs(old_dir, new_dir, mode) {
        Ok(reports) => reports,
        Err(error) => return fail(&error),
    };
    for report in &reports {
        say(&report.to_string());
    }
    let failed = reports.iter().filter(|r| !r.is_sufficient()).count();
    let status = if failed == 0 { "OK" } else { "INSUFFICIENT" };
    say(&format!(
        "summary: {failed} of {} contract(s) insufficient under {mode} mode: {status}",
        reports.len()
    ));
    ExitCode::from(if failed == 0 { OK } else { INSUFFICIENT })
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            let _ = error.print();
            return if error.use_stderr() {
                ExitCode::from(UNREADABLE)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    match cli.command {
        Command::Compat {
            old,
            new,
            old_version,
            new_version,
            mode,
        } => compat(&old, &new, old_version.as_ref(), new_version.as_ref(), mode),
        Command::CompatDir {
            old_dir,
            new_dir,
            mode,
        } => compat_dir(&old_dir, &new_dir, mode),
        #[cfg(feature = "runtime")]
        Command::Queues { command } => queues::run(command),
    }
}

/// `event-manager queues …`: the queues of one service on the broker, through
/// [`ServiceQueues`](event_manager::topology::ServiceQueues).
#[cfg(feature = "runtime")]
mod queues;
