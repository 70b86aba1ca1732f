//! The billing service: queue `billing_order` bound to `order.*.submit`. Exits 0 after handling
//! `--expect` distinct orders, or on Ctrl-C / SIGTERM, printing `handled K`.
//!
//! ```text
//! AMQP_URL=amqp://guest:guest@127.0.0.1:5672/%2f cargo run --example billing_service -- --expect 5000
//! ```

use clap::Parser;
use event_manager::Bus;
use event_manager_examples::{Order, cli, services};

/// Handles orders until enough distinct ones were seen.
#[derive(Parser)]
struct Args {
    /// Exit after this many distinct orders (default: run until a signal).
    #[arg(long, default_value_t = usize::MAX)]
    expect: usize,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let bus = Bus::from_env().await?.with_app_id("billing");
    let service = services::billing(&bus);
    let handled = cli::count_distinct_orders(service, &[Order::SUBMIT], args.expect).await?;
    println!("handled {handled}");
    bus.close().await;
    Ok(())
}
