//! The PostgreSQL store: the outbox and inbox tables, through sqlx.

use std::collections::BTreeSet;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::{PgConnection, PgPool, Postgres, Row, Transaction};

use super::relay::{HeldBack, OutboxStore, Publisher};
use super::{InboxStore, OutboxMessage, OutboxWrite, StoreError, check_table_name};

/// The outbox table of [`PgStore::new`] and of [`Bus::outbox`](crate::Bus::outbox).
pub const DEFAULT_OUTBOX_TABLE: &str = "event_outbox";
/// The inbox table of [`PgStore::new`].
pub const DEFAULT_INBOX_TABLE: &str = "event_inbox";

/// An outbox and an inbox in PostgreSQL: implements [`OutboxStore`] for a
/// [`Relay`](super::Relay) and [`InboxStore`] for an [`Inbox`](super::Inbox). Cheap to clone.
///
/// The outbox table holds one row per event: `id bigserial`, `message_id`, `exchange`,
/// `durable`, `routing_key`, `body bytea`, `properties` (JSON text), `created_at` and
/// `sent_at` (null while pending). The inbox table holds `(queue, message_key)` as its
/// primary key and `handled_at`.
#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
    outbox_table: String,
    inbox_table: String,
    /// Outbox rows (by id) held back, left out of the claims.
    held_back: HeldBack<i64>,
    /// Events (exchange, routing key) no queue was bound for, their rows left out of the
    /// claims.
    held_events: HeldBack<(String, String)>,
}

impl PgStore {
    /// A store on `pool` with the tables [`DEFAULT_OUTBOX_TABLE`] and [`DEFAULT_INBOX_TABLE`].
    pub fn new(pool: PgPool) -> Self {
        Self {
            pool,
            outbox_table: DEFAULT_OUTBOX_TABLE.to_owned(),
            inbox_table: DEFAULT_INBOX_TABLE.to_owned(),
            held_back: HeldBack::default(),
            held_events: HeldBack::default(),
        }
    }

    /// A store on `pool` with other table names (`name` or `schema.name`).
    pub fn with_tables(pool: PgPool, outbox: &str, inbox: &str) -> Result<Self, StoreError> {
        check_table_name(outbox)?;
        check_table_name(inbox)?;
        Ok(Self {
            pool,
            outbox_table: outbox.to_owned(),
            inbox_table: inbox.to_owned(),
            held_back: HeldBack::default(),
            held_events: HeldBack::default(),
        })
    }

    /// The connection pool.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The outbox table name, to pass to [`OutboxWriter::table`](super::OutboxWriter::table).
    pub fn outbox_table(&self) -> &str {
        &self.outbox_table
    }

    /// The inbox table name.
    pub fn inbox_table(&self) -> &str {
        &self.inbox_table
    }

    /// Creates the outbox table and its index when missing. Safe to run from several
    /// processes at once (serialized by an advisory lock).
    pub async fn create_outbox_table(&self) -> Result<(), StoreError> {
        let t = &self.outbox_table;
        let (pending, sent) = (index_name(t, "pending"), index_name(t, "sent"));
        self.create(&[
            format!(
                "create table if not exists {t} (
                    id bigserial primary key,
                    message_id text not null,
                    exchange text not null,
                    durable boolean not null,
                    routing_key text not null,
                    body bytea not null,
                    properties text not null,
                    created_at timestamptz not null default now(),
                    sent_at timestamptz)"
            ),
            format!("create index if not exists {pending} on {t} (id) where sent_at is null"),
            format!("create index if not exists {sent} on {t} (sent_at)"),
        ])
        .await
    }

    /// Creates the inbox table and its index when missing, like
    /// [`PgStore::create_outbox_table`].
    pub async fn create_inbox_table(&self) -> Result<(), StoreError> {
        let t = &self.inbox_table;
        let handled = index_name(t, "handled");
        self.create(&[
            format!(
                "create table if not exists {t} (
                    queue text not null,
                    message_key text not null,
                    handled_at timestamptz not null default now(),
                    primary key (queue, message_key))"
            ),
            format!("create index if not exists {handled} on {t} (handled_at)"),
        ])
        .await
    }

    /// Creates both tables.
    pub async fn create_tables(&self) -> Result<(), StoreError> {
        self.create_outbox_table().await?;
        self.create_inbox_table().await
    }

    async fn create(&self, statements: &[String]) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("select pg_advisory_xact_lock(7311046213)")
            .execute(&mut *tx)
            .await?;
        for statement in statements {
            sqlx::query(statement).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }
}

/// Inserts `message` into `table` on `conn`.
async fn insert_row(
    conn: &mut PgConnection,
    table: &str,
    message: OutboxMessage,
) -> Result<(), StoreError> {
    check_table_name(table)?;
    sqlx::query(&format!(
        "insert into {table} (message_id, exchange, durable, routing_key, body, properties)
         values ($1, $2, $3, $4, $5, $6)"
    ))
    .bind(message.message_id)
    .bind(message.exchange)
    .bind(message.durable)
    .bind(message.routing_key)
    .bind(message.body)
    .bind(message.properties)
    .execute(conn)
    .await?;
    Ok(())
}

#[async_trait]
impl OutboxWrite for Transaction<'_, Postgres> {
    async fn write_outbox(
        &mut self,
        table: &str,
        message: OutboxMessage,
    ) -> Result<(), StoreError> {
        insert_row(self, table, message).await
    }
}

