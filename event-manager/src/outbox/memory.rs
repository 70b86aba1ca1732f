//! The in-memory store: the same outbox and inbox semantics, without a database, for tests.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use async_trait::async_trait;

use super::relay::{HeldBack, OutboxStore, Publisher, hold_back_pause};
use super::{InboxStore, OutboxMessage, OutboxWrite, StoreError};

type Effect = Box<dyn FnOnce() + Send>;

/// An outbox and an inbox in memory, for tests of producers and services without a database.
/// Implements [`OutboxStore`] and [`InboxStore`] like [`PgStore`](super::PgStore); its
/// transaction is a [`MemoryTx`]. Clones share the store.
#[derive(Clone, Default)]
pub struct MemoryStore {
    state: Arc<Mutex<State>>,
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.lock();
        f.debug_struct("MemoryStore")
            .field("outbox", &state.outbox.len())
            .field("inbox", &state.inbox.len())
            .finish()
    }
}

#[derive(Default)]
struct State {
    outbox: Vec<Row>,
    inbox: HashMap<(String, String), Instant>,
    /// Inbox keys recorded by open transactions.
    in_flight: HashSet<(String, String)>,
    /// Events (exchange, routing key) no queue was bound for, their rows left out of the
    /// claims.
    held_events: HeldBack<(String, String)>,
}

struct Row {
    message: OutboxMessage,
    claimed: bool,
    sent: Option<Instant>,
    /// Held back: left out of the claims until then.
    held_until: Option<Instant>,
    /// How many times in a row it was held back.
    held_times: u32,
}

/// A transaction on a [`MemoryStore`]: outbox rows, inbox records and effects
/// ([`MemoryTx::on_commit`]) that take effect together on [`MemoryTx::commit`], and are
/// discarded when it is dropped.
pub struct MemoryTx {
    store: MemoryStore,
    outbox: Vec<OutboxMessage>,
    inbox: Vec<(String, String)>,
    effects: Vec<Effect>,
}

impl std::fmt::Debug for MemoryTx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryTx")
            .field("outbox", &self.outbox.len())
            .field("inbox", &self.inbox)
            .field("effects", &self.effects.len())
            .finish()
    }
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Starts a transaction.
    pub fn begin(&self) -> MemoryTx {
        MemoryTx {
            store: self.clone(),
            outbox: Vec::new(),
            inbox: Vec::new(),
            effects: Vec::new(),
        }
    }

    /// Every outbox row, in order, with whether it was sent.
    pub fn outbox_rows(&self) -> Vec<(OutboxMessage, bool)> {
        let state = self.lock();
        state
            .outbox
            .iter()
            .map(|r| (r.message.clone(), r.sent.is_some()))
            .collect()
    }

    /// Marks every outbox row pending again, as if a relay had died after publishing them
    /// (to test consumers against duplicates).
    pub fn resend_all(&self) {
        for row in &mut self.lock().outbox {
            row.sent = None;
        }
    }

    /// How many messages the inbox remembers.
    pub fn inbox_len(&self) -> usize {
        self.lock().inbox.len()
    }

    /// Edits the first `rows` outbox rows, as by hand.
    #[cfg(test)]
    pub(super) fn edit_rows(&self, rows: usize, edit: impl Fn(&mut OutboxMessage)) {
        for row in self.lock().outbox.iter_mut().take(rows) {
            edit(&mut row.message);
        }
    }
}

impl MemoryTx {
    /// Runs `effect` when the transaction commits, never when it is dropped: the in-memory
    /// stand-in for the writes of a database transaction.
    pub fn on_commit(&mut self, effect: impl FnOnce() + Send + 'static) {
        self.effects.push(Box::new(effect));
    }

    /// Commits: the outbox rows become pending, the inbox records are kept, the effects run.
    pub fn commit(mut self) {
        let effects = std::mem::take(&mut self.effects);
        {
            let mut state = self.store.lock();
            for message in self.outbox.drain(..) {
                state.outbox.push(Row {
                    message,
                    claimed: false,
                    sent: None,
                    held_until: None,
                    held_times: 0,
                });
            }
            let now = Instant::now();
            for key in self.inbox.drain(..) {
                state.in_flight.remove(&key);
                state.inbox.insert(key, now);
            }
        }
        for effect in effects {
            effect();
        }
    }
}

