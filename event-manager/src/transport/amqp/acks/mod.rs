//! The acknowledgement path of one consumer channel: coalesced, ordered, and reset when the
//! channel recovers.
//!
//! Acknowledging each delivery on its own costs the broker (and the client) a frame per
//! message. AMQP's `basic.ack` with `multiple` settles every outstanding delivery up to a
//! tag in one frame, but it is only correct when every delivery it covers was handled, and
//! only safe when frames leave in the order they were decided: a `multiple` that overtakes a
//! single ack of a tag it covers makes the broker close the channel (`PRECONDITION_FAILED -
//! unknown delivery tag`). lapin sends each `Acker` call from a task of its own, so that
//! order is not kept by lapin. Here it is a property of the design:
//!
//! * Each consumer channel has one [`AckPath`]. Settling a delivery only records it in the
//!   path's [`Ledger`] (under a mutex); frames are decided by the ledger and written by
//!   whoever holds that mutex, one after the other, each handed to lapin's frame queue before
//!   the next is decided ([`Channel::basic_ack`] queues its frame when first polled). There
//!   is no other sender of acks or rejects on the channel.
//! * The ledger knows every tag delivered on the channel, in order, and what became of it.
//!   A flush acknowledges the longest run of finished deliveries at the front with one
//!   `basic.ack multiple` at its highest acknowledged tag. A reject in that run splits it:
//!   what comes before is acknowledged with `multiple`, then the reject goes alone. A
//!   delivery still being handled stops the run: nothing after it is covered.
//! * A flush happens when a batch of deliveries finished (a quarter of the prefetch, at most
//!   100), and otherwise within [`FLUSH_INTERVAL`] of the first unsent settlement, from a
//!   small task per channel: a lone delivery is never left waiting.
//! * A delivery that is held for a long time (a slow callback, a dead letter that cannot be
//!   moved) would hold back every acknowledgement behind it, and with them the prefetch
//!   window. Once the same delivery has blocked the run for [`STRAGGLER_AFTER`], what
//!   finished behind it is settled one by one (`multiple = false`), which is correct in any
//!   order; the run resumes with `multiple` once it moves.
//! * Delivery tags restart when lapin recovers the channel after a lost connection, and the
//!   broker has put every unacknowledged delivery of the old connection back in its queue.
//!   lapin poisons the ackers of the old incarnation's deliveries; the path keeps one of them
//!   as a probe, and once it is poisoned starts a new generation: the old tags are forgotten
//!   (never sent on the new incarnation, where they would name other messages), and settling
//!   one of them is an error saying that the broker delivers it again.
//!
//! Settling returns once the settlement is recorded on this ordered path; the frame leaves
//! at the next flush, within a few milliseconds. Delivery is at-least-once: a settlement
//! that never leaves (the process dies, the connection is lost first) only means the broker
//! delivers the message again, never that it is lost. Dropping the path (the subscription
//! and every delivery of it) queues every recorded settlement on the channel before the drop
//! returns, on the dropping thread, then closes the channel and waits for the broker's
//! `close-ok` in a task; closing the transport does the same for the paths still open, and
//! waits for those closings before it closes the connection (see [`closing`]): a settlement
//! queued only just before `connection.close` does not always count.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use futures_util::FutureExt;
use lapin::Channel;
use lapin::options::{BasicAckOptions, BasicNackOptions, BasicRejectOptions};
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::error::ConsumeError;

mod closing;

pub(super) use closing::Paths;

/// The longest a settlement waits before its frame is sent (unless a held delivery before it
/// keeps it back, see [`STRAGGLER_AFTER`]).
pub(super) const FLUSH_INTERVAL: Duration = Duration::from_millis(2);

/// How long one unfinished delivery may hold back the acknowledgement of those delivered
/// after it before they are settled one by one.
pub(super) const STRAGGLER_AFTER: Duration = Duration::from_millis(20);

/// The most deliveries acknowledged by one `multiple` frame before a flush is forced.
const MAX_BATCH: usize = 100;

/// What became of a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Outcome {
    Ack,
    Reject {
        requeue: bool,
    },
    /// Put back unprocessed (`basic.nack` with requeue): unlike `basic.reject`, it does not
    /// count as a failed delivery against a quorum queue's delivery limit (RabbitMQ 4.3).
    HandBack,
}

/// One frame to send, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Frame {
    Ack { tag: u64, multiple: bool },
    Reject { tag: u64, requeue: bool },
    HandBack { tag: u64 },
}

