//! The relay: publishes pending outbox rows with confirms and marks them sent.

use std::collections::HashSet;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures_util::future::BoxFuture;

use super::{OutboxMessage, StoreError};
use crate::bus::{Bus, Unroutable};
use crate::error::PublishError;

/// How long sent rows are kept before [`Relay::purge`] deletes them: 24 hours.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(24 * 3600);

/// How long a store leaves a row it could not read ([`StoreError::Corrupt`]) out of its
/// claims before reading it again (it may have been repaired): one minute.
pub const UNREADABLE_RETRY: Duration = Duration::from_secs(60);

/// Where a [`Relay`] finds pending rows: [`PgStore`](super::PgStore) or
/// [`MemoryStore`](super::MemoryStore).
#[async_trait]
pub trait OutboxStore: Send + Sync + 'static {
    /// Claims up to `limit` pending rows that no other relay holds, publishes them through
    /// [`Publisher::publish_batch`] and marks those the broker confirmed as sent. Returns how
    /// many were published, or the error when none was. A row that could not be read
    /// ([`StoreError::Corrupt`]) should be left out of the claims for a while
    /// ([`UNREADABLE_RETRY`]), so that such rows cannot fill every batch.
    async fn relay_batch(&self, publisher: &Publisher, limit: usize) -> Result<usize, StoreError>;

    /// Deletes rows sent longer than `retention` ago; returns how many.
    async fn purge_sent(&self, retention: Duration) -> Result<u64, StoreError>;

    /// How many rows are not sent yet.
    async fn pending(&self) -> Result<u64, StoreError>;
}

/// Publishes stored rows on a bus: what a relay hands to [`OutboxStore::relay_batch`].
#[derive(Debug, Clone)]
pub struct Publisher {
    bus: Bus,
    unroutable: Unroutable,
    /// The exchanges declared through this publisher.
    declared: Arc<Mutex<HashSet<String>>>,
    /// How many publishes of a batch await their confirms at once.
    in_flight: usize,
    /// The message id of the first row found unreadable since [`Relay::drain`] last asked,
    /// and why.
    unreadable: Arc<Mutex<Option<(String, String)>>>,
}

impl Publisher {
    /// Publishes `rows`: one after the other, stopping at the first failure, or with
    /// [`Relay::in_flight`] above 1 up to that many at once. A row that cannot be read
    /// ([`StoreError::Corrupt`]) never stops a batch: it could never be published, and would
    /// hold up every row after it for ever; it stays pending, with an error in the log, and
    /// the rows after it go on (the store then leaves it out of its claims for
    /// [`UNREADABLE_RETRY`]). Returns which rows the broker confirmed, and the first error.
    pub async fn publish_batch(&self, rows: &[OutboxMessage]) -> (Vec<bool>, Option<StoreError>) {
        use futures_util::StreamExt;
        let mut confirmed = vec![false; rows.len()];
        let mut failure = None;
        if self.in_flight <= 1 {
            for (row, ok) in rows.iter().zip(&mut confirmed) {
                match self.publish(row).await {
                    Ok(()) => *ok = true,
                    Err(error @ StoreError::Corrupt { .. }) => {
                        tracing::error!(%error, "an outbox row cannot be read; it stays pending and the rows after it go on");
                        failure.get_or_insert(error);
                    }
                    Err(error) => return (confirmed, Some(failure.unwrap_or(error))),
                }
            }
            return (confirmed, failure);
        }
        // Boxed, so that the future of a relay stays `Send` (no closure in the stream type).
        let publishes: Vec<BoxFuture<'_, Result<(), StoreError>>> = rows
            .iter()
            .map(|row| Box::pin(self.publish(row)) as _)
            .collect();
        let results: Vec<_> = futures_util::stream::iter(publishes)
            .buffered(self.in_flight)
            .collect()
            .await;
        for (result, ok) in results.into_iter().zip(&mut confirmed) {
            match result {
                Ok(()) => *ok = true,
                Err(error) => {
                    failure.get_or_insert(error);
                }
            }
        }
        (confirmed, failure)
    }

    fn is_declared(&self, exchange: &str) -> bool {
        self.declared
            .lock()
            .map(|d| d.contains(exchange))
            .unwrap_or(false)
    }

    /// Publishes `row` with its stored message id and returns once the broker confirmed it.
    /// Declares its exchange first, and again once when the broker says it is missing.
    pub async fn publish(&self, row: &OutboxMessage) -> Result<(), StoreError> {
        let message = row.to_message().map_err(|reason| {
            let mut first = self.unreadable.lock().unwrap_or_else(|p| p.into_inner());
            first.get_or_insert_with(|| (row.message_id.clone(), reason.clone()));
            StoreError::Corrupt {
                message_id: row.message_id.clone(),
                reason,
            }
        })?;
        let transport = self.bus.transport();
        if !self.is_declared(&row.exchange) {
            transport
                .declare_exchange(&row.exchange, row.durable)
                .await
                .map_err(PublishError::from)?;
            if let Ok(mut declared) = self.declared.lock() {
                declared.insert(row.exchange.clone());
            }
        }
        let result = match self.bus.publish_event(message.clone()).await {
            Err(error) if crate::bus::exchange_missing(&error) => {
                transport
                    .declare_exchange(&row.exchange, row.durable)
                    .await
                    .map_err(PublishError::from)?;
                self.bus.publish_event(message).await
            }
            result => result,
        };
        match result {
            Err(PublishError::Unroutable { .. }) if self.unroutable != Unroutable::Error => {
                if self.unroutable == Unroutable::Log {
                    tracing::warn!(
                        message_id = %row.message_id,
                        routing_key = %row.routing_key,
                        "no queue is bound for this outbox row; marked sent anyway"
                    );
                }
                Ok(())
            }
            result => Ok(result?),
        }
    }
}

