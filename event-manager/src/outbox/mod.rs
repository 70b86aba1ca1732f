//! Exactly-once effects over at-least-once delivery: a transactional **outbox** for producers
//! and an idempotent **inbox** for consumers, on PostgreSQL ([`PgStore`], through sqlx with
//! rustls) or in memory ([`MemoryStore`], for tests without a database). Feature `postgres`.
//!
//! # Outbox
//!
//! A producer writes its state change and its events in one database transaction:
//! [`Bus::outbox`] encodes the event at once (message id, headers, body) into a row of the
//! outbox table, which commits or rolls back with the producer's own writes. A [`Relay`]
//! publishes pending rows with publisher confirms and their stored message id, then marks them
//! sent in the transaction that claimed them (`FOR UPDATE SKIP LOCKED`), so several relays
//! may run at once, each publishing different rows. A relay killed at any point loses
//! nothing: a row is marked sent only after the broker confirmed it. It may publish a row
//! twice (killed between the confirm and the commit), always with the same message id, which
//! is what the inbox deduplicates on. Sent rows are deleted after [`Relay::retention`]
//! (default 24 h).
//!
//! # Inbox
//!
//! [`Service::on_tx`](crate::Service::on_tx) registers a callback that receives a database
//! transaction besides the payload and the [`Delivery`](crate::Delivery). Before the callback
//! runs, the delivery's key is inserted into the inbox table in that same transaction, keyed
//! by (queue, key): when it is there already the message is a duplicate, acknowledged without
//! running the callback. The callback's writes and the inbox mark commit together; when the
//! callback fails, both roll back and the retry runs it again.
//!
//! The key is the message id, or for a message from a producer that set none (pika and kombu
//! by default) a key derived from its routing key and body ([`dedup_key`]). Rows are kept for
//! the dedup window ([`Inbox::window`], default 7 days) and then purged: a duplicate arriving
//! later than that runs the callback again.
//!
//! # Example
//!
//! On the in-memory store (the same calls on [`PgStore`], whose transaction is a
//! `sqlx::Transaction<'static, Postgres>`):
//!
//! ```standalone_crate
//! use std::sync::{Arc, Mutex};
//! use event_manager::outbox::{Inbox, MemoryStore, Relay};
//! use event_manager::{Bus, Event, Exchange};
//! use schemars::JsonSchema;
//! use serde::{Deserialize, Serialize};
//!
//! pub const ORDER: Exchange = Exchange::topic("order");
//!
//! #[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, Event)]
//! #[event(exchange = ORDER, version = "1.0.0", events(submit))]
//! pub struct Order { pub id: u64 }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let bus = Bus::in_memory();
//!
//! // Billing: charges each order once, however often it is delivered.
//! let charges = Arc::new(Mutex::new(Vec::new()));
//! let billing_db = MemoryStore::new();
//! let mut billing = bus.service("billing_order");
//! let charged = charges.clone();
//! billing.on_tx(&Inbox::new(billing_db.clone()), Order::SUBMIT, move |order: Order, _ctx, tx| {
//!     let charged = charged.clone();
//!     Box::pin(async move {
//!         // With PgStore: sqlx::query("insert …").execute(&mut **tx).await?;
//!         tx.on_commit(move || charged.lock().unwrap().push(order.id));
//!         Ok(())
//!     })
//! });
//! let running = billing.start().await?;
//!
//! // Orders: the state change and the event commit together.
//! let orders_db = MemoryStore::new();
//! let mut tx = orders_db.begin();
//! bus.outbox(&mut tx).publish(Order::SUBMIT, &Order { id: 7 }).await?;
//! tx.commit();
//!
//! let relay = Relay::new(&bus, orders_db.clone());
//! assert_eq!(relay.drain().await?, 1);
//! orders_db.resend_all(); // as if the relay died before marking the row sent
//! assert_eq!(relay.drain().await?, 1); // published twice, same message id
//! # for _ in 0..100 {
//! #     if billing_db.inbox_len() == 1 { break; }
//! #     tokio::time::sleep(std::time::Duration::from_millis(10)).await;
//! # }
//! # tokio::time::sleep(std::time::Duration::from_millis(50)).await;
//! running.shutdown().await?;
//! assert_eq!(*charges.lock().unwrap(), vec![7]); // charged once
//! # Ok(())
//! # }
//! ```
//!
//! # Trade-offs
//!
//! * A relay publishes the rows of a batch one after the other, in the order they were
//!   written (rows of concurrent relays interleave), awaiting each confirm; with
//!   [`Relay::in_flight`] it publishes many at once, much faster, but out of order.
//! * A row the broker refuses as unroutable (no queue bound) stays pending and is retried,
//!   unless the bus or the relay is told otherwise ([`Bus::with_unroutable`](crate::Bus::with_unroutable),
//!   [`Relay::unroutable`]). Such a row, like one that cannot be read or whose names or
//!   headers the broker refuses, is held back ([`HOLD_BACK`]): the rows after it go on, so it
//!   is published out of order once it goes through.
//! * The inbox transaction is held open while the callback runs: keep callbacks short.

mod codec;
mod inbox;
mod memory;
mod postgres;
mod relay;

use std::borrow::Cow;

use async_trait::async_trait;
use tracing::Instrument;

pub use codec::{DERIVED_KEY_PREFIX, OutboxMessage, dedup_key};
pub use inbox::{DEFAULT_DEDUP_WINDOW, Inbox, InboxStore, TxCallback};
pub use memory::{MemoryStore, MemoryTx};
pub use postgres::{DEFAULT_INBOX_TABLE, DEFAULT_OUTBOX_TABLE, PgStore};
pub use relay::{
    Batch, DEFAULT_RETENTION, HOLD_BACK, OutboxStore, Publisher, Relay, hold_back_pause,
};
/// The sqlx this module is built with, for callers to use the same version.
pub use sqlx;

