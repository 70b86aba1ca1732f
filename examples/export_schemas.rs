//! Exports the JSON Schemas and the AsyncAPI document of the example contracts.
//!
//! ```text
//! cargo run --example export_schemas            # writes <package>/schemas/
//! cargo run --example export_schemas -- --check # exits 1 naming stale files, writes nothing
//! cargo run --example export_schemas -- --dir /tmp/schemas
//! ```
//!
//! The consumer bindings are those of the quickstart: `billing_order` bound to
//! `order.*.submit` and `logistics_order` bound to `order.#`. `tests/schemas.rs` uses
//! [`asyncapi`] too, to check that the checked-in `schemas/` is up to date.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use event_manager::RoutingError;
use event_manager::schema::{self, AsyncApi, Staleness};
use event_manager_examples::ORDER;

/// The command that regenerates the checked-in files.
pub const REGENERATE: &str = "cargo run --example export_schemas";

/// The checked-in export directory.
pub const DEFAULT_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/schemas");

/// The export of the example contracts: every registered contract (the order events) and
/// the consumer bindings of the quickstart's services.
pub fn asyncapi() -> Result<AsyncApi, RoutingError> {
    let description = "The order domain of the event-manager examples: orders are submitted \
        (versions 1 and 2) and charged back on the `order` topic exchange. `billing_order` \
        consumes every version of `submit`; `logistics_order` consumes every order event.";
    let api = AsyncApi::new("event-manager example contracts", env!("CARGO_PKG_VERSION"))
        .description(description)
        .consumer("billing_order", ORDER, "order.*.submit".parse()?)
        .consumer("logistics_order", ORDER, "order.#".parse()?);
    Ok(api)
}

/// Command line of the export.
#[derive(Debug, Parser)]
#[command(about = "Export the JSON Schemas and AsyncAPI document of the example contracts")]
struct Args {
    /// The directory to write to (or to check).
    #[arg(long, default_value = DEFAULT_DIR)]
    dir: PathBuf,
    /// Compare the directory with the export instead of writing it; exit 1 when it is stale.
    #[arg(long)]
    check: bool,
}

fn run(args: &Args) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let api = asyncapi()?;
    let dir = args.dir.display();
    if args.check {
        let stale = schema::find_stale(&api, &args.dir)?;
        if stale.is_empty() {
            let count = schema::files(&api)?.len();
            println!("{dir}: {count} files up to date");
            return Ok(ExitCode::SUCCESS);
        }
        for file in &stale {
            eprintln!("stale: {file}");
        }
        eprintln!(
            "{dir}: {} stale files; run `{REGENERATE}` to regenerate",
            stale.len()
        );
        return Ok(ExitCode::FAILURE);
    }
    let changed = schema::write(&api, &args.dir)?;
    for file in &changed {
        let what = match file.staleness {
            Staleness::Missing => "created",
            Staleness::Differs => "updated",
            Staleness::Extra => "removed",
        };
        println!("{what} {}", file.path.display());
    }
    let count = schema::files(&api)?.len();
    println!("{dir}: {count} files exported, {} changed", changed.len());
    Ok(ExitCode::SUCCESS)
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}