/// Publishes the rows of an outbox: `relay.drain()` publishes what is pending and returns,
/// `relay.run_until(shutdown)` keeps polling. Several relays, in one process or many, may
/// run on one outbox at once.
pub struct Relay<S> {
    store: Arc<S>,
    publisher: Publisher,
    batch_size: usize,
    poll_interval: Duration,
    retention: Duration,
}

impl<S: OutboxStore> Relay<S> {
    /// A relay of `store` publishing on `bus`: batches of 100 rows, polled every 100 ms,
    /// sent rows kept for [`DEFAULT_RETENTION`].
    pub fn new(bus: &Bus, store: S) -> Self {
        Self {
            store: Arc::new(store),
            publisher: Publisher {
                bus: bus.clone(),
                unroutable: Unroutable::Error,
                declared: Arc::default(),
                in_flight: 1,
                unreadable: Arc::default(),
            },
            batch_size: 100,
            poll_interval: Duration::from_millis(100),
            retention: DEFAULT_RETENTION,
        }
    }

    /// How many rows one claim takes (default 100, at least 1).
    pub fn batch_size(mut self, rows: usize) -> Self {
        self.batch_size = rows.max(1);
        self
    }

    /// How long [`Relay::run_until`] waits when nothing is pending or a batch failed
    /// (default 100 ms).
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.poll_interval = interval;
        self
    }

    /// How long sent rows are kept before [`Relay::purge`] deletes them.
    pub fn retention(mut self, retention: Duration) -> Self {
        self.retention = retention;
        self
    }

    /// How many rows of a batch are published at once, their confirms awaited together
    /// (default 1: one after the other, in the order they were written). Above 1 a batch is
    /// published much faster, but its rows may reach the broker out of order.
    pub fn in_flight(mut self, publishes: usize) -> Self {
        self.publisher.in_flight = publishes.max(1);
        self
    }

    /// What to do with a row no queue is bound to receive: [`Unroutable::Error`] (default)
    /// keeps it pending and tries again; [`Unroutable::Log`] and [`Unroutable::Ignore`] mark
    /// it sent.
    pub fn unroutable(mut self, policy: Unroutable) -> Self {
        self.publisher.unroutable = policy;
        self
    }

    /// The store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// Publishes one batch; returns how many rows were published.
    pub async fn run_once(&self) -> Result<usize, StoreError> {
        self.store
            .relay_batch(&self.publisher, self.batch_size)
            .await
    }

    /// Publishes batches until a claim finds nothing pending (rows other relays hold are not
    /// waited for); returns how many rows this relay published. A row it cannot read does
    /// not stop it: the others are published, then the first such row is the error
    /// ([`StoreError::Corrupt`]; it stays pending).
    pub async fn drain(&self) -> Result<u64, StoreError> {
        let take_unreadable = || {
            let mut first = self
                .publisher
                .unreadable
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            first
                .take()
                .map(|(message_id, reason)| StoreError::Corrupt { message_id, reason })
        };
        take_unreadable();
        let mut total = 0;
        let mut seen = HashSet::new();
        loop {
            match self.run_once().await {
                Ok(0) => return take_unreadable().map_or(Ok(total), Err),
                Ok(n) => total += n as u64,
                // The store leaves such rows out of its next claims; one that claims the
                // same row again would never get further.
                Err(StoreError::Corrupt { message_id, .. }) if seen.insert(message_id.clone()) => {}
                Err(error) => return Err(error),
            }
        }
    }

    /// Deletes the rows sent longer than the retention period ago.
    pub async fn purge(&self) -> Result<u64, StoreError> {
        self.store.purge_sent(self.retention).await
    }

    /// Publishes until `shutdown` completes, polling every [`Relay::poll_interval`] when
    /// idle, and purging sent rows once a minute. A failed batch is logged and tried again
    /// after the poll interval. Returns how many rows this relay published.
    pub async fn run_until(&self, shutdown: impl Future<Output = ()>) -> u64 {
        let mut total = 0u64;
        let mut last_purge = tokio::time::Instant::now();
        tokio::pin!(shutdown);
        loop {
            let wait = match self.run_once().await {
                Ok(n) => {
                    total += n as u64;
                    n == 0
                }
                Err(error) => {
                    tracing::warn!(%error, "outbox relay batch failed; trying again");
                    true
                }
            };
            if last_purge.elapsed() >= Duration::from_secs(60) {
                last_purge = tokio::time::Instant::now();
                if let Err(error) = self.purge().await {
                    tracing::warn!(%error, "purging sent outbox rows failed");
                }
            }
            if wait {
                tokio::select! {
                    () = &mut shutdown => return total,
                    () = tokio::time::sleep(self.poll_interval) => {}
                }
            } else if futures_util::FutureExt::now_or_never(&mut shutdown).is_some() {
                return total;
            }
        }
    }
}