use crate::bus::{Bus, PublishOptions};
use crate::contract::{Event, EventDef};
use crate::envelope::{self, Origin};
use crate::error::PublishError;
use crate::telemetry::trace;

/// What can go wrong in an outbox or an inbox.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The database refused or failed.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// Encoding or publishing an event failed.
    #[error(transparent)]
    Publish(#[from] PublishError),
    /// A table name that is not an SQL identifier (`name` or `schema.name`).
    #[error("invalid table name `{0}`: letters, digits and `_`, optionally `schema.`")]
    InvalidTableName(String),
    /// A stored row cannot be turned back into a message.
    #[error("outbox row {message_id} cannot be read: {reason}")]
    Corrupt {
        /// The message id of the row.
        message_id: String,
        /// Why.
        reason: String,
    },
    /// Another transaction is handling the same message right now (in-memory store): retry.
    #[error("message {key} is being handled by another transaction")]
    InFlight {
        /// The deduplication key.
        key: String,
    },
}

/// A transaction an outbox row can be written in: a PostgreSQL transaction or connection,
/// or a [`MemoryTx`].
#[async_trait]
pub trait OutboxWrite: Send {
    /// Inserts `message` into the outbox table `table` (the in-memory store has one outbox
    /// and ignores the name).
    async fn write_outbox(&mut self, table: &str, message: OutboxMessage)
    -> Result<(), StoreError>;
}

/// Writes events into the outbox inside a transaction: returned by [`Bus::outbox`].
pub struct OutboxWriter<'a, W: ?Sized> {
    bus: &'a Bus,
    tx: &'a mut W,
    table: Cow<'static, str>,
}

impl Bus {
    /// Writes events into the outbox table (default [`DEFAULT_OUTBOX_TABLE`]) in the
    /// transaction `tx`, instead of publishing them: they are published by a [`Relay`] once
    /// `tx` committed, and never when it rolls back.
    ///
    /// ```rust,ignore
    /// let mut tx = pool.begin().await?;
    /// sqlx::query("insert into orders (id) values ($1)").bind(7_i64).execute(&mut *tx).await?;
    /// bus.outbox(&mut tx).publish(Order::SUBMIT, &Order { id: 7 }).await?;
    /// tx.commit().await?;
    /// ```
    pub fn outbox<'a, W: OutboxWrite + ?Sized>(&'a self, tx: &'a mut W) -> OutboxWriter<'a, W> {
        OutboxWriter {
            bus: self,
            tx,
            table: Cow::Borrowed(DEFAULT_OUTBOX_TABLE),
        }
    }
}

impl<W: OutboxWrite + ?Sized> OutboxWriter<'_, W> {
    /// Writes into the outbox table `table` instead of [`DEFAULT_OUTBOX_TABLE`] (the one of
    /// [`PgStore::outbox_table`]).
    pub fn table(mut self, table: impl Into<Cow<'static, str>>) -> Self {
        self.table = table.into();
        self
    }

    /// Writes `payload` as `event`; returns the message id it will be published with.
    pub async fn publish<T: Event>(
        &mut self,
        event: EventDef<T>,
        payload: &T,
    ) -> Result<String, StoreError> {
        self.publish_with(event, payload, &PublishOptions::default())
            .await
    }

    /// [`OutboxWriter::publish`] with a correlation id, a chosen message id or a trace
    /// parent ([`PublishOptions::unroutable`] is the relay's business: [`Relay::unroutable`]).
    pub async fn publish_with<T: Event>(
        &mut self,
        event: EventDef<T>,
        payload: &T,
        options: &PublishOptions,
    ) -> Result<String, StoreError> {
        let contract = event.contract();
        let exchange = self.bus.exchange_name(contract.exchange());
        let span = trace::producer_span(
            trace::Produce::Create,
            trace::Destination {
                namespace: None,
                name: &exchange,
            },
            contract,
        );
        // The trace context is stored with the row: the relay publishes it unchanged, and the
        // consumers' process spans are children of this span.
        let context = match options.traceparent {
            Some(_) => trace::TraceHeaders::default(),
            None => trace::TraceHeaders::of(&span),
        };
        let origin = Origin {
            message_id: options.message_id.as_deref(),
            correlation_id: options.correlation_id.as_deref(),
            traceparent: options.traceparent.as_deref().or(context.traceparent()),
            tracestate: context.tracestate(),
            ..self.bus.origin()
        };
        let message = envelope::encode_with(contract, payload, &origin)?;
        let row = OutboxMessage::from_message(&message, exchange, contract.exchange().is_durable());
        let message_id = row.message_id.clone();
        trace::record_message_id(&span, Some(&message_id));
        self.tx
            .write_outbox(&self.table, row)
            .instrument(span)
            .await?;
        Ok(message_id)
    }
}

/// Checks that `name` can be put into SQL as a table name: `name` or `schema.name`, each an
/// identifier of letters, digits and `_` not starting with a digit, at most 63 bytes.
pub(crate) fn check_table_name(name: &str) -> Result<(), StoreError> {
    let ok = !name.is_empty()
        && name.split('.').count() <= 2
        && name.split('.').all(|part| {
            !part.is_empty()
                && part.len() <= 63
                && !part.starts_with(|c: char| c.is_ascii_digit())
                && part.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        });
    if ok {
        Ok(())
    } else {
        Err(StoreError::InvalidTableName(name.to_owned()))
    }
}

#[cfg(test)]
mod tests;
