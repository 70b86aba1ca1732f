//! Publisher confirms, each paired with its own returned message.
//!
//! A `basic.return` carries no delivery tag: lapin hands each returned message to one of
//! the confirms that the next `basic.ack` (or `basic.nack`) resolves, and with `multiple`
//! set that can be any publish up to the acknowledged tag, before or after the returned one.
//! Here a publish is unroutable only when a message with its own identity (message id,
//! exchange, routing key) came back, whichever confirm carried it.
//!
//! Why no return is missed. The broker sends a message's `basic.return` before its
//! `basic.ack`, so the confirm carrying it is resolved while lapin handles that ack or an
//! earlier one. lapin resolves all the confirms of one ack (and wakes their tasks) under the
//! channel's acknowledgement lock, on its own thread. So a confirm seen resolved is decided
//! only after
//! 1. a *sync*: the channel's acknowledgement lock was taken once after it was seen, so lapin
//!    has finished resolving every confirm of that ack;
//! 2. a full sweep after the sync, which polls every publish woken before it.
//!
//! A publish is tracked from its write: its frames are written by lapin's thread before the
//! broker can acknowledge it, and the write's completion wakes the publish, so a carrier
//! whose write was not yet seen complete is swept too. A publish past its deadline is
//! answered (with a timeout) but still watched until its confirm resolves, since it may
//! carry another publish's return.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use futures_util::task::{ArcWake, AtomicWaker, waker_ref};
use lapin::message::BasicReturnMessage;
use lapin::options::BasicPublishOptions;
use lapin::{Channel, Confirmation, PublisherConfirm};
use tokio::time::Instant;

use super::convert::{short, to_amqp};
use crate::message::Message;

#[cfg(test)]
mod tests;

/// Who returned messages belong to: message id, exchange and routing key.
pub(super) type Identity = (Option<String>, String, String);

fn identity_of(message: &Message) -> Identity {
    (
        message.properties.message_id.clone(),
        message.exchange.to_string(),
        message.routing_key.to_string(),
    )
}

fn identity_of_return(returned: &BasicReturnMessage) -> Identity {
    let d = &returned.delivery;
    (
        d.properties
            .message_id()
            .as_ref()
            .map(|s| s.as_str().to_owned()),
        d.exchange.as_str().to_owned(),
        d.routing_key.as_str().to_owned(),
    )
}

/// How the broker answered one publish, with the identity of the returned message its
/// confirm carried, if any (not necessarily its own).
#[derive(Debug)]
pub(super) enum Answer<E> {
    Ack(Option<Identity>),
    Nack(Option<Identity>),
    /// The write or the confirm failed: the channel or connection broke.
    Failed(E),
}

/// How a publish ended.
#[derive(Debug)]
pub(super) enum Decision<E> {
    /// The broker took it and at least one queue got it.
    Routed,
    /// The broker took it but no queue was bound: it came back.
    Unroutable,
    /// The broker refused it (negative confirm, e.g. a full queue with `reject-publish`).
    Nacked,
    /// The write or the confirm failed: the channel or connection broke before it arrived.
    Failed(E),
}

/// A lapin confirm, answering with the identity of the return it carries.
pub(super) struct LapinConfirm(PublisherConfirm);

impl Future for LapinConfirm {
    type Output = Answer<lapin::Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0).poll(cx).map(|result| match result {
            Ok(Confirmation::Ack(returned)) => {
                Answer::Ack(returned.as_ref().map(identity_of_return))
            }
            Ok(Confirmation::Nack(returned)) => {
                Answer::Nack(returned.as_ref().map(identity_of_return))
            }
            Ok(Confirmation::NotRequested) => Answer::Ack(None),
            Err(error) => Answer::Failed(error),
        })
    }
}

/// The write of one publish on a lapin channel, resolving to its confirm.
pub(super) type LapinWrite =
    Pin<Box<dyn Future<Output = Result<LapinConfirm, lapin::Error>> + Send>>;

