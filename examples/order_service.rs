//! The order service: publishes N distinct orders, alternating `order.v1.submit` and
//! `order.v1.chargeback`, and waits for every broker confirm.
//!
//! ```text
//! AMQP_URL=amqp://guest:guest@127.0.0.1:5672/%2f cargo run --example order_service -- --count 10000
//! ```
//!
//! `EVENT_MANAGER_NAMESPACE=ns` puts its exchange and the queues it declares in a namespace.

use clap::Parser;
use event_manager_examples::{Order, cli, services};
use futures_util::{StreamExt, TryStreamExt, stream};

/// Publishes orders.
#[derive(Parser)]
struct Args {
    /// How many distinct orders to publish.
    #[arg(long, default_value_t = 10)]
    count: u64,
    /// How many publishes may await their confirm at once.
    #[arg(long, default_value_t = 512)]
    in_flight: usize,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let bus = cli::bus_from_env("order").await?;
    // Declare the subscribers' queues: orders published before they start wait there.
    services::billing(&bus).declare().await?;
    services::logistics(&bus).declare().await?;

    let started = std::time::Instant::now();
    let published: u64 = stream::iter(0..args.count)
        .map(|id| {
            let bus = &bus;
            async move {
                let order = Order::sample(id);
                if id % 2 == 0 {
                    order.submit(bus).await?;
                } else {
                    order.chargeback(bus).await?;
                }
                Ok::<u64, event_manager::PublishError>(1)
            }
        })
        .buffer_unordered(args.in_flight.max(1))
        .try_fold(0, |n, one| async move { Ok(n + one) })
        .await?;
    let seconds = started.elapsed().as_secs_f64();
    eprintln!(
        "{published} confirmed in {seconds:.2} s ({:.0} msg/s)",
        published as f64 / seconds.max(1e-9)
    );
    println!("published {published}");
    bus.close().await;
    Ok(())
}
