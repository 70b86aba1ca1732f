//! Interop with a Python `event_manager` over Celery: the order domain as the Python services
//! declare it (`Order {id, lines: [{id, quantity, price}]}` on `order.v1.submit`), on an
//! exchange marked Celery-wire.
//!
//! ```text
//! # Consume Celery task messages (e.g. from `Order(...).submit()` in Python): queue
//! # `billing_order` bound to `order.*.submit`; prints `handled N` after N distinct orders.
//! cargo run --example celery_interop -- consume --expect 200
//!
//! # Publish N orders (ids 1..=N) as Celery task messages a Celery worker executes; prints
//! # `published N`.
//! cargo run --example celery_interop -- publish --count 200
//! ```
//!
//! The broker is `AMQP_URL` (default `amqp://guest:guest@127.0.0.1:5672/%2f`). Publishing
//! keeps the default [`Unroutable::Error`](event_manager::Unroutable::Error): an order no queue
//! is bound to receive fails the publish, so start the consumer (the Celery worker, which
//! declares `billing_order`) first. `scripts/celery-interop` runs both directions against a
//! real Celery worker and publisher (`tests/celery/`).

use std::collections::HashSet;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::{Parser, Subcommand};
use event_manager::{Bus, Delivery, Event, Exchange, HandlerError, RetryPolicy};
use futures_util::{StreamExt, TryStreamExt, stream};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

/// The order domain's exchange; its events travel as Celery task messages.
pub const ORDER: Exchange = Exchange::topic("order").celery();

/// One line of an order, as the Python `Line` attrs class has it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Line {
    /// The line's id within its order.
    pub id: u64,
    /// How many units.
    pub quantity: u32,
    /// Price of one unit (a JSON float, as Python sends it).
    pub price: f64,
}

/// An order, as the Python `Order` attrs class has it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema, Event)]
#[event(exchange = ORDER, version = "1.0.0", events(submit))]
pub struct Order {
    /// The order id, unique per order.
    pub id: u64,
    /// What was ordered.
    pub lines: Vec<Line>,
}

impl Order {
    /// A small order with two lines, prices with cents.
    fn sample(id: u64) -> Self {
        Self {
            id,
            lines: vec![
                Line {
                    id: 1,
                    quantity: 1 + (id % 5) as u32,
                    price: 19.99,
                },
                Line {
                    id: 2,
                    quantity: 1,
                    price: (id % 7) as f64 + 0.5,
                },
            ],
        }
    }
}

/// Celery interop of the order domain.
#[derive(Parser)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Handle orders on queue `billing_order` (bound to `order.*.submit`) until `--expect`
    /// distinct ones arrived; print `handled N`.
    Consume {
        /// How many distinct orders to wait for.
        #[arg(long)]
        expect: usize,
        /// Give up after this many seconds: print the count so far and exit 1.
        #[arg(long, default_value_t = 60)]
        timeout: u64,
        /// Fail the first attempt of every order (retryable), so that each one goes through
        /// a wait queue and back before it counts: retries of Celery task messages.
        #[arg(long)]
        retry_first: bool,
    },
    /// Publish orders 1..=N as Celery task messages; print `published N`.
    Publish {
        /// How many orders to publish.
        #[arg(long)]
        count: u64,
    },
}

#[tokio::main]
async fn main() -> Result<ExitCode, Box<dyn std::error::Error>> {
    match Args::parse().command {
        Command::Consume {
            expect,
            timeout,
            retry_first,
        } => consume(expect, Duration::from_secs(timeout), retry_first).await,
        Command::Publish { count } => publish(count).await,
    }
}

/// Runs service `billing_order` until `expect` distinct orders were handled or `timeout`.
async fn consume(
    expect: usize,
    timeout: Duration,
    retry_first: bool,
) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let bus = Bus::from_env().await?.with_app_id("billing");
    let mut service = bus.service("billing_order");
    service.bind(ORDER, "order.*.submit")?;
    let seen = Arc::new(Mutex::new(HashSet::new()));
    let done = Arc::new(Notify::new());
    {
        let (seen, done) = (seen.clone(), done.clone());
        service.on(Order::SUBMIT, move |order: Order, ctx: Delivery| {
            let (seen, done) = (seen.clone(), done.clone());
            async move {
                if order.lines.is_empty() || order.lines.iter().any(|l| !l.price.is_finite()) {
                    // No retry fixes a malformed order: dead-letter it at once.
                    return Err(HandlerError::permanent(format!(
                        "malformed order {order:?}"
                    )));
                }
                if retry_first && ctx.attempt() == 1 {
                    return Err(HandlerError::retry(format!("order {}: retry", order.id)));
                }
                let mut seen = seen.lock().unwrap_or_else(|p| p.into_inner());
                if seen.insert(order.id) && seen.len() >= expect {
                    done.notify_one();
                }
                Ok(())
            }
        });
    }
    service.prefetch(200).concurrency(16);
    if retry_first {
        service.retry(RetryPolicy::new(3, vec![Duration::from_millis(200)]));
    }
    let running = service.start().await?;
    let finished = tokio::time::timeout(timeout, done.notified()).await.is_ok();
    running.shutdown().await?;
    let handled = seen.lock().unwrap_or_else(|p| p.into_inner()).len();
    println!("handled {handled}");
    bus.close().await;
    if finished {
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!("celery_interop: only {handled} of {expect} orders within {timeout:?}");
        Ok(ExitCode::FAILURE)
    }
}

/// Publishes orders `1..=count`, each confirmed by the broker.
async fn publish(count: u64) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let bus = Bus::from_env().await?.with_app_id("order");
    let published: u64 = stream::iter(1..=count)
        .map(|id| {
            let bus = &bus;
            async move {
                Order::sample(id).submit(bus).await?;
                Ok::<u64, event_manager::PublishError>(1)
            }
        })
        .buffer_unordered(64)
        .try_fold(0, |n, one| async move { Ok(n + one) })
        .await?;
    println!("published {published}");
    bus.close().await;
    Ok(ExitCode::SUCCESS)
}
