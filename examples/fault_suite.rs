//! The fault suite: each scenario runs the library in this process, or the example services
//! as child processes, against the real local RabbitMQ (`AMQP_URL`), injects one fault with
//! `rabbitmqctl` and prints one line of figures:
//!
//! ```text
//! fault-suite: <scenario>: published=N confirmed=N handled=N dead_lettered=N lost=0 stuck=0 (facts)
//! ```
//!
//! `lost` counts confirmed messages (by distinct message or order id) neither handled nor
//! dead-lettered at the end; `stuck` counts messages still ready or unacknowledged in the
//! scenario's service queues once the fault is removed and a settle period has passed. The
//! suite exits 1 when a scenario loses or strands a message or fails otherwise, and says what
//! went wrong.
//!
//! ```text
//! cargo build --examples && target/debug/examples/fault_suite              # every scenario
//! target/debug/examples/fault_suite --scenario dlq-deleted                  # one of them
//! target/debug/examples/fault_suite --list
//! ```
//!
//! Scenarios stop the broker, raise memory alarms and close every connection on it: run one
//! suite at a time, and not next to other tests that need the broker. Every scenario uses
//! names of its own (`fs_<scenario>_<pid>`), and restores the broker (`start_app`, the
//! memory watermark, its policies) and deletes its queues and exchanges even when it fails.

#[path = "fault_suite/broker.rs"]
mod broker;
#[path = "fault_suite/children.rs"]
mod children;
#[path = "fault_suite/compat.rs"]
mod compat;
#[path = "fault_suite/probe.rs"]
mod probe;
#[path = "fault_suite/report.rs"]
mod report;
#[path = "fault_suite/scenarios/mod.rs"]
mod scenarios;
#[path = "fault_suite/scope.rs"]
mod scope;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use clap::Parser;

use crate::broker::Broker;
use crate::report::{Report, Res};
use crate::scenarios::Scenario;
use crate::scope::Scope;

/// Fault injection against the local RabbitMQ.
#[derive(Parser)]
struct Args {
    /// Run only this scenario (repeatable); all of them by default.
    #[arg(long)]
    scenario: Vec<String>,
    /// List the scenarios and exit.
    #[arg(long)]
    list: bool,
}

/// How a scenario ended.
enum Verdict {
    Passed,
    Failed,
    Interrupted,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    // The library's own log, on standard error, only when asked for (`RUST_LOG=...`): the
    // faults make it warn a lot.
    if std::env::var_os("RUST_LOG").is_some() {
        event_manager_examples::observe::log_to_stderr();
    }
    let all = scenarios::all();
    if args.list {
        for s in &all {
            println!("{:<18} {}", s.name, s.about);
        }
        return ExitCode::SUCCESS;
    }
    let selected: Vec<&Scenario> = if args.scenario.is_empty() {
        all.iter().collect()
    } else {
        let mut chosen = Vec::new();
        for name in &args.scenario {
            match all.iter().find(|s| s.name == name) {
                Some(s) => chosen.push(s),
                None => {
                    eprintln!("fault-suite: unknown scenario `{name}` (see --list)");
                    return ExitCode::from(2);
                }
            }
        }
        chosen
    };
    let url = std::env::var("AMQP_URL")
        .ok()
        .filter(|u| !u.trim().is_empty())
        .unwrap_or_else(|| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned());
    let dir = std::env::temp_dir().join(format!("fault-suite-{}", std::process::id()));
    if let Err(e) = std::fs::create_dir_all(&dir) {
        eprintln!("fault-suite: cannot create {}: {e}", dir.display());
        return ExitCode::FAILURE;
    }
    let broker = Arc::new(Broker::default());
    let began = Instant::now();
    let mut failed = Vec::new();
    for scenario in &selected {
        match run_one(scenario, &url, &broker, &dir).await {
            Verdict::Passed => {}
            Verdict::Failed => failed.push(scenario.name),
            Verdict::Interrupted => {
                eprintln!("fault-suite: interrupted; the broker was restored");
                return ExitCode::from(130);
            }
        }
    }
    let seconds = report::secs(began.elapsed());
    if failed.is_empty() {
        let _ = std::fs::remove_dir_all(&dir);
        println!(
            "fault-suite: {} scenario(s) passed in {seconds} s",
            selected.len()
        );
        ExitCode::SUCCESS
    } else {
        println!(
            "fault-suite: {} of {} scenario(s) FAILED in {seconds} s: {} (child output in {})",
            failed.len(),
            selected.len(),
            failed.join(", "),
            dir.display()
        );
        ExitCode::FAILURE
    }
}

/// Aborts a spawned task when dropped.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Runs one scenario in its own task, within its time limit, then cleans up after it and
/// prints its figures.
async fn run_one(
    scenario: &Scenario,
    url: &str,
    broker: &Arc<Broker>,
    dir: &std::path::Path,
) -> Verdict {
    let scope = Arc::new(Scope::new(
        scenario.name,
        url,
        broker.clone(),
        dir.to_owned(),
    ));
    let limit = scenario.limit;
    let began = Instant::now();
    let mut task = AbortOnDrop(tokio::spawn(tokio::time::timeout(
        limit,
        (scenario.run)(scope.clone()),
    )));
    let mut outcome: Res<Report> = tokio::select! {
        joined = &mut task.0 => match joined {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(format!("did not finish within {limit:?}")),
            Err(e) => Err(format!("the scenario task failed: {e}")),
        },
        _ = tokio::signal::ctrl_c() => {
            drop(task);
            let _ = scope.cleanup().await;
            return Verdict::Interrupted;
        }
    };
    drop(task);
    if let Ok(report) = &mut outcome {
        report.fact("seconds", report::secs(began.elapsed()));
    }
    // Let the scenario's task drop its children and connections before cleaning up.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let cleanup = scope.cleanup().await;
    print_outcome(scenario.name, outcome, &cleanup)
}

fn print_outcome(name: &str, outcome: Res<Report>, cleanup: &[String]) -> Verdict {
    let mut passed = cleanup.is_empty();
    match outcome {
        Ok(report) => {
            println!("fault-suite: {name}: {}", report.figures());
            if !report.passed() {
                passed = false;
                for problem in &report.problems {
                    println!("fault-suite: {name}: FAILED: {problem}");
                }
                for detail in &report.details {
                    println!("fault-suite: {name}:   {detail}");
                }
            }
        }
        Err(error) => {
            passed = false;
            println!("fault-suite: {name}: FAILED: {error}");
        }
    }
    for failure in cleanup {
        println!("fault-suite: {name}: FAILED: {failure}");
    }
    if passed {
        Verdict::Passed
    } else {
        Verdict::Failed
    }
}
