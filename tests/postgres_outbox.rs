//! The outbox and the inbox on a real PostgreSQL (DATABASE_URL, default
//! postgres://postgres@127.0.0.1:5432/event_manager), over the in-memory broker. Each test
//! works in a schema of its own, dropped at the end. Fails, never skips, without a database.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use event_manager::outbox::sqlx::{self, PgPool, postgres::PgPoolOptions};
use event_manager::outbox::{Inbox, OutboxStore, PgStore, Relay};
use event_manager::{Bus, HandlerError, RetryPolicy};
use event_manager_examples::{ORDER, Order};

const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/event_manager";

/// A schema of its own for one test, with a store whose tables live in it.
struct Db {
    pool: PgPool,
    schema: String,
    store: PgStore,
}

impl Db {
    async fn new(name: &str) -> Self {
        let url = std::env::var("DATABASE_URL").unwrap_or_else(|_| DEFAULT_DATABASE_URL.into());
        let pool = PgPoolOptions::new()
            .max_connections(12)
            .connect(&url)
            .await
            .unwrap_or_else(|e| panic!("PostgreSQL at {url}: {e} (scripts/ensure-postgres)"));
        let schema = format!("em_{name}_{}", std::process::id());
        sqlx::query(&format!("drop schema if exists {schema} cascade"))
            .execute(&pool)
            .await
            .unwrap();
        sqlx::query(&format!("create schema {schema}"))
            .execute(&pool)
            .await
            .unwrap();
        let outbox = format!("{schema}.outbox");
        let inbox = format!("{schema}.inbox");
        let store = PgStore::with_tables(pool.clone(), &outbox, &inbox).unwrap();
        store.create_tables().await.unwrap();
        sqlx::query(&format!(
            "create table {schema}.charges (order_id bigint not null, message_id text not null)"
        ))
        .execute(&pool)
        .await
        .unwrap();
        Self {
            pool,
            schema,
            store,
        }
    }

    /// The statement that records a charge: `$1` the order id, `$2` a text.
    fn insert_charge(&self) -> String {
        format!(
            "insert into {}.charges (order_id, message_id) values ($1, $2)",
            self.schema
        )
    }

    async fn scalar(&self, sql: &str) -> i64 {
        sqlx::query_scalar(&sql.replace("$schema", &self.schema))
            .fetch_one(&self.pool)
            .await
            .unwrap()
    }

    /// Commits `ids` as orders through the outbox, and one more order rolled back.
    async fn commit_orders(&self, bus: &Bus, ids: impl IntoIterator<Item = u64>) {
        for id in ids {
            let mut tx = self.pool.begin().await.unwrap();
            bus.outbox(&mut tx)
                .table(self.store.outbox_table().to_owned())
                .publish(Order::SUBMIT, &Order::sample(id))
                .await
                .unwrap();
            tx.commit().await.unwrap();
        }
        let mut rolled_back = self.pool.begin().await.unwrap();
        bus.outbox(&mut rolled_back)
            .table(self.store.outbox_table().to_owned())
            .publish(Order::SUBMIT, &Order::sample(999_999))
            .await
            .unwrap();
        rolled_back.rollback().await.unwrap();
    }

    async fn drop(self) {
        sqlx::query(&format!("drop schema {} cascade", self.schema))
            .execute(&self.pool)
            .await
            .unwrap();
    }
}

/// The service `name` on `bus`, taking the orders, with fast retries.
fn inbox_billing(bus: &Bus, name: &str) -> event_manager::Service {
    let mut billing = bus.service(name);
    billing.bind(ORDER, "order.*.submit").unwrap();
    billing.retry(RetryPolicy::new(5, vec![Duration::from_millis(20)]));
    billing
}

