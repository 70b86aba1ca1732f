//! The logistics service: queue `logistics_order` bound to `order.#`. Exits 0 after handling
//! `--expect` distinct orders, or on Ctrl-C / SIGTERM, printing `handled K`.
//!
//! ```text
//! AMQP_URL=amqp://guest:guest@127.0.0.1:5672/%2f cargo run --example logistics_service -- --expect 5000
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
    let bus = Bus::from_env().await?.with_app_id("logistics");
    let service = services::logistics(&bus);
    let handled =
        cli::count_distinct_orders(service, &[Order::SUBMIT, Order::CHARGEBACK], args.expect)
            .await?;
    println!("handled {handled}");
    bus.close().await;
    Ok(())
}