#[async_trait]
impl OutboxWrite for PgConnection {
    async fn write_outbox(
        &mut self,
        table: &str,
        message: OutboxMessage,
    ) -> Result<(), StoreError> {
        insert_row(self, table, message).await
    }
}

/// The name of the index `suffix` of `table`: `<schema>_<table>_<suffix>`. PostgreSQL cuts
/// names to 63 bytes, which would give the indexes of a long table name one name (or the
/// table's), so that `create index if not exists` skipped all but one: a longer name is
/// cut, with a hash of the whole in it.
fn index_name(table: &str, suffix: &str) -> String {
    const LONGEST: usize = 63;
    let name = format!("{}_{suffix}", table.replace('.', "_"));
    if name.len() <= LONGEST {
        return name;
    }
    let hash = super::codec::fnv1a_128([name.as_bytes()]) as u64;
    // Table names are ASCII (`check_table_name`): any byte is a boundary.
    let keep = LONGEST - suffix.len() - 18;
    format!("{}_{hash:016x}_{suffix}", &name[..keep])
}

#[async_trait]
impl OutboxStore for PgStore {
    async fn relay_batch(&self, publisher: &Publisher, limit: usize) -> Result<usize, StoreError> {
        let t = &self.outbox_table;
        let mut tx = self.pool.begin().await?;
        let (held_exchanges, held_keys): (Vec<String>, Vec<String>) =
            self.held_events.current().into_iter().unzip();
        let rows = sqlx::query(&format!(
            "select id, message_id, exchange, durable, routing_key, body, properties from {t} o
             where sent_at is null and id <> all($2)
               and not exists (select 1 from unnest($3::text[], $4::text[]) as h(x, k)
                               where h.x = o.exchange and h.k = o.routing_key)
             order by id limit $1
             for update of o skip locked"
        ))
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .bind(self.held_back.current())
        .bind(held_exchanges)
        .bind(held_keys)
        .fetch_all(&mut *tx)
        .await?;
        let mut ids = Vec::with_capacity(rows.len());
        let mut messages = Vec::with_capacity(rows.len());
        for row in &rows {
            ids.push(row.try_get::<i64, _>("id")?);
            messages.push(OutboxMessage {
                message_id: row.try_get("message_id")?,
                exchange: row.try_get("exchange")?,
                durable: row.try_get("durable")?,
                routing_key: row.try_get("routing_key")?,
                body: row.try_get("body")?,
                properties: row.try_get("properties")?,
            });
        }
        let batch = publisher.publish_batch(&messages).await;
        let mut unroutable = BTreeSet::new();
        for (i, (id, message)) in ids.iter().zip(&messages).enumerate() {
            let event = (message.exchange.clone(), message.routing_key.clone());
            if batch.unroutable[i] {
                unroutable.insert(event);
            } else if batch.held_back[i] {
                self.held_back.hold(*id);
            } else if batch.confirmed[i] {
                self.held_back.release(id);
                self.held_events.release(&event);
            }
        }
        for event in unroutable {
            self.held_events.hold(event);
        }
        let failure = batch.failure;
        let sent: Vec<i64> = ids
            .into_iter()
            .zip(batch.confirmed)
            .filter_map(|(id, ok)| ok.then_some(id))
            .collect();
        if !sent.is_empty() {
            sqlx::query(&format!(
                "update {t} set sent_at = now() where id = any($1)"
            ))
            .bind(&sent)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        match failure {
            Some(error) if sent.is_empty() => Err(error),
            Some(error) => {
                tracing::warn!(%error, "outbox relay stopped a batch early");
                Ok(sent.len())
            }
            None => Ok(sent.len()),
        }
    }

    async fn purge_sent(&self, retention: Duration) -> Result<u64, StoreError> {
        let done = sqlx::query(&format!(
            "delete from {} where sent_at < now() - make_interval(secs => $1)",
            self.outbox_table
        ))
        .bind(retention.as_secs_f64())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    async fn pending(&self) -> Result<u64, StoreError> {
        let n: i64 = sqlx::query_scalar(&format!(
            "select count(*) from {} where sent_at is null",
            self.outbox_table
        ))
        .fetch_one(&self.pool)
        .await?;
        Ok(u64::try_from(n).unwrap_or(0))
    }
}

#[async_trait]
impl InboxStore for PgStore {
    type Tx = Transaction<'static, Postgres>;

    async fn begin(&self) -> Result<Self::Tx, StoreError> {
        Ok(self.pool.begin().await?)
    }

    async fn mark_handled(
        &self,
        tx: &mut Self::Tx,
        queue: &str,
        key: &str,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(&format!(
            "insert into {} (queue, message_key) values ($1, $2) on conflict do nothing",
            self.inbox_table
        ))
        .bind(queue)
        .bind(key)
        .execute(&mut **tx)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Commits, unless a statement failed in the transaction: PostgreSQL answers `COMMIT` of
    /// such a transaction with a rollback, which sqlx reports as success, so a callback that
    /// swallowed the error of one of its statements would have its message acknowledged
    /// with nothing written. Any statement fails in it (SQLSTATE 25P02); `select 1` is run
    /// first to find out.
    async fn commit(&self, mut tx: Self::Tx) -> Result<(), StoreError> {
        sqlx::query("select 1").execute(&mut *tx).await?;
        Ok(tx.commit().await?)
    }

    async fn purge_inbox(&self, window: Duration) -> Result<u64, StoreError> {
        let done = sqlx::query(&format!(
            "delete from {} where handled_at < now() - make_interval(secs => $1)",
            self.inbox_table
        ))
        .bind(window.as_secs_f64())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }
}