impl Frame {
    /// The frame that settles the single delivery `tag` with `outcome`.
    fn single(tag: u64, outcome: Outcome) -> Self {
        match outcome {
            Outcome::Ack => Self::Ack {
                tag,
                multiple: false,
            },
            Outcome::Reject { requeue } => Self::Reject { tag, requeue },
            Outcome::HandBack => Self::HandBack { tag },
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    /// Delivered, not settled yet (a delivery dropped unsettled is handed back, see
    /// [`super::AmqpAcker`]).
    Pending,
    /// Settled, frame not sent yet.
    Finished(Outcome),
    /// Settled on its own, ahead of the run.
    Sent,
}

/// A delivery settled on a generation of the channel that is over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Stale;

/// The ordering logic of an [`AckPath`], without the channel: which tag became what, and
/// which frames a flush sends.
#[derive(Debug)]
pub(super) struct Ledger {
    generation: u64,
    /// The tag of `slots[0]`; every tag below it is settled on the wire (or belongs to
    /// the deliveries lapin dropped).
    base: u64,
    slots: VecDeque<Slot>,
    /// Finished tags whose frame was not sent yet.
    unsent: Vec<u64>,
    /// The tag that blocks the run, and since when, while finished deliveries wait behind it.
    blocked: Option<(u64, Instant)>,
    batch: usize,
}

impl Ledger {
    /// A ledger for a channel with `prefetch` (0: unlimited) unsettled deliveries at most.
    pub(super) fn new(prefetch: u16) -> Self {
        let batch = match usize::from(prefetch) {
            0 => MAX_BATCH,
            p => (p / 4).clamp(1, MAX_BATCH),
        };
        Self {
            generation: 0,
            base: 0,
            slots: VecDeque::new(),
            unsent: Vec::new(),
            blocked: None,
            batch,
        }
    }

    /// Forgets every delivery: the channel was recovered (tags restart) or closed, and the
    /// broker delivers again whatever was not acknowledged.
    pub(super) fn reset(&mut self) {
        self.generation += 1;
        self.slots.clear();
        self.unsent.clear();
        self.blocked = None;
    }

    /// Records the delivery of `tag`; returns the generation it belongs to.
    pub(super) fn register(&mut self, tag: u64) -> u64 {
        if self.slots.is_empty() {
            self.base = tag;
        }
        let next = self.base + self.slots.len() as u64;
        if tag < next {
            // Tags restarted: a recovery the probe did not show (it cannot, before the
            // first delivery of a generation).
            self.reset();
            self.base = tag;
        } else if tag > next {
            // Deliveries this path never saw (lapin dropped them): never covered by a
            // `multiple`, they stay unacknowledged until the channel closes.
            tracing::debug!(tag, expected = next, "delivery tags skipped");
            self.slots
                .extend(std::iter::repeat_n(Slot::Pending, (tag - next) as usize));
        }
        self.slots.push_back(Slot::Pending);
        self.generation
    }

    /// Records that the delivery `tag` of `generation` was handled; returns whether a batch
    /// is ready to be flushed now.
    pub(super) fn finish(
        &mut self,
        generation: u64,
        tag: u64,
        outcome: Outcome,
    ) -> Result<bool, Stale> {
        if generation != self.generation || tag < self.base {
            return Err(Stale);
        }
        let slot = usize::try_from(tag - self.base)
            .ok()
            .and_then(|i| self.slots.get_mut(i))
            .ok_or(Stale)?;
        if *slot != Slot::Pending {
            return Err(Stale);
        }
        *slot = Slot::Finished(outcome);
        self.unsent.push(tag);
        Ok(self.unsent.len() >= self.batch)
    }

    /// Whether some settlement waits to be sent.
    pub(super) fn has_unsent(&self) -> bool {
        !self.unsent.is_empty()
    }

    /// Appends to `out` the frames that settle what can be settled now, in the order they
    /// must leave. With `everything`, deliveries waiting behind an unfinished one are settled
    /// one by one at once (the channel is about to close).
    pub(super) fn flush(&mut self, now: Instant, everything: bool, out: &mut Vec<Frame>) {
        // The run at the front: one `multiple` per stretch of acks, rejects alone.
        let mut last_ack = None;
        while let Some(&slot) = self.slots.front() {
            let tag = self.base;
            match slot {
                Slot::Pending => break,
                Slot::Sent => {}
                Slot::Finished(Outcome::Ack) => last_ack = Some(tag),
                Slot::Finished(outcome) => {
                    if let Some(ack) = last_ack.take() {
                        out.push(Frame::Ack {
                            tag: ack,
                            multiple: true,
                        });
                    }
                    out.push(Frame::single(tag, outcome));
                }
            }
            self.slots.pop_front();
            self.base += 1;
        }
        if let Some(tag) = last_ack {
            out.push(Frame::Ack {
                tag,
                multiple: true,
            });
        }
        let base = self.base;
        self.unsent.retain(|&tag| tag >= base);
        if self.unsent.is_empty() {
            self.blocked = None;
            return;
        }
        // Finished deliveries wait behind an unfinished one.
        let overdue = match self.blocked {
            Some((head, since)) if head == base => now.duration_since(since) >= STRAGGLER_AFTER,
            _ => {
                self.blocked = Some((base, now));
                false
            }
        };
        if everything || overdue {
            self.unsent.sort_unstable();
            for tag in self.unsent.drain(..) {
                let Some(slot) = self.slots.get_mut((tag - base) as usize) else {
                    continue;
                };
                if let Slot::Finished(outcome) = *slot {
                    out.push(Frame::single(tag, outcome));
                    *slot = Slot::Sent;
                }
            }
        }
    }
}

/// The error of a settlement on a channel that recovered (or closed) since the delivery.
fn stale() -> ConsumeError {
    ConsumeError::Connection {
        queue: String::new(),
        detail: "the channel recovered since this delivery; the broker delivers it again".into(),
        source: None,
    }
}

struct State {
    ledger: Ledger,
    /// The acker of a delivery of the current generation. lapin poisons it when the channel
    /// starts recovering or closes: the generation is then over.
    probe: Option<lapin::Acker>,
    /// Whether the flush task was woken and has not yet found the ledger empty.
    armed: bool,
    /// Frames of the flush in progress (kept to reuse the allocation).
    frames: Vec<Frame>,
}

impl State {
    /// Starts a new generation when lapin poisoned the probe.
    fn check_probe(&mut self) {
        if self.probe.as_ref().is_some_and(lapin::Acker::poisoned) {
            self.ledger.reset();
            self.probe = None;
        }
    }
}

/// The ordered acknowledgement path of one consumer channel (see the module documentation).
///
/// Held by the subscription and by every unsettled delivery; when the last of them goes, the
/// path settles what is recorded, on that thread, before returning (see [`Drop`]). The flush
/// task only holds the [`Shared`] part, never this handle, so the final flush never runs
/// late on the task while the caller already closes the connection: lapin checks that the
/// channel is open and queues the frame in two steps, so a frame can end up behind
/// `connection.close`, where the broker ignores it. (A frame queued before it does not always
/// count either: that is what [`closing`] is for.)
pub(super) struct AckPath {
    shared: Arc<Shared>,
    wake: Arc<Notify>,
    /// Where the channel is closed once the path is dropped.
    paths: Paths,
}

/// What the flush task shares with the [`AckPath`]: the ledger and the channel.
struct Shared {
    state: Mutex<State>,
    channel: Channel,
}

/// A delivery's place on its channel's [`AckPath`].
pub(crate) struct Ticket {
    path: Arc<AckPath>,
    generation: u64,
    tag: u64,
}

impl AckPath {
    /// The path of `channel`, whose consumer has `prefetch` unsettled deliveries at most,
    /// with its flush task; tracked by `paths`, the consumer channels of the transport.
    pub(super) fn start(channel: Channel, prefetch: u16, paths: &Paths) -> Arc<Self> {
        let wake = Arc::new(Notify::new());
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                ledger: Ledger::new(prefetch),
                probe: None,
                armed: false,
                frames: Vec::new(),
            }),
            channel,
        });
        tokio::spawn(flush_task(Arc::downgrade(&shared), wake.clone()));
        paths.add(&shared);
        Arc::new(Self {
            shared,
            wake,
            paths: paths.clone(),
        })
    }

    /// Records a delivery; its [`Ticket`] settles it.
    pub(super) fn register(self: &Arc<Self>, tag: u64, acker: &lapin::Acker) -> Ticket {
        let mut state = self.shared.lock();
        state.check_probe();
        let generation = state.ledger.register(tag);
        if state.probe.is_none() {
            state.probe = Some(acker.clone());
        }
        Ticket {
            path: self.clone(),
            generation,
            tag,
        }
    }

    fn settle(&self, generation: u64, tag: u64, outcome: Outcome) -> Result<(), ConsumeError> {
        let mut state = self.shared.lock();
        state.check_probe();
        let batch_ready = state
            .ledger
            .finish(generation, tag, outcome)
            .map_err(|Stale| stale())?;
        if batch_ready {
            self.shared.flush(&mut state, false);
        }
        if state.ledger.has_unsent() && !state.armed {
            state.armed = true;
            self.wake.notify_one();
        }
        Ok(())
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // The state is consistent between statements; a panic elsewhere does not break it.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sends, in order, the frames the ledger decides; with `everything`, also what waits
    /// behind an unfinished delivery. Must be called with the state locked: the lock is what
    /// keeps frames in order.
    fn flush(&self, state: &mut State, everything: bool) {
        state.check_probe();
        let mut frames = std::mem::take(&mut state.frames);
        state.ledger.flush(Instant::now(), everything, &mut frames);
        for frame in frames.drain(..) {
            // A probe poisoned since the last check: the rest would name deliveries of a
            // recovered channel. (lapin poisons the ackers before the channel can be used
            // again, so a delivery's tag never reaches its next incarnation.)
            if state.probe.as_ref().is_some_and(lapin::Acker::poisoned) {
                break;
            }
            if let Err(error) = send(&self.channel, frame) {
                tracing::debug!(%error, ?frame, "settling on the consumer channel failed; the broker delivers the messages again");
                state.ledger.reset();
                state.probe = None;
                break;
            }
        }
        frames.clear();
        state.frames = frames;
        state.check_probe();
    }

    /// A flush from the timer; returns whether something is still waiting.
    fn tick(&self) -> bool {
        let mut state = self.lock();
        self.flush(&mut state, false);
        let waiting = state.ledger.has_unsent();
        state.armed = waiting;
        waiting
    }
}

