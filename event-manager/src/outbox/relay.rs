//! The relay: publishes pending outbox rows with confirms and marks them sent.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures_util::future::BoxFuture;

use super::{OutboxMessage, StoreError};
use crate::bus::{Bus, Unroutable};
use crate::error::PublishError;

/// How long sent rows are kept before [`Relay::purge`] deletes them: 24 hours.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(24 * 3600);

/// The longest a store leaves a row that failed on its own out of its claims before trying
/// it again: one minute. Such a row cannot be read ([`StoreError::Corrupt`]), no queue is
/// bound for it ([`PublishError::Unroutable`] under [`Unroutable::Error`]), or the broker
/// refuses its exchange, names or headers; it stays pending, and the rows after it go on.
/// It is held back for 1 s the first time, then twice as long each time it fails again
/// ([`hold_back_pause`]), up to this.
pub const HOLD_BACK: Duration = Duration::from_secs(60);

/// How long a row is held back after failing on its own `times` times in a row (at least
/// once): 1 s, 2 s, 4 s … up to [`HOLD_BACK`].
pub fn hold_back_pause(times: u32) -> Duration {
    Duration::from_secs(1)
        .saturating_mul(1 << times.clamp(1, 7).saturating_sub(1))
        .min(HOLD_BACK)
}

/// What a store holds back (rows by id, events by exchange and routing key), each left out
/// of its claims until an instant, for longer each time it is held back again.
#[derive(Debug)]
pub(crate) struct HeldBack<K>(Arc<Mutex<HashMap<K, (Instant, u32)>>>);

impl<K> Clone for HeldBack<K> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<K> Default for HeldBack<K> {
    fn default() -> Self {
        Self(Arc::default())
    }
}

impl<K: Clone + Eq + Hash> HeldBack<K> {
    /// What to leave out of a claim now.
    pub(crate) fn current(&self) -> Vec<K> {
        let now = Instant::now();
        let mut held = self.0.lock().unwrap_or_else(|p| p.into_inner());
        // Not held back again for a long while: sent, or repaired.
        held.retain(|_, (until, _)| *until + HOLD_BACK > now);
        held.iter()
            .filter(|(_, (until, _))| *until > now)
            .map(|(key, _)| key.clone())
            .collect()
    }

    /// Holds `key` back, for longer the more often it was ([`hold_back_pause`]).
    pub(crate) fn hold(&self, key: K) {
        let now = Instant::now();
        let mut held = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let (until, times) = held.entry(key).or_insert((now, 0));
        *times = times.saturating_add(1);
        *until = now + hold_back_pause(*times);
    }

    /// Forgets `key`: it went through.
    pub(crate) fn release(&self, key: &K) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).remove(key);
    }
}

/// Where a [`Relay`] finds pending rows: [`PgStore`](super::PgStore) or
/// [`MemoryStore`](super::MemoryStore).
#[async_trait]
pub trait OutboxStore: Send + Sync + 'static {
    /// Claims up to `limit` pending rows that no other relay holds, publishes them through
    /// [`Publisher::publish_batch`] and marks those the broker confirmed as sent. Returns how
    /// many were published, or the error that stopped the batch when none was. The rows
    /// [`Batch::held_back`] names should be left out of the claims for a while
    /// ([`hold_back_pause`]), so that such rows cannot fill every batch; for those
    /// [`Batch::unroutable`] names, every row of the same exchange and routing key.
    async fn relay_batch(&self, publisher: &Publisher, limit: usize) -> Result<usize, StoreError>;

    /// Deletes rows sent longer than `retention` ago; returns how many.
    async fn purge_sent(&self, retention: Duration) -> Result<u64, StoreError>;

    /// How many rows are not sent yet.
    async fn pending(&self) -> Result<u64, StoreError>;
}

/// What became of the rows of a batch ([`Publisher::publish_batch`]), row by row.
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct Batch {
    /// The broker confirmed the row: mark it sent.
    pub confirmed: Vec<bool>,
    /// The row failed on its own (see [`HOLD_BACK`]): it stays pending; leave it out of the
    /// claims for a while ([`hold_back_pause`]).
    pub held_back: Vec<bool>,
    /// The row was held back because no queue is bound for its event: leave out every row
    /// of its exchange and routing key. After the first such row of a batch, the others of
    /// the same event are not published one after the other (they are held back as well).
    pub unroutable: Vec<bool>,
    /// The error that stopped the batch (a lost connection, a timeout, a negative confirm):
    /// the rows after it were not tried, or failed the same way.
    pub failure: Option<StoreError>,
}

/// Whether `error` concerns its row alone, not the connection or the broker as a whole.
fn fails_alone(error: &StoreError) -> bool {
    use crate::error::TopologyError as T;
    match error {
        StoreError::Corrupt { .. } => true,
        StoreError::Publish(error) => matches!(
            error,
            PublishError::Unroutable { .. }
                | PublishError::HeadersTooLarge { .. }
                | PublishError::TooLong { .. }
                | PublishError::DuplicateHeader { .. }
                | PublishError::InvalidExpiration { .. }
                | PublishError::Encode { .. }
                | PublishError::Topology(
                    T::Mismatch { .. }
                        | T::NotFound { .. }
                        | T::NameTooLong { .. }
                        | T::Refused { .. }
                )
        ),
        _ => false,
    }
}

