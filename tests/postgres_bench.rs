//! The overhead of the outbox and the inbox against a plain publish and consume, in one run:
//! a small harness printing figures, not a pass/fail test (ignored by default).
//!
//! ```text
//! AMQP_URL=amqp://guest:guest@127.0.0.1:5672/%2f \
//!     cargo test --release --test postgres_bench -- --ignored --nocapture
//! ```
//!
//! Every variant writes one `orders` row per event, so that the figures compare what the
//! outbox and the inbox add to a service that uses PostgreSQL anyway: the producer's
//! dual write (commit, then publish with a confirm) against the outbox write plus the relay;
//! a consumer inserting its charge in autocommit against the same insert through the inbox.
//! N (default 2000) is `BENCH_N`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use event_manager::outbox::sqlx::{self, PgPool, postgres::PgPoolOptions};
use event_manager::outbox::{Inbox, PgStore, Relay};
use event_manager::{Bus, Service};
use event_manager_examples::{ORDER, Order};

const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/event_manager";

struct Bench {
    pool: PgPool,
    schema: String,
    store: PgStore,
    bus: Bus,
    n: u64,
}

impl Bench {
    async fn new() -> Self {
        let url = std::env::var("DATABASE_URL").unwrap_or_else(|_| DEFAULT_DATABASE_URL.into());
        let pool = PgPoolOptions::new()
            .max_connections(20)
            .connect(&url)
            .await
            .unwrap();
        let schema = format!("em_bench_{}", std::process::id());
        for sql in [
            format!("drop schema if exists {schema} cascade"),
            format!("create schema {schema}"),
            format!("create table {schema}.orders (id bigint not null)"),
            format!("create table {schema}.charges (order_id bigint not null, message_id text)"),
        ] {
            sqlx::query(&sql).execute(&pool).await.unwrap();
        }
        let store = PgStore::with_tables(
            pool.clone(),
            &format!("{schema}.outbox"),
            &format!("{schema}.inbox"),
        )
        .unwrap();
        store.create_tables().await.unwrap();
        let bus = Bus::from_env().await.unwrap().with_namespace(&schema);
        let n = std::env::var("BENCH_N")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(2000);
        Self {
            pool,
            schema,
            store,
            bus,
            n,
        }
    }

    fn report(&self, what: &str, elapsed: Duration) {
        let per = elapsed.as_secs_f64() * 1e6 / self.n as f64;
        let rate = self.n as f64 / elapsed.as_secs_f64();
        println!(
            "bench {what:<44} {:>8.1} ms total {per:>8.1} us/event {rate:>9.0} events/s",
            elapsed.as_secs_f64() * 1e3
        );
    }

    fn insert_order(&self) -> String {
        format!("insert into {}.orders (id) values ($1)", self.schema)
    }

    /// Commit the order, then publish it with a confirm (the dual write the outbox replaces).
    async fn plain_publish(&self) -> Duration {
        let start = Instant::now();
        for id in 0..self.n {
            sqlx::query(&self.insert_order())
                .bind(id as i64)
                .execute(&self.pool)
                .await
                .unwrap();
            self.bus
                .publish(Order::SUBMIT, &Order::sample(id))
                .await
                .unwrap();
        }
        start.elapsed()
    }

    /// Commit the order and its outbox row in one transaction.
    async fn outbox_write(&self) -> Duration {
        let start = Instant::now();
        for id in 0..self.n {
            let mut tx = self.pool.begin().await.unwrap();
            sqlx::query(&self.insert_order())
                .bind(id as i64)
                .execute(&mut *tx)
                .await
                .unwrap();
            self.bus
                .outbox(&mut tx)
                .table(self.store.outbox_table().to_owned())
                .publish(Order::SUBMIT, &Order::sample(id))
                .await
                .unwrap();
            tx.commit().await.unwrap();
        }
        start.elapsed()
    }

    async fn relay(&self, relays: usize, in_flight: usize) -> Duration {
        let start = Instant::now();
        let tasks: Vec<_> = (0..relays)
            .map(|_| {
                let relay = Relay::new(&self.bus, self.store.clone()).in_flight(in_flight);
                tokio::spawn(async move { relay.drain().await.unwrap() })
            })
            .collect();
        let mut total = 0;
        for task in tasks {
            total += task.await.unwrap();
        }
        assert_eq!(total, self.n);
        start.elapsed()
    }