impl Drop for AckPath {
    fn drop(&mut self) {
        // The channel closes after this (or the caller closes the connection): every
        // recorded settlement is queued on the channel before this returns. Taking the lock
        // also waits for a flush the task may be doing at this moment.
        let mut state = self.shared.lock();
        self.shared.flush(&mut state, true);
        drop(state);
        // Closed with `close-ok` awaited, so that the broker applies the settlements before
        // it puts back what was not settled (see `closing`).
        self.paths.close(self.shared.channel.clone());
        // Lets the flush task see that the path is gone.
        self.wake.notify_one();
    }
}

/// Hands `frame` to lapin's frame queue, in the order of the calls: lapin's `basic_ack` and
/// `basic_reject` queue their frame when first polled, and what they return after that is
/// only the news that it was written, which nobody waits for.
fn send(channel: &Channel, frame: Frame) -> Result<(), lapin::Error> {
    let queued = match frame {
        Frame::Ack { tag, multiple } => channel
            .basic_ack(tag, BasicAckOptions { multiple })
            .now_or_never(),
        Frame::Reject { tag, requeue } => channel
            .basic_reject(tag, BasicRejectOptions { requeue })
            .now_or_never(),
        Frame::HandBack { tag } => channel
            .basic_nack(
                tag,
                BasicNackOptions {
                    multiple: false,
                    requeue: true,
                },
            )
            .now_or_never(),
    };
    queued.unwrap_or(Ok(()))
}

