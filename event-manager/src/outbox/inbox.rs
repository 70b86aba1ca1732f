//! The inbox: callbacks that take a transaction, run once per message.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures_util::future::BoxFuture;

use super::{StoreError, dedup_key};
use crate::contract::{Event, EventDef};
use crate::service::{Delivery, HandlerError, OnEvent, Service};

/// How long an inbox remembers a message by default: 7 days.
pub const DEFAULT_DEDUP_WINDOW: Duration = Duration::from_secs(7 * 24 * 3600);

/// Where an [`Inbox`] records the messages it handled: [`PgStore`](super::PgStore) (the
/// transaction is a `sqlx::Transaction<'static, Postgres>`) or
/// [`MemoryStore`](super::MemoryStore) (a [`MemoryTx`](super::MemoryTx)).
#[async_trait]
pub trait InboxStore: Send + Sync + 'static {
    /// The transaction a callback writes in. Dropping it rolls it back.
    type Tx: Send + 'static;

    /// Starts a transaction.
    async fn begin(&self) -> Result<Self::Tx, StoreError>;

    /// Records `key` as handled by `queue` in `tx`; `false` when it was recorded before (a
    /// duplicate). `queue` is the service's queue name, followed by `#2`, `#3` … for its
    /// second, third … [`Service::on_tx`] callback. Waits for, or fails on, another open transaction recording the same key.
    async fn mark_handled(
        &self,
        tx: &mut Self::Tx,
        queue: &str,
        key: &str,
    ) -> Result<bool, StoreError>;

    /// Commits `tx`, or fails when it did not commit (a database that rolls back instead,
    /// as PostgreSQL does when a statement failed in it): the message is then not
    /// acknowledged, and is tried again.
    async fn commit(&self, tx: Self::Tx) -> Result<(), StoreError>;

    /// Forgets the messages recorded longer than `window` ago; returns how many.
    async fn purge_inbox(&self, window: Duration) -> Result<u64, StoreError>;
}

/// A callback of [`Service::on_tx`]: the payload, the delivery and the transaction, borrowed
/// for the callback's future. Write it as a closure returning `Box::pin(async move { … })`.
pub type TxCallback<T, Tx> = Arc<
    dyn for<'t> Fn(T, Delivery, &'t mut Tx) -> BoxFuture<'t, Result<(), HandlerError>>
        + Send
        + Sync,
>;

/// Deduplicates deliveries through a store, with a dedup window. Cheap to clone; share one
/// between the callbacks of a service.
pub struct Inbox<S> {
    store: Arc<S>,
    window: Duration,
    purge_every: Duration,
    last_purge: Arc<Mutex<Option<Instant>>>,
    duplicates: Arc<AtomicU64>,
}

impl<S> Clone for Inbox<S> {
    fn clone(&self) -> Self {
        Self {
            store: self.store.clone(),
            window: self.window,
            purge_every: self.purge_every,
            last_purge: self.last_purge.clone(),
            duplicates: self.duplicates.clone(),
        }
    }
}

impl<S: InboxStore> Inbox<S> {
    /// An inbox on `store` with a dedup window of [`DEFAULT_DEDUP_WINDOW`], purged at most
    /// once an hour.
    pub fn new(store: S) -> Self {
        Self {
            store: Arc::new(store),
            window: DEFAULT_DEDUP_WINDOW,
            purge_every: Duration::from_secs(3600),
            last_purge: Arc::new(Mutex::new(None)),
            duplicates: Arc::new(AtomicU64::new(0)),
        }
    }

    /// How long a handled message is remembered (default 7 days): a duplicate arriving
    /// later runs the callback again. Make it longer than the longest redelivery you expect
    /// (retry delays included, and how long a relay may be down).
    pub fn window(mut self, window: Duration) -> Self {
        self.window = window;
        self
    }

    /// How often the inbox deletes rows older than the window, in the background while it
    /// handles messages (default hourly).
    pub fn purge_every(mut self, interval: Duration) -> Self {
        self.purge_every = interval;
        self
    }

    /// How many duplicates this inbox (and its clones) acknowledged without running a
    /// callback.
    pub fn duplicates(&self) -> u64 {
        self.duplicates.load(Ordering::Relaxed)
    }

    /// The store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// Deletes the rows older than the window now; returns how many.
    pub async fn purge(&self) -> Result<u64, StoreError> {
        self.store.purge_inbox(self.window).await
    }