    fn service(&self, name: &str) -> Service {
        let mut service = self.bus.service(name);
        service.bind(ORDER, "order.*.submit").unwrap();
        service
    }

    /// Starts `service` on a queue holding `n` messages; returns when `done` counted them.
    async fn consume(&self, service: Service, done: Arc<AtomicU64>) -> Duration {
        let queues = service.queues();
        let start = Instant::now();
        let running = service.start().await.unwrap();
        while done.load(Ordering::SeqCst) < self.n {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let elapsed = start.elapsed();
        running.shutdown().await.unwrap();
        queues.delete().await.unwrap();
        elapsed
    }

    async fn drop(self) {
        sqlx::query(&format!("drop schema {} cascade", self.schema))
            .execute(&self.pool)
            .await
            .unwrap();
        self.bus.close().await;
    }
}

fn plain_consumer(bench: &Bench, done: &Arc<AtomicU64>) -> Service {
    let mut service = bench.service("bench_plain");
    let (pool, done) = (bench.pool.clone(), done.clone());
    let insert = format!("insert into {}.charges values ($1, $2)", bench.schema);
    service.on(Order::SUBMIT, move |order: Order, ctx| {
        let (pool, done, insert) = (pool.clone(), done.clone(), insert.clone());
        async move {
            sqlx::query(&insert)
                .bind(order.id as i64)
                .bind(ctx.message_id().unwrap_or_default())
                .execute(&pool)
                .await?;
            done.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
    });
    service
}

fn inbox_consumer(bench: &Bench, done: &Arc<AtomicU64>) -> Service {
    let mut service = bench.service("bench_inbox");
    let done = done.clone();
    let insert = format!("insert into {}.charges values ($1, $2)", bench.schema);
    let inbox = Inbox::new(bench.store.clone());
    service.on_tx(&inbox, Order::SUBMIT, move |order: Order, ctx, tx| {
        let (done, insert) = (done.clone(), insert.clone());
        Box::pin(async move {
            sqlx::query(&insert)
                .bind(order.id as i64)
                .bind(ctx.message_id().unwrap_or_default())
                .execute(&mut **tx)
                .await?;
            done.fetch_add(1, Ordering::SeqCst);
            Ok(())
        })
    });
    service
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: cargo test --release --test postgres_bench -- --ignored --nocapture"]
async fn outbox_and_inbox_overhead() {
    let bench = Bench::new().await;
    let (plain_done, inbox_done) = (Arc::default(), Arc::default());
    // Both queues exist before anything is published, and receive every event.
    for service in [
        plain_consumer(&bench, &plain_done),
        inbox_consumer(&bench, &inbox_done),
    ] {
        service.declare().await.unwrap();
    }
    println!(
        "bench N={} on {}",
        bench.n,
        std::env::var("AMQP_URL").unwrap_or_else(|_| "memory://".into())
    );
    let plain = bench.plain_publish().await;
    bench.report("publish: commit order, then publish+confirm", plain);
    let write = bench.outbox_write().await;
    bench.report("outbox: commit order + outbox row", write);
    let relay1 = bench.relay(1, 1).await;
    bench.report("outbox: relay (1 relay, batches of 100, in order)", relay1);
    bench.report("outbox: write + relay", write + relay1);
    sqlx::query(&format!(
        "update {} set sent_at = null",
        bench.store.outbox_table()
    ))
    .execute(&bench.pool)
    .await
    .unwrap();
    let relay32 = bench.relay(1, 32).await;
    bench.report("outbox: relay again, 32 confirms in flight", relay32);
    bench.report("outbox: write + relay (32 in flight)", write + relay32);
    // Each queue now holds 3N messages (published plainly, relayed twice); N are consumed.
    let plain_consume = bench
        .consume(plain_consumer(&bench, &plain_done), plain_done.clone())
        .await;
    bench.report("consume: insert charge (autocommit), ack", plain_consume);
    let inbox = bench
        .consume(inbox_consumer(&bench, &inbox_done), inbox_done.clone())
        .await;
    bench.report("consume: inbox mark + insert charge in one tx", inbox);
    bench.drop().await;
}
