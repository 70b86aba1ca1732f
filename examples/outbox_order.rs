//! The order service with a transactional outbox: each of `--count` transactions inserts a row
//! into `orders` and writes an `order.v1.submit` into the outbox (table `event_outbox`); it
//! prints `committed N`, then relays the outbox until it is empty and prints `relayed K`.
//! `--count 0` only relays what is pending.
//!
//! ```text
//! DATABASE_URL=postgres://postgres@127.0.0.1:5432/event_manager \
//! AMQP_URL=amqp://guest:guest@127.0.0.1:5672/%2f \
//!     cargo run --example outbox_order -- --count 1000 --relays 2
//! ```
//!
//! Killed at any point, nothing is lost: a later run relays what is pending. A row may be
//! published twice (killed between the confirm and the commit), with the same message id.

use std::time::Duration;

use clap::Parser;
use event_manager::outbox::sqlx::postgres::PgPoolOptions;
use event_manager::outbox::{OutboxStore, PgStore, Relay, sqlx};
use event_manager_examples::{Order, cli};

/// Commits orders with their events, then relays the outbox.
#[derive(Parser)]
struct Args {
    /// How many orders to commit (0: only relay).
    #[arg(long, default_value_t = 0)]
    count: u64,
    /// How many relays publish at once (they claim rows with `FOR UPDATE SKIP LOCKED`).
    #[arg(long, default_value_t = 2)]
    relays: usize,
    /// Rows per claim.
    #[arg(long, default_value_t = 50)]
    batch: usize,
    /// Publishes of a batch awaiting their confirms at once (1: in order).
    #[arg(long, default_value_t = 1)]
    in_flight: usize,
}

/// The database of the examples.
const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/event_manager";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let url = std::env::var("DATABASE_URL").unwrap_or_else(|_| DEFAULT_DATABASE_URL.into());
    let pool = PgPoolOptions::new()
        .max_connections(8)
        .connect(&url)
        .await?;
    let store = PgStore::new(pool.clone());
    store.create_outbox_table().await?;
    sqlx::query(
        "create table if not exists orders (
            id bigserial primary key,
            customer text not null,
            created_at timestamptz not null default now())",
    )
    .execute(&pool)
    .await?;
    let bus = cli::bus_from_env("order").await?;

    for _ in 0..args.count {
        let mut tx = pool.begin().await?;
        let id: i64 = sqlx::query_scalar("insert into orders (customer) values ($1) returning id")
            .bind("c-outbox")
            .fetch_one(&mut *tx)
            .await?;
        let order = Order::sample(u64::try_from(id)?);
        bus.outbox(&mut tx).publish(Order::SUBMIT, &order).await?;
        tx.commit().await?;
    }
    println!("committed {}", args.count);

    let relayed = relay_all(&bus, &store, &args).await?;
    println!("relayed {relayed}");
    bus.close().await;
    Ok(())
}

/// Runs `--relays` relays until the outbox has nothing pending; returns how many rows they
/// published. A failing batch (no queue bound yet, broker away) is tried again.
async fn relay_all(
    bus: &event_manager::Bus,
    store: &PgStore,
    args: &Args,
) -> Result<u64, Box<dyn std::error::Error>> {
    let mut total = 0;
    loop {
        let mut relays = Vec::new();
        for _ in 0..args.relays.max(1) {
            let relay = Relay::new(bus, store.clone())
                .batch_size(args.batch)
                .in_flight(args.in_flight);
            relays.push(tokio::spawn(async move { relay.drain().await }));
        }
        for relay in relays {
            match relay.await? {
                Ok(n) => total += n,
                Err(error) => eprintln!("outbox_order: relay failed, trying again: {error}"),
            }
        }
        if store.pending().await? == 0 {
            return Ok(total);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