/// Starts writing `message` on `channel` with `mandatory` set; the write's first poll queues
/// its frames.
pub(super) fn lapin_write(channel: &Channel, message: &Message) -> LapinWrite {
    let channel = channel.clone();
    let exchange = short(&message.exchange);
    let routing_key = short(&message.routing_key);
    let properties = to_amqp(&message.properties);
    let body = message.body.clone();
    Box::pin(async move {
        let options = BasicPublishOptions {
            mandatory: true,
            immediate: false,
        };
        channel
            .basic_publish(exchange, routing_key, options, &body, properties)
            .await
            .map(LapinConfirm)
    })
}

/// Takes `channel`'s acknowledgement lock once (lapin takes it in `wait_for_confirms`),
/// so that every confirm of an ack lapin was handling is resolved when this returns; and
/// hands back the returns of confirms lapin kept after they were dropped (none are dropped
/// here, so normally none).
pub(super) fn lapin_sync(channel: &Channel) -> Vec<Identity> {
    let mut wait = std::pin::pin!(channel.wait_for_confirms());
    let mut cx = Context::from_waker(Waker::noop());
    match wait.as_mut().poll(&mut cx) {
        Poll::Ready(Ok(returned)) => returned.iter().map(identity_of_return).collect(),
        Poll::Ready(Err(_)) | Poll::Pending => Vec::new(),
    }
}

struct Woken {
    indices: Mutex<Vec<usize>>,
    task: AtomicWaker,
}

struct SlotWaker {
    index: usize,
    queued: AtomicBool,
    woken: Arc<Woken>,
}

impl ArcWake for SlotWaker {
    fn wake_by_ref(arc: &Arc<Self>) {
        if !arc.queued.swap(true, Ordering::AcqRel) {
            arc.woken
                .indices
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(arc.index);
        }
        arc.woken.task.wake();
    }
}

enum Stage<W, C> {
    Writing(W),
    Confirming(C),
    Answered,
}

struct Slot<T, W, C> {
    id: u64,
    /// What the caller keeps with the publish; `None` once it was given up (its deadline
    /// passed), while the confirm is still watched for the return it may carry.
    item: Option<T>,
    /// The identity of a publish given up: its own return, should it come, is forgotten
    /// with it (a later publish of the same message must not take it for its own).
    given_up: Option<Identity>,
    stage: Stage<W, C>,
    /// The channel it was published on.
    channel: u64,
}

/// A publish seen answered: its slot, the sweep that saw it, and the answer.
type Seen<E> = (usize, u64, Answer<E>);

/// The publishes awaiting their confirm; `T` is what the caller keeps with each, `W` a
/// publish's write (resolving to its confirm `C`), `E` why a write or confirm failed.
pub(super) struct Confirms<T, W, C, E> {
    slots: Vec<Option<Slot<T, W, C>>>,
    free: Vec<usize>,
    wakers: Vec<Arc<SlotWaker>>,
    woken: Arc<Woken>,
    undecided: Vec<Seen<E>>,
    deadlines: BinaryHeap<Reverse<(Instant, u64, usize)>>,
    returned: HashMap<Identity, u32>,
    /// Slots (given up ones too) per channel.
    per_channel: HashMap<u64, usize>,
    sweep: u64,
    next_id: u64,
    live: usize,
}

