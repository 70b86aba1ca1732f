//! The order service: publishes N distinct orders, alternating `order.v1.submit` and
//! `order.v1.chargeback`, and waits for every broker confirm.
//!
//! ```text
//! AMQP_URL=amqp://guest:guest@127.0.0.1:5672/%2f cargo run --example order_service -- --count 10000
//! ```
//!
//! `AMQP_URL` may list the nodes of a cluster, comma-separated. `--rate 500` publishes at
//! most 500 orders per second.
//!
//! `EVENT_MANAGER_NAMESPACE=ns` puts its exchange and the queues it declares in a namespace.
//! `--metrics 127.0.0.1:9464` serves `/metrics` and `/health` and keeps serving after the
//! last confirm, until Ctrl-C / SIGTERM, so that the figures can be scraped; it exits 1 once
//! the broker connection is given up (`AMQP_GIVE_UP_AFTER`).

use clap::Parser;
use event_manager_examples::{Order, cli, observe, services};
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
    /// Publish at most this many orders per second (default: as fast as confirms come), so
    /// that a fault can be injected while the stream runs.
    #[arg(long)]
    rate: Option<f64>,
    /// Serve `/metrics` (Prometheus text) and `/health` on this address, and keep serving
    /// after publishing until a signal.
    #[arg(long)]
    metrics: Option<std::net::SocketAddr>,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    observe::log_to_stderr();
    let args = Args::parse();
    let metrics = args.metrics.map(|_| observe::install()).transpose()?;
    let bus = cli::bus_from_env("order").await?;
    if let (Some(addr), Some(handle)) = (args.metrics, metrics.clone()) {
        let bound = observe::serve(addr, handle, observe::Probe::Bus(bus.clone())).await?;
        eprintln!("metrics and health on http://{bound}");
    }
    // Declare the subscribers' queues: orders published before they start wait there.
    services::billing(&bus).declare().await?;
    services::logistics(&bus).declare().await?;

    let started = std::time::Instant::now();
    let rate = args.rate.filter(|rate| *rate > 0.0);
    let published: u64 = stream::iter(0..args.count)
        .map(|id| {
            let bus = &bus;
            async move {
                if let Some(rate) = rate {
                    let due = std::time::Duration::from_secs_f64(id as f64 / rate);
                    tokio::time::sleep_until((started + due).into()).await;
                }
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
    if metrics.is_some() {
        // Serve the figures until a signal, or until the broker connection is given up.
        tokio::select! {
            () = cli::shutdown_signal() => {}
            reason = cli::transport_gave_up(&bus) => {
                bus.close().await;
                return Err(format!("the broker connection was given up: {reason}").into());
            }
        }
    }
    bus.close().await;
    Ok(())
}
