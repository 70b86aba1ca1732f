//! Moves the dead letters of a service back to its queue once the cause is fixed: each gets a
//! fresh set of attempts, and leaves the dead-letter queue only after its re-publication was
//! confirmed.
//!
//! ```text
//! AMQP_URL=amqp://guest:guest@127.0.0.1:5672/%2f cargo run --example replay_dead_letters -- --queue billing_order
//! ```

use clap::Parser;
use event_manager::Bus;

/// Replays dead letters.
#[derive(Parser)]
struct Args {
    /// The service queue whose dead letters (`<queue>.dlq`) go back to it.
    #[arg(long)]
    queue: String,
    /// Move at most this many.
    #[arg(long, default_value_t = usize::MAX)]
    limit: usize,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let bus = Bus::from_env().await?.with_app_id("replay");
    let moved = bus
        .service(args.queue.as_str())
        .queues()
        .replay_dead_letters(args.limit)
        .await?;
    println!("replayed {moved} dead letter(s) to {}", args.queue);
    bus.close().await;
    Ok(())
}