fn is_unroutable(error: &StoreError) -> bool {
    matches!(error, StoreError::Publish(PublishError::Unroutable { .. }))
}

/// The rows held back since a relay last asked.
#[derive(Debug, Default)]
struct Held {
    /// The error of the first.
    first: Option<StoreError>,
    /// Their message ids.
    ids: HashSet<String>,
    /// Whether one was held back that was not before.
    fresh: bool,
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
    held: Arc<Mutex<Held>>,
}

impl Publisher {
    /// Publishes `rows`: one after the other, stopping at the first failure of the
    /// connection or the broker, or with [`Relay::in_flight`] above 1 up to that many at
    /// once. A row that fails on its own ([`HOLD_BACK`]) never stops a batch: it would hold
    /// up every row after it for ever; it stays pending, with the error in the log, and the
    /// rows after it go on. Returns what became of each row.
    pub async fn publish_batch(&self, rows: &[OutboxMessage]) -> Batch {
        use futures_util::StreamExt;
        let mut batch = Batch {
            confirmed: vec![false; rows.len()],
            held_back: vec![false; rows.len()],
            unroutable: vec![false; rows.len()],
            failure: None,
        };
        if self.in_flight <= 1 {
            let mut unroutable = HashSet::new();
            for (i, row) in rows.iter().enumerate() {
                let event = (row.exchange.as_str(), row.routing_key.as_str());
                if unroutable.contains(&event) {
                    batch.held_back[i] = true;
                    batch.unroutable[i] = true;
                    continue;
                }
                match self.publish(row).await {
                    Ok(()) => batch.confirmed[i] = true,
                    Err(error) if fails_alone(&error) => {
                        batch.held_back[i] = true;
                        if is_unroutable(&error) {
                            batch.unroutable[i] = true;
                            unroutable.insert(event);
                        }
                        self.hold_back(row, error);
                    }
                    Err(error) => {
                        batch.failure = Some(error);
                        return batch;
                    }
                }
            }
            return batch;
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
        for (i, (result, row)) in results.into_iter().zip(rows).enumerate() {
            match result {
                Ok(()) => batch.confirmed[i] = true,
                Err(error) if fails_alone(&error) => {
                    batch.held_back[i] = true;
                    batch.unroutable[i] = is_unroutable(&error);
                    self.hold_back(row, error);
                }
                Err(error) => {
                    batch.failure.get_or_insert(error);
                }
            }
        }
        batch
    }

    /// Logs why `row` is held back and remembers it.
    fn hold_back(&self, row: &OutboxMessage, error: StoreError) {
        if is_unroutable(&error) {
            tracing::warn!(%error, message_id = %row.message_id, "no queue is bound for this outbox row; it stays pending and is tried again later");
        } else {
            tracing::error!(%error, message_id = %row.message_id, "this outbox row cannot be published; it stays pending and the rows after it go on");
        }
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        if held.ids.insert(row.message_id.clone()) {
            held.fresh = true;
        }
        held.first.get_or_insert(error);
    }

    /// Forgets the rows held back, and returns the error of the first.
    fn take_held(&self) -> Option<StoreError> {
        std::mem::take(&mut *self.held.lock().unwrap_or_else(|p| p.into_inner())).first
    }

    /// Whether a row was held back for the first time since the last call.
    fn held_fresh(&self) -> bool {
        std::mem::take(&mut self.held.lock().unwrap_or_else(|p| p.into_inner()).fresh)
    }

    fn is_declared(&self, exchange: &str) -> bool {
        self.declared
            .lock()
            .map(|d| d.contains(exchange))
            .unwrap_or(false)
    }

    /// Publishes `row` with its stored message id and returns once the broker confirmed it.
    /// Declares its exchange first, and again once when the broker says it is missing. A
    /// row no queue is bound for follows the bus's policy for its event
    /// ([`Bus::with_unroutable`]), else the relay's ([`Relay::unroutable`]).
    pub async fn publish(&self, row: &OutboxMessage) -> Result<(), StoreError> {
        let message = row.to_message().map_err(|reason| StoreError::Corrupt {
            message_id: row.message_id.clone(),
            reason,
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
        let routed = self
            .bus
            .unroutable_outcome(&row.routing_key, self.unroutable, result)?;
        if !routed {
            tracing::debug!(message_id = %row.message_id, "outbox row marked sent though no queue is bound for it");
        }
        Ok(())
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
                held: Arc::default(),
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
    /// waited for); returns how many rows this relay published. Rows that fail on their own
    /// ([`HOLD_BACK`]) do not stop it: the others are published, then the error of the first
    /// such row is returned (they stay pending).
    pub async fn drain(&self) -> Result<u64, StoreError> {
        self.publisher.take_held();
        let mut total = 0;
        loop {
            let n = self.run_once().await?;
            total += n as u64;
            // A batch of rows all held back for the first time: the store leaves them out
            // of its next claims, so go on (a store that claims them again gets no further).
            if n == 0 && !self.publisher.held_fresh() {
                return self.publisher.take_held().map_or(Ok(total), Err);
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
            // Only `drain` reports them; the log has each.
            self.publisher.take_held();
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