/// Flushes a path [`FLUSH_INTERVAL`] after something was settled, and again every interval
/// while something waits; ends with the path.
async fn flush_task(shared: Weak<Shared>, wake: Arc<Notify>) {
    loop {
        wake.notified().await;
        loop {
            tokio::time::sleep(FLUSH_INTERVAL).await;
            let Some(shared) = shared.upgrade() else {
                return;
            };
            if !shared.tick() {
                break;
            }
        }
        if shared.strong_count() == 0 {
            return;
        }
    }
}

impl Ticket {
    /// Acknowledges the delivery.
    pub(super) fn ack(self) -> Result<(), ConsumeError> {
        self.path.settle(self.generation, self.tag, Outcome::Ack)
    }

    /// Rejects the delivery, requeueing it or not.
    pub(super) fn reject(self, requeue: bool) -> Result<(), ConsumeError> {
        self.path
            .settle(self.generation, self.tag, Outcome::Reject { requeue })
    }

    /// Puts the delivery back in its queue unprocessed (`basic.nack`): a delivery that
    /// reached the client but was never handed to a callback.
    pub(super) fn hand_back(self) -> Result<(), ConsumeError> {
        self.path
            .settle(self.generation, self.tag, Outcome::HandBack)
    }
}

#[cfg(test)]
mod tests;