/// Starts `billing` on `bus`: one charge per order through the inbox of `db`, failing the
/// first attempt of every order divisible by 7 (after its insert, which must roll back).
async fn start_billing(bus: &Bus, db: &Db) -> (event_manager::RunningService, Inbox<PgStore>) {
    let inbox = Inbox::new(db.store.clone());
    let mut billing = inbox_billing(bus, "inbox_billing");
    let insert = db.insert_charge();
    billing.on_tx(&inbox, Order::SUBMIT, move |order: Order, ctx, tx| {
        let insert = insert.clone();
        Box::pin(async move {
            sqlx::query(&insert)
                .bind(i64::try_from(order.id)?)
                .bind(ctx.message_id().unwrap_or_default())
                .execute(&mut **tx)
                .await?;
            if order.id.is_multiple_of(7) && ctx.attempt() == 1 {
                return Err(HandlerError::retry("the first attempt fails"));
            }
            Ok(())
        })
    });
    (billing.start().await.unwrap(), inbox)
}

async fn wait_for(what: &str, mut done: impl AsyncFnMut() -> bool) {
    for _ in 0..1000 {
        if done().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relayed_twice_handled_once_failures_roll_back() {
    let db = Db::new("once").await;
    let bus = Bus::in_memory();
    let (billing, inbox) = start_billing(&bus, &db).await;
    db.commit_orders(&bus, 1..=50).await;
    assert_eq!(
        db.store.pending().await.unwrap(),
        50,
        "the rollback left no row"
    );

    let relay = Relay::new(&bus, db.store.clone()).batch_size(8);
    assert_eq!(relay.drain().await.unwrap(), 50);
    // A relay that died before marking: every row is published again, same message ids.
    sqlx::query(&format!(
        "update {} set sent_at = null",
        db.store.outbox_table()
    ))
    .execute(&db.pool)
    .await
    .unwrap();
    assert_eq!(relay.drain().await.unwrap(), 50);
    wait_for("50 charges and 50 duplicates", async || {
        db.scalar("select count(*) from $schema.charges").await >= 50 && inbox.duplicates() >= 50
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    billing.shutdown().await.unwrap();

    assert_eq!(db.scalar("select count(*) from $schema.charges").await, 50);
    assert_eq!(
        db.scalar("select count(distinct order_id) from $schema.charges")
            .await,
        50
    );
    assert_eq!(db.scalar("select count(*) from $schema.inbox").await, 50);
    // Every charge carries the message id the outbox stored for its order.
    let stored = db
        .scalar(
            "select count(*) from $schema.charges c join $schema.outbox o
             on o.message_id = c.message_id",
        )
        .await;
    assert_eq!(stored, 50);
    assert_eq!(relay.retention(Duration::ZERO).purge().await.unwrap(), 50);
    assert_eq!(
        inbox.clone().window(Duration::ZERO).purge().await.unwrap(),
        50
    );
    db.drop().await;
}

/// A callback that swallows the error of a failed statement and returns `Ok`: PostgreSQL
/// then answers `COMMIT` with a rollback, which sqlx reports as success, so the message was
/// acknowledged with neither its inbox record nor its writes. It must be tried again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_a_failed_statement_aborted_is_not_acknowledged() {
    let db = Db::new("aborted").await;
    let bus = Bus::in_memory();
    let inbox = Inbox::new(db.store.clone());
    let mut billing = inbox_billing(&bus, "inbox_aborted");
    let insert = db.insert_charge();
    let attempts = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let counted = attempts.clone();
    billing.on_tx(&inbox, Order::SUBMIT, move |order: Order, ctx, tx| {
        let insert = insert.clone();
        let counted = counted.clone();
        Box::pin(async move {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            if ctx.attempt() == 1 {
                // "Already there? Never mind." The transaction is aborted all the same.
                let _ = sqlx::query("select 1 / 0").execute(&mut **tx).await;
            }
            let _ = sqlx::query(&insert)
                .bind(i64::try_from(order.id)?)
                .bind(ctx.message_id().unwrap_or_default())
                .execute(&mut **tx)
                .await;
            Ok(())
        })
    });
    let running = billing.start().await.unwrap();
    Order::sample(7).submit(&bus).await.unwrap();
    wait_for("the charge of the second attempt", async || {
        db.scalar("select count(*) from $schema.charges").await == 1
    })
    .await;
    running.shutdown().await.unwrap();
    assert_eq!(attempts.load(std::sync::atomic::Ordering::SeqCst), 2);
    assert_eq!(db.scalar("select count(*) from $schema.inbox").await, 1);
    db.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_relays_skip_each_others_rows() {
    let db = Db::new("skip").await;
    let bus = Bus::in_memory();
    let received: Arc<Mutex<HashMap<String, u32>>> = Arc::default();
    let mut consumer = bus.service("audit");
    consumer.bind(ORDER, "order.#").unwrap();
    let seen = received.clone();
    consumer.on(Order::SUBMIT, move |_: Order, ctx| {
        let seen = seen.clone();
        async move {
            let id = ctx.message_id().unwrap_or_default().to_owned();
            *seen.lock().unwrap().entry(id).or_default() += 1;
            Ok(())
        }
    });
    let running = consumer.start().await.unwrap();
    db.commit_orders(&bus, 1..=300).await;

    let relays: Vec<_> = (0..4)
        .map(|i| {
            // Two relays in order, two with pipelined confirms.
            let relay = Relay::new(&bus, db.store.clone())
                .batch_size(10)
                .in_flight(1 + 3 * (i % 2));
            tokio::spawn(async move { relay.drain().await.unwrap() })
        })
        .collect();
    let mut published = 0;
    for relay in relays {
        published += relay.await.unwrap();
    }
    // A relay stops when its claim finds nothing; rows others still held are theirs.
    assert_eq!(published, 300, "no row published twice, none left");
    assert_eq!(db.store.pending().await.unwrap(), 0);
    wait_for("300 messages", async || {
        received.lock().unwrap().len() >= 300
    })
    .await;
    running.shutdown().await.unwrap();
    let once = received.lock().unwrap().values().all(|n| *n == 1);
    assert!(once, "a duplicate arrived");
    db.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unroutable_row_stays_pending_until_a_queue_is_bound() {
    let db = Db::new("unroutable").await;
    let bus = Bus::in_memory();
    db.commit_orders(&bus, [1, 2]).await;
    let relay = Relay::new(&bus, db.store.clone());
    assert!(relay.drain().await.is_err(), "no queue is bound yet");
    assert_eq!(db.store.pending().await.unwrap(), 2);
    let (billing, _inbox) = start_billing(&bus, &db).await;
    // Held back for a second after failing the first time, then tried again.
    assert_eq!(relay.drain().await.unwrap(), 0, "held back");
    tokio::time::sleep(event_manager::outbox::hold_back_pause(1)).await;
    assert_eq!(relay.drain().await.unwrap(), 2);
    wait_for("2 charges", async || {
        db.scalar("select count(*) from $schema.charges").await == 2
    })
    .await;
    billing.shutdown().await.unwrap();
    db.drop().await;
}

/// Two callbacks of one service for one event, sharing an inbox as the docs suggest: each
/// runs once per message. They used to share the message's inbox record, so the second to
/// get there found it taken (a duplicate) and never ran; and when the first failed, the
/// retry skipped it as handled by the second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_callbacks_sharing_an_inbox_each_run_once() {
    let db = Db::new("twocb").await;
    let bus = Bus::in_memory();
    let inbox = Inbox::new(db.store.clone());
    let mut billing = inbox_billing(&bus, "inbox_billing_two");
    for name in ["charge", "audit"] {
        let insert = db.insert_charge();
        billing.on_tx(&inbox, Order::SUBMIT, move |order: Order, ctx, tx| {
            let insert = insert.clone();
            Box::pin(async move {
                sqlx::query(&insert)
                    .bind(i64::try_from(order.id)?)
                    .bind(name)
                    .execute(&mut **tx)
                    .await?;
                // The charge fails its first attempt of every even order.
                if name == "charge" && order.id.is_multiple_of(2) && ctx.attempt() == 1 {
                    return Err(HandlerError::retry("the first attempt fails"));
                }
                Ok(())
            })
        });
    }
    let running = billing.start().await.unwrap();
    for id in 1..=20 {
        Order::sample(id).submit(&bus).await.unwrap();
    }
    wait_for("40 rows", async || {
        db.scalar("select count(*) from $schema.charges").await >= 40
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    running.shutdown().await.unwrap();
    for name in ["charge", "audit"] {
        let query = format!(
            "select count(distinct order_id) * 1000 + count(*) from $schema.charges \
             where message_id = '{name}'"
        );
        assert_eq!(db.scalar(&query).await, 20 * 1000 + 20, "{name}");
    }
    db.drop().await;
}

/// Gives the first `rows` rows of the outbox a header of a form no release writes.
async fn corrupt_first_rows(db: &Db, rows: i64) {
    sqlx::query(&format!(
        r#"update {t} set properties = '{{"headers": [["odd", {{"q": 1}}]]}}'
           where id in (select id from {t} order by id limit $1)"#,
        t = db.store.outbox_table()
    ))
    .bind(rows)
    .execute(&db.pool)
    .await
    .unwrap();
}

fn is_unreadable(drained: &Result<u64, event_manager::outbox::StoreError>) -> bool {
    matches!(drained, Err(event_manager::outbox::StoreError::Corrupt { reason, .. }) if reason.contains("odd"))
}

/// A row the relay cannot read stays pending with an error, and the rows after it are
/// published: it used to stop every batch at its place, so that nothing written after it
/// was ever relayed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_that_cannot_be_read_does_not_hold_up_the_others() {
    let db = Db::new("corrupt").await;
    let bus = Bus::in_memory();
    db.commit_orders(&bus, 1..=3).await;
    corrupt_first_rows(&db, 1).await;
    let relay = Relay::new(&bus, db.store.clone()).unroutable(event_manager::Unroutable::Ignore);
    let drained = relay.drain().await;
    assert!(is_unreadable(&drained), "{drained:?}");
    assert_eq!(
        db.store.pending().await.unwrap(),
        1,
        "the other two rows went out"
    );
    db.drop().await;
}

/// More unreadable rows than a batch holds, at the head of the outbox: each claim used to
/// take only them, so that a running relay published nothing, ever. They are now left out
/// of the claims for a while.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_of_unreadable_rows_does_not_stop_the_relay() {
    let db = Db::new("corrupt_batch").await;
    let bus = Bus::in_memory();
    db.commit_orders(&bus, 1..=5).await;
    corrupt_first_rows(&db, 3).await;
    let relay = Relay::new(&bus, db.store.clone())
        .unroutable(event_manager::Unroutable::Ignore)
        .batch_size(2);
    let drained = relay.drain().await;
    assert!(is_unreadable(&drained), "{drained:?}");
    assert_eq!(
        db.store.pending().await.unwrap(),
        3,
        "the two readable rows went out"
    );
    // A running relay, on a store of its own (the same tables, nothing remembered), too.
    let store = PgStore::with_tables(
        db.pool.clone(),
        db.store.outbox_table(),
        db.store.inbox_table(),
    )
    .unwrap();
    let relay = Relay::new(&bus, store)
        .unroutable(event_manager::Unroutable::Ignore)
        .batch_size(2)
        .poll_interval(std::time::Duration::from_millis(10));
    db.commit_orders(&bus, 6..=7).await;
    let published = relay
        .run_until(tokio::time::sleep(std::time::Duration::from_secs(2)))
        .await;
    assert_eq!(published, 2);
    assert_eq!(db.store.pending().await.unwrap(), 3);
    db.drop().await;
}

/// Table names of 62 and 63 bytes: PostgreSQL cuts names to 63 bytes, so the indexes named
/// `<table>_pending` and `<table>_sent` came out as one name (or the table's), and all but
/// one were skipped by `create index if not exists`, leaving every claim a full scan.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_table_names_keep_all_their_indexes() {
    let db = Db::new("longnames").await;
    for length in [62, 63] {
        let outbox = format!("o{}", "x".repeat(length - 1));
        let inbox = format!("i{}", "x".repeat(length - 1));
        let store = PgStore::with_tables(
            db.pool.clone(),
            &format!("{}.{outbox}", db.schema),
            &format!("{}.{inbox}", db.schema),
        )
        .unwrap();
        store.create_tables().await.unwrap();
        // Twice: the second finds everything there.
        store.create_tables().await.unwrap();
        for (table, indexes) in [(&outbox, 3), (&inbox, 2)] {
            let query = format!(
                "select count(*) from pg_indexes where schemaname = '$schema' and tablename = '{table}'"
            );
            assert_eq!(db.scalar(&query).await, indexes, "{table}");
        }
    }
    db.drop().await;
}
