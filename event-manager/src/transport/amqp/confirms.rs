//! Publisher confirms, each paired with its own returned message.
//!
//! A `basic.return` carries no delivery tag: lapin hands each returned message to whichever
//! confirm it resolves next, so with many publishes in flight an unroutable publish can be
//! confirmed without its return while a routable one gets it. Here a publish is unroutable
//! only when a message with its own identity (message id, exchange, routing key) came back.
//!
//! Why no return is missed: the broker sends a message's `basic.return` before its
//! `basic.ack`, and lapin attaches the return to a confirm resolved no later than that ack.
//! So when a confirm is seen resolved in one sweep over the woken confirms, the confirm
//! carrying its return (if any) was resolved, and woken, before; the next sweep has seen it.
//! A confirm is therefore decided one full sweep after it was seen resolved.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use futures_util::task::{ArcWake, AtomicWaker, waker_ref};
use lapin::Confirmation;
use lapin::PublisherConfirm;
use lapin::message::BasicReturnMessage;
use tokio::time::Instant;

use crate::message::Message;

/// Who returned messages belong to.
type Identity = (Option<String>, String, String);

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

/// How a confirmed publish ended.
#[derive(Debug)]
pub(super) enum Decision {
    /// The broker took it and at least one queue got it.
    Routed,
    /// The broker took it but no queue was bound: it came back.
    Unroutable,
    /// The broker refused it (negative confirm, e.g. a full queue with `reject-publish`).
    Nacked,
    /// The confirm failed: the channel or connection broke before it arrived.
    Failed(lapin::Error),
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

struct Slot<T> {
    id: u64,
    item: T,
    confirm: Option<PublisherConfirm>,
}

/// A confirm seen resolved: its slot, the sweep that saw it, and how it resolved.
type Resolved = (usize, u64, lapin::Result<Confirmation>);

/// The publishes awaiting their confirm; `T` is what the caller keeps with each.
pub(super) struct Confirms<T> {
    slots: Vec<Option<Slot<T>>>,
    free: Vec<usize>,
    wakers: Vec<Arc<SlotWaker>>,
    woken: Arc<Woken>,
    undecided: Vec<Resolved>,
    deadlines: BinaryHeap<Reverse<(Instant, u64, usize)>>,
    returned: HashMap<Identity, u32>,
    sweep: u64,
    next_id: u64,
    live: usize,
}

impl<T> Confirms<T> {
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
            sweep: 0,
            next_id: 0,
            live: 0,
        }
    }

    /// How many publishes await their confirm.
    pub(super) fn len(&self) -> usize {
        self.live
    }

    /// Tracks the confirm of a publish that must be decided by `deadline`.
    pub(super) fn insert(&mut self, item: T, deadline: Instant, confirm: PublisherConfirm) {
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
            item,
            confirm: Some(confirm),
        });
        self.deadlines.push(Reverse((deadline, id, index)));
        self.live += 1;
        // Poll it in the next sweep: it may have resolved already.
        ArcWake::wake_by_ref(&self.wakers[index]);
    }

    /// The earliest deadline of a publish still waiting.
    pub(super) fn next_deadline(&mut self) -> Option<Instant> {
        while let Some(Reverse((deadline, id, index))) = self.deadlines.peek().copied() {
            if self.slots[index].as_ref().is_some_and(|s| s.id == id) {
                return Some(deadline);
            }
            self.deadlines.pop();
        }
        None
    }

    /// Removes and returns the publishes whose deadline is past, undecided.
    pub(super) fn expire(&mut self, now: Instant) -> Vec<T> {
        let mut expired = Vec::new();
        while let Some(Reverse((deadline, id, index))) = self.deadlines.peek().copied() {
            if deadline > now {
                break;
            }
            self.deadlines.pop();
            if self.slots[index].as_ref().is_some_and(|s| s.id == id) {
                self.undecided.retain(|(i, _, _)| *i != index);
                expired.push(self.remove(index).item);
            }
        }
        expired
    }

    fn remove(&mut self, index: usize) -> Slot<T> {
        let slot = self.slots[index].take().expect("a live slot");
        self.free.push(index);
        self.live -= 1;
        slot
    }

    /// Publishes whose outcome is known, each with it; `Pending` until there is one.
    pub(super) fn poll_decided(
        &mut self,
        cx: &mut Context<'_>,
        identity: impl Fn(&T) -> &Message,
    ) -> Poll<Vec<(T, Decision)>> {
        self.woken.task.register(cx.waker());
        loop {
            self.sweep_once();
            let decided = self.decide(&identity);
            if !decided.is_empty() {
                return Poll::Ready(decided);
            }
            let idle = self
                .woken
                .indices
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .is_empty();
            if self.undecided.is_empty() && idle {
                return Poll::Pending;
            }
        }
    }

    /// Polls every woken confirm once, recording those resolved and the returns they carry.
    fn sweep_once(&mut self) {
        let batch =
            std::mem::take(&mut *self.woken.indices.lock().unwrap_or_else(|p| p.into_inner()));
        for index in batch {
            let waker = &self.wakers[index];
            waker.queued.store(false, Ordering::Release);
            let Some(slot) = self.slots[index].as_mut() else {
                continue;
            };
            let Some(confirm) = slot.confirm.as_mut() else {
                continue;
            };
            let task_waker = waker_ref(waker);
            let mut cx = Context::from_waker(&task_waker);
            if let Poll::Ready(result) = Pin::new(confirm).poll(&mut cx) {
                slot.confirm = None;
                if let Ok(Confirmation::Ack(Some(m)) | Confirmation::Nack(Some(m))) = &result {
                    *self.returned.entry(identity_of_return(m)).or_default() += 1;
                }
                self.undecided.push((index, self.sweep, result));
            }
        }
        self.sweep += 1;
    }

    /// Decides the confirms seen resolved before the last sweep.
    fn decide(&mut self, identity: &impl Fn(&T) -> &Message) -> Vec<(T, Decision)> {
        let last = self.sweep - 1;
        let (ready, waiting): (Vec<Resolved>, Vec<Resolved>) = std::mem::take(&mut self.undecided)
            .into_iter()
            .partition(|(_, seen, _)| *seen < last);
        self.undecided = waiting;
        let mut decided = Vec::with_capacity(ready.len());
        for (index, _, result) in ready {
            let slot = self.remove(index);
            let came_back = self.take_return(identity(&slot.item));
            let decision = match result {
                Ok(Confirmation::Nack(_)) => Decision::Nacked,
                Ok(_) if came_back => Decision::Unroutable,
                Ok(_) => Decision::Routed,
                Err(e) => Decision::Failed(e),
            };
            decided.push((slot.item, decision));
        }
        decided
    }

    /// Whether a message with the identity of `message` came back, forgetting it if so.
    fn take_return(&mut self, message: &Message) -> bool {
        if self.returned.is_empty() {
            return false;
        }
        let key = identity_of(message);
        match self.returned.get_mut(&key) {
            Some(n) if *n > 1 => {
                *n -= 1;
                true
            }
            Some(_) => {
                self.returned.remove(&key);
                true
            }
            None => false,
        }
    }
}