    /// Starts a purge in the background when the last one is older than `purge_every`.
    fn maybe_purge(&self) {
        let due = {
            let Ok(mut last) = self.last_purge.lock() else {
                return;
            };
            let due = last.is_none_or(|at| at.elapsed() >= self.purge_every);
            if due {
                *last = Some(Instant::now());
            }
            due
        };
        if due {
            let inbox = self.clone();
            tokio::spawn(async move {
                match inbox.purge().await {
                    Ok(n) => tracing::debug!(purged = n, "inbox rows past the dedup window"),
                    Err(error) => tracing::warn!(%error, "purging the inbox failed"),
                }
            });
        }
    }

    /// Runs `callback` for `payload` unless `queue` handled the message before: the inbox
    /// mark and the callback's writes share one transaction.
    pub(crate) async fn handle<T>(
        &self,
        queue: &str,
        payload: T,
        delivery: Delivery,
        callback: &TxCallback<T, S::Tx>,
    ) -> Result<(), HandlerError> {
        self.maybe_purge();
        let key = dedup_key(
            delivery.message_id(),
            delivery.routing_key(),
            delivery.body(),
        );
        let mut tx = self.store.begin().await?;
        if !self.store.mark_handled(&mut tx, queue, &key).await? {
            tracing::debug!(%key, queue, "duplicate: handled before, acknowledged");
            self.duplicates.fetch_add(1, Ordering::Relaxed);
            metrics::counter!(
                crate::telemetry::metrics::DUPLICATES_SKIPPED,
                "event" => delivery.routing_key().to_owned(),
                "queue" => queue.to_owned()
            )
            .increment(1);
            return Ok(());
        }
        callback(payload, delivery, &mut tx).await?;
        self.store.commit(tx).await?;
        Ok(())
    }
}

impl Service {
    /// Registers `callback` for `event`, run at most once per message for this service (within
    /// the inbox's dedup window): it gets a transaction of `inbox`'s store in which the message
    /// is recorded as handled. Its writes and that record commit together after it returns
    /// `Ok`; a message recorded before is acknowledged without running it; when it fails,
    /// nothing commits and the retry runs it again.
    ///
    /// Messages are keyed by their message id, or, without one, by [`dedup_key`], and by the
    /// service's queue name, followed by `#2`, `#3` … for its second, third … `on_tx`
    /// callback: callbacks that run for the same message each run once.
    ///
    /// ```standalone_crate
    /// use event_manager::outbox::{Inbox, MemoryStore};
    /// # use event_manager::{Bus, Event, Exchange};
    /// # use schemars::JsonSchema;
    /// # use serde::{Deserialize, Serialize};
    /// # pub const ORDER: Exchange = Exchange::topic("order");
    /// # #[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, Event)]
    /// # #[event(exchange = ORDER, version = "1.0.0", events(submit))]
    /// # pub struct Order { pub id: u64 }
    /// let store = MemoryStore::new();
    /// let inbox = Inbox::new(store.clone());
    /// let bus = Bus::in_memory();
    /// let mut billing = bus.service("billing_order");
    /// billing.on_tx(&inbox, Order::SUBMIT, |order: Order, _ctx, tx| {
    ///     Box::pin(async move {
    ///         tx.on_commit(move || println!("charged order {}", order.id));
    ///         Ok(())
    ///     })
    /// });
    /// ```
    pub fn on_tx<T, S, F>(
        &mut self,
        inbox: &Inbox<S>,
        event: EventDef<T>,
        callback: F,
    ) -> OnEvent<'_, T>
    where
        T: Event,
        S: InboxStore,
        F: for<'t> Fn(T, Delivery, &'t mut S::Tx) -> BoxFuture<'t, Result<(), HandlerError>>
            + Send
            + Sync
            + 'static,
    {
        let callback: TxCallback<T, S::Tx> = Arc::new(callback);
        let inbox = inbox.clone();
        let queue = self.bus.queue_name(&self.queue);
        // Callbacks that run for the same message must not share its record: the second
        // would find it taken and never run.
        self.tx_callbacks += 1;
        let queue: Arc<str> = match self.tx_callbacks {
            1 => queue.into(),
            n => format!("{queue}#{n}").into(),
        };
        self.on(event, move |payload: T, delivery| {
            let (inbox, queue, callback) = (inbox.clone(), queue.clone(), callback.clone());
            async move { inbox.handle(&queue, payload, delivery, &callback).await }
        })
    }
}