impl<T, W, C, E> Confirms<T, W, C, E>
where
    W: Future<Output = Result<C, E>> + Unpin,
    C: Future<Output = Answer<E>> + Unpin,
{
    pub(super) fn new() -> Self {
        Self {
            slots: Vec::new(),
            free: Vec::new(),
            wakers: Vec::new(),
            woken: Arc::new(Woken {
                indices: Mutex::new(Vec::new()),
                task: AtomicWaker::new(),
            }),
            undecided: Vec::new(),
            deadlines: BinaryHeap::new(),
            returned: HashMap::new(),
            per_channel: HashMap::new(),
            sweep: 0,
            next_id: 0,
            live: 0,
        }
    }

    /// How many publishes await their outcome (given up ones not counted).
    pub(super) fn len(&self) -> usize {
        self.live
    }

    /// Whether a publish on `channel` (given up ones too) is still watched.
    pub(super) fn watches(&self, channel: u64) -> bool {
        self.per_channel.contains_key(&channel)
    }

    /// Tracks a publish on `channel` from its write, to be decided by `deadline`. The write
    /// is polled once here, which queues its frames: publishes leave in the order they were
    /// inserted. A write that fails at once (a channel already closed) is handed back with
    /// its error, untracked.
    pub(super) fn insert(
        &mut self,
        item: T,
        deadline: Instant,
        mut write: W,
        channel: u64,
    ) -> Result<(), (T, E)> {
        let mut cx = Context::from_waker(Waker::noop());
        let stage = match Pin::new(&mut write).poll(&mut cx) {
            Poll::Ready(Err(error)) => return Err((item, error)),
            Poll::Ready(Ok(confirm)) => Stage::Confirming(confirm),
            Poll::Pending => Stage::Writing(write),
        };
        let index = self.free.pop().unwrap_or_else(|| {
            self.slots.push(None);
            self.wakers.push(Arc::new(SlotWaker {
                index: self.slots.len() - 1,
                queued: AtomicBool::new(false),
                woken: self.woken.clone(),
            }));
            self.slots.len() - 1
        });
        let id = self.next_id;
        self.next_id += 1;
        self.slots[index] = Some(Slot {
            id,
            item: Some(item),
            given_up: None,
            stage,
            channel,
        });
        *self.per_channel.entry(channel).or_default() += 1;
        self.deadlines.push(Reverse((deadline, id, index)));
        self.live += 1;
        // Polled again with the slot's own waker, to be woken when it is written.
        self.poll_slot(index);
        Ok(())
    }

    /// The earliest deadline of a publish still waiting.
    pub(super) fn next_deadline(&mut self) -> Option<Instant> {
        while let Some(Reverse((deadline, id, index))) = self.deadlines.peek().copied() {
            if self.is_waiting(index, id) {
                return Some(deadline);
            }
            self.deadlines.pop();
        }
        None
    }

    fn is_waiting(&self, index: usize, id: u64) -> bool {
        self.slots[index]
            .as_ref()
            .is_some_and(|s| s.id == id && s.item.is_some())
    }

    /// Gives up the publishes whose deadline is past and returns them, undecided. Their
    /// confirms are still watched for the returns they may carry.
    pub(super) fn expire(&mut self, now: Instant, identity: impl Fn(&T) -> &Message) -> Vec<T> {
        let mut expired = Vec::new();
        while let Some(Reverse((deadline, id, index))) = self.deadlines.peek().copied() {
            if deadline > now {
                break;
            }
            self.deadlines.pop();
            if self.is_waiting(index, id) {
                let slot = self.slots[index].as_mut().expect("a waiting slot");
                if let Some(item) = slot.item.take() {
                    slot.given_up = Some(identity_of(identity(&item)));
                    expired.push(item);
                }
                self.live -= 1;
            }
        }
        expired
    }

    /// Stops watching everything and returns the publishes still waiting.
    pub(super) fn take_all(&mut self) -> Vec<T> {
        let all = self
            .slots
            .drain(..)
            .flatten()
            .filter_map(|slot| slot.item)
            .collect();
        *self = Self::new();
        all
    }

    fn remove(&mut self, index: usize) -> Slot<T, W, C> {
        let slot = self.slots[index].take().expect("a live slot");
        self.free.push(index);
        if slot.item.is_some() {
            self.live -= 1;
        }
        if let Some(n) = self.per_channel.get_mut(&slot.channel) {
            *n -= 1;
            if *n == 0 {
                self.per_channel.remove(&slot.channel);
            }
        }
        slot
    }

    /// Publishes whose outcome is known, each with it; `Pending` until there is one.
    /// `sync` takes the acknowledgement lock of every channel watched and returns the
    /// returns lapin kept for dropped confirms ([`lapin_sync`]).
    pub(super) fn poll_decided(
        &mut self,
        cx: &mut Context<'_>,
        identity: impl Fn(&T) -> &Message,
        mut sync: impl FnMut() -> Vec<Identity>,
    ) -> Poll<Vec<(T, Decision<E>)>> {
        self.woken.task.register(cx.waker());
        loop {
            self.sweep_once();
            if self.undecided.is_empty() {
                let idle = self
                    .woken
                    .indices
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .is_empty();
                if idle {
                    return Poll::Pending;
                }
                continue;
            }
            // Everything seen so far was seen before this sync.
            let synced = self.sweep;
            for returned in sync() {
                *self.returned.entry(returned).or_default() += 1;
            }
            self.sweep_once();
            let decided = self.decide(synced, &identity);
            if !decided.is_empty() {
                return Poll::Ready(decided);
            }
        }
    }

    /// Polls every woken publish once, recording those answered and the returns they carry.
    fn sweep_once(&mut self) {
        let batch =
            std::mem::take(&mut *self.woken.indices.lock().unwrap_or_else(|p| p.into_inner()));
        for index in batch {
            self.wakers[index].queued.store(false, Ordering::Release);
            self.poll_slot(index);
        }
        self.sweep += 1;
    }

    /// Polls one publish's write, then its confirm, with the slot's own waker.
    fn poll_slot(&mut self, index: usize) {
        let Some(slot) = self.slots[index].as_mut() else {
            return;
        };
        let waker = waker_ref(&self.wakers[index]);
        let mut cx = Context::from_waker(&waker);
        if let Stage::Writing(write) = &mut slot.stage {
            match Pin::new(write).poll(&mut cx) {
                Poll::Pending => return,
                Poll::Ready(Ok(confirm)) => slot.stage = Stage::Confirming(confirm),
                Poll::Ready(Err(error)) => {
                    slot.stage = Stage::Answered;
                    self.undecided
                        .push((index, self.sweep, Answer::Failed(error)));
                    return;
                }
            }
        }
        let Stage::Confirming(confirm) = &mut slot.stage else {
            return;
        };
        if let Poll::Ready(answer) = Pin::new(confirm).poll(&mut cx) {
            slot.stage = Stage::Answered;
            if let Answer::Ack(Some(returned)) | Answer::Nack(Some(returned)) = &answer {
                *self.returned.entry(returned.clone()).or_default() += 1;
            }
            self.undecided.push((index, self.sweep, answer));
        }
    }

    /// Decides the publishes seen answered in a sweep before `synced`.
    fn decide(&mut self, synced: u64, identity: &impl Fn(&T) -> &Message) -> Vec<(T, Decision<E>)> {
        let (ready, waiting): (Vec<Seen<E>>, Vec<Seen<E>>) = std::mem::take(&mut self.undecided)
            .into_iter()
            .partition(|(_, seen, _)| *seen < synced);
        self.undecided = waiting;
        let mut decided = Vec::with_capacity(ready.len());
        for (index, _, answer) in ready {
            let slot = self.remove(index);
            let Some(item) = slot.item else {
                if let Some(given_up) = slot.given_up {
                    self.take_return(&given_up);
                }
                continue;
            };
            // Most often nothing came back: no identity to build.
            let came_back =
                !self.returned.is_empty() && self.take_return(&identity_of(identity(&item)));
            let decision = match answer {
                Answer::Nack(_) => Decision::Nacked,
                Answer::Ack(_) if came_back => Decision::Unroutable,
                Answer::Ack(_) => Decision::Routed,
                Answer::Failed(e) => Decision::Failed(e),
            };
            decided.push((item, decision));
        }
        decided
    }

    /// Whether a message of `identity` came back, forgetting it if so.
    fn take_return(&mut self, identity: &Identity) -> bool {
        match self.returned.get_mut(identity) {
            Some(n) if *n > 1 => {
                *n -= 1;
                true
            }
            Some(_) => {
                self.returned.remove(identity);
                true
            }
            None => false,
        }
    }
}
