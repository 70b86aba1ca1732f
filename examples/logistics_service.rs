//! The logistics service: queue `logistics_order` bound to `order.#`. Exits 0 after handling
//! `--expect` distinct orders, or on Ctrl-C / SIGTERM, printing `handled K`.
//!
//! ```text
//! AMQP_URL=amqp://guest:guest@127.0.0.1:5672/%2f cargo run --example logistics_service -- --expect 5000
//! ```
//!
//! Takes the same options and environment as `billing_service`.

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
    let bus = cli::bus_from_env("logistics").await?;
    let service = services::logistics(&bus);
    let handled =
        cli::count_distinct_orders(service, &[Order::SUBMIT, Order::CHARGEBACK], &args.run).await?;
    println!("handled {handled}");
    bus.close().await;
    Ok(())
}