impl Drop for MemoryTx {
    fn drop(&mut self) {
        if !self.inbox.is_empty() {
            let mut state = self.store.lock();
            for key in &self.inbox {
                state.in_flight.remove(key);
            }
        }
    }
}

#[async_trait]
impl OutboxWrite for MemoryTx {
    async fn write_outbox(
        &mut self,
        _table: &str,
        message: OutboxMessage,
    ) -> Result<(), StoreError> {
        self.outbox.push(message);
        Ok(())
    }
}

impl MemoryStore {
    /// Claims up to `limit` pending rows no relay holds: their indexes and messages.
    fn claim(&self, limit: usize) -> Vec<(usize, OutboxMessage)> {
        let mut state = self.lock();
        let mut claimed = Vec::new();
        let now = Instant::now();
        let held_events = state.held_events.current();
        for (i, row) in state.outbox.iter_mut().enumerate() {
            if claimed.len() == limit {
                break;
            }
            let held = row.held_until.is_some_and(|until| until > now)
                || (!held_events.is_empty()
                    && held_events.iter().any(|(exchange, key)| {
                        *exchange == row.message.exchange && *key == row.message.routing_key
                    }));
            if row.sent.is_none() && !row.claimed && !held {
                row.claimed = true;
                claimed.push((i, row.message.clone()));
            }
        }
        claimed
    }
}

#[async_trait]
impl OutboxStore for MemoryStore {
    async fn relay_batch(&self, publisher: &Publisher, limit: usize) -> Result<usize, StoreError> {
        let claimed = self.claim(limit);
        let messages: Vec<OutboxMessage> = claimed.iter().map(|(_, m)| m.clone()).collect();
        let batch = publisher.publish_batch(&messages).await;
        let sent = batch.confirmed.iter().filter(|ok| **ok).count();
        let now = Instant::now();
        let mut state = self.lock();
        let mut unroutable = std::collections::BTreeSet::new();
        for (j, (i, message)) in claimed.iter().enumerate() {
            let event = (message.exchange.clone(), message.routing_key.clone());
            let row = &mut state.outbox[*i];
            row.claimed = false;
            if batch.confirmed[j] {
                row.sent = Some(now);
                state.held_events.release(&event);
            } else if batch.unroutable[j] {
                unroutable.insert(event);
            } else if batch.held_back[j] {
                row.held_times = row.held_times.saturating_add(1);
                row.held_until = Some(now + hold_back_pause(row.held_times));
            }
        }
        for event in unroutable {
            state.held_events.hold(event);
        }
        match batch.failure {
            Some(error) if sent == 0 => Err(error),
            _ => Ok(sent),
        }
    }

    async fn purge_sent(&self, retention: Duration) -> Result<u64, StoreError> {
        let mut state = self.lock();
        if state.outbox.iter().any(|r| r.claimed) {
            return Ok(0); // indexes of claimed rows must not move
        }
        let before = state.outbox.len();
        state
            .outbox
            .retain(|r| r.sent.is_none_or(|at| at.elapsed() < retention));
        Ok((before - state.outbox.len()) as u64)
    }

    async fn pending(&self) -> Result<u64, StoreError> {
        Ok(self
            .lock()
            .outbox
            .iter()
            .filter(|r| r.sent.is_none())
            .count() as u64)
    }
}

#[async_trait]
impl InboxStore for MemoryStore {
    type Tx = MemoryTx;

    async fn begin(&self) -> Result<MemoryTx, StoreError> {
        Ok(MemoryStore::begin(self))
    }

    async fn mark_handled(
        &self,
        tx: &mut MemoryTx,
        queue: &str,
        key: &str,
    ) -> Result<bool, StoreError> {
        let id = (queue.to_owned(), key.to_owned());
        let mut state = self.lock();
        if state.inbox.contains_key(&id) || tx.inbox.contains(&id) {
            return Ok(false);
        }
        if !state.in_flight.insert(id.clone()) {
            return Err(StoreError::InFlight {
                key: key.to_owned(),
            });
        }
        tx.inbox.push(id);
        Ok(true)
    }

    async fn commit(&self, tx: MemoryTx) -> Result<(), StoreError> {
        tx.commit();
        Ok(())
    }

    async fn purge_inbox(&self, window: Duration) -> Result<u64, StoreError> {
        let mut state = self.lock();
        let before = state.inbox.len();
        state.inbox.retain(|_, at| at.elapsed() < window);
        Ok((before - state.inbox.len()) as u64)
    }
}
