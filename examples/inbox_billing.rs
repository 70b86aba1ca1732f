//! The billing service with an idempotent inbox: queue `inbox_billing_order` bound to
//! `order.*.submit`; for each order it inserts one row into
//! `billing_charges(order_id bigint not null, message_id text not null)` in the transaction
//! that records the message in the inbox (table `event_inbox`). The table has no unique
//! constraint: a charge made twice would show. Prints `handled N` and exits once
//! `billing_charges` holds `--expect` distinct orders (or on Ctrl-C / SIGTERM).
//!
//! ```text
//! DATABASE_URL=postgres://postgres@127.0.0.1:5432/event_manager \
//! AMQP_URL=amqp://guest:guest@127.0.0.1:5672/%2f \
//!     cargo run --example inbox_billing -- --expect 1000
//! ```

use std::time::Duration;

use clap::Parser;
use event_manager::outbox::sqlx::postgres::PgPoolOptions;
use event_manager::outbox::{Inbox, PgStore, sqlx};
use event_manager_examples::{ORDER, Order, cli};

/// Charges orders, once each.
#[derive(Parser)]
struct Args {
    /// Exit once this many distinct orders are charged (default: run until a signal).
    #[arg(long, default_value_t = i64::MAX)]
    expect: i64,
    /// The service queue.
    #[arg(long, default_value = "inbox_billing_order")]
    queue: String,
    /// How many messages are handled at once (each holds a database transaction).
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Once the expected orders are charged, go on consuming until the queue stayed empty
    /// for a second (to handle the duplicates still queued).
    #[arg(long)]
    drain: bool,
}

/// The database of the examples.
const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/event_manager";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let url = std::env::var("DATABASE_URL").unwrap_or_else(|_| DEFAULT_DATABASE_URL.into());
    let connections = u32::try_from(args.concurrency + 2)?;
    let pool = PgPoolOptions::new()
        .max_connections(connections)
        .connect(&url)
        .await?;
    let store = PgStore::new(pool.clone());
    store.create_inbox_table().await?;
    sqlx::query(
        "create table if not exists billing_charges (
            order_id bigint not null,
            message_id text not null)",
    )
    .execute(&pool)
    .await?;

    let bus = cli::bus_from_env("billing").await?;
    let mut billing = bus.service(args.queue.clone());
    billing.bind(ORDER, "order.*.submit")?;
    billing.concurrency(args.concurrency);
    let inbox = Inbox::new(store);
    billing.on_tx(&inbox, Order::SUBMIT, |order: Order, ctx, tx| {
        Box::pin(async move {
            sqlx::query("insert into billing_charges (order_id, message_id) values ($1, $2)")
                .bind(i64::try_from(order.id)?)
                .bind(ctx.message_id().unwrap_or_default())
                .execute(&mut **tx)
                .await?;
            Ok(())
        })
    });
    let queues = billing.queues();
    let running = billing.start().await?;
    eprintln!("inbox_billing: consuming");

    let handled = tokio::select! {
        handled = wait_for_charges(&pool, args.expect) => handled?,
        () = cli::shutdown_signal() => charged(&pool).await?,
    };
    if args.drain {
        wait_until_empty(&queues).await;
    }
    running.shutdown().await?;
    println!("handled {handled}");
    println!("duplicates {}", inbox.duplicates());
    bus.close().await;
    Ok(())
}

/// Waits until the service queue, its retried and its wait queues had no ready message for
/// a second.
async fn wait_until_empty(queues: &event_manager::topology::ServiceQueues) {
    let mut empty_since = None;
    loop {
        let ready = match queues.lengths().await {
            Ok(lengths) => lengths
                .iter()
                .filter(|(name, _)| name != queues.dead_letter_queue())
                .map(|(_, n)| n)
                .sum(),
            Err(_) => 1,
        };
        let now = std::time::Instant::now();
        empty_since = if ready == 0 {
            empty_since.or(Some(now))
        } else {
            None
        };
        if empty_since.is_some_and(|at| now - at >= Duration::from_secs(1)) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// How many distinct orders were charged.
async fn charged(pool: &sqlx::PgPool) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("select count(distinct order_id) from billing_charges")
        .fetch_one(pool)
        .await
}

/// Waits until `expect` distinct orders were charged; returns how many were.
async fn wait_for_charges(pool: &sqlx::PgPool, expect: i64) -> Result<i64, sqlx::Error> {
    loop {
        let n = charged(pool).await?;
        if n >= expect {
            return Ok(n);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
