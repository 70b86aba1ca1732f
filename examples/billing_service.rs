//! The billing service: queue `billing_order` bound to `order.*.submit`. Exits 0 after handling
//! `--expect` distinct orders, or on Ctrl-C / SIGTERM, printing `handled K`. Exits non-zero
//! when its run fails (e.g. the broker stayed away longer than `AMQP_GIVE_UP_AFTER`), so that
//! a supervisor restarts it.
//!
//! ```text
//! AMQP_URL=amqp://guest:guest@127.0.0.1:5672/%2f cargo run --example billing_service -- --expect 5000
//! ```
//!
//! `EVENT_MANAGER_NAMESPACE=ns` puts its exchange and queues in a namespace; `--grace 3s`
//! shortens the shutdown grace period; `--handled-log FILE` appends each distinct order id.

use clap::Parser;
use event_manager_examples::{Order, cli, observe, services};

/// Handles orders until enough distinct ones were seen.
#[derive(Parser)]
struct Args {
    #[command(flatten)]
    run: cli::RunArgs,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    observe::log_to_stderr();
    let args = Args::parse();
    if args.run.metrics.is_some() {
        // Before connecting: the connection registers its gauge when it opens.
        observe::install()?;
    }
    let bus = cli::bus_from_env("billing").await?;
    let service = services::billing(&bus);
    let handled = cli::count_distinct_orders(service, &[Order::SUBMIT], &args.run).await?;
    println!("handled {handled}");
    bus.close().await;
    Ok(())
}
