//! The publisher: one confirm-mode channel, owned by one task.
//!
//! Callers hand their message to the task and await its answer. The task publishes with
//! `mandatory`, keeps up to the window of publishes in flight ([`Confirms`] pairs each
//! confirm with its own returned message), and keeps every message until its fate is known.
//! It does not wait for one publish to be written before starting the next: lapin queues a
//! publish's frames (and numbers its confirm) when its future is first polled, so the task
//! starts each publish in turn and collects the confirms as the writes complete; many
//! publishes cost one wake-up of the task, not one each.
//!
//! * confirmed and routed → `Ok`; came back → [`PublishError::Unroutable`]; negative
//!   confirm → [`PublishError::Nacked`];
//! * the channel or connection broke first → kept, and re-sent with the same message id on a
//!   new channel, on the connection that replaced a lost one (at-least-once);
//! * the broker closed the channel because the message's exchange does not exist → only that
//!   message fails ([`TopologyError::NotFound`]); the others are re-sent on a new channel;
//! * no answer by the confirm deadline → [`PublishError::Timeout`]; once the connection is
//!   given up → [`PublishError::Connection`]. Never an unbounded wait.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use lapin::options::ConfirmSelectOptions;
use lapin::{Channel, Connection};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::{Instant, Sleep};

use super::confirms::{Confirms, Decision, LapinConfirm, LapinWrite, lapin_sync, lapin_write};
use super::convert::is_missing_exchange;
use super::link::{CHANNEL_CLOSE_TIMEOUT, Health, Link, close_channel, open_within};
use crate::error::{Cause, Entity, PublishError, TopologyError};
use crate::message::Message;

/// How many times one message is sent at most (the first send and re-sends after failures).
const MAX_SENDS: u32 = 20;
/// How long after its first negative confirm a message is still sent again.
const NACK_PATIENCE: Duration = Duration::from_secs(15);
/// The pause before the first re-send of a refused message; it doubles up to
/// [`NACK_PAUSE_MAX`].
const NACK_PAUSE: Duration = Duration::from_millis(100);
const NACK_PAUSE_MAX: Duration = Duration::from_secs(2);
/// The shortest time between two fresh channels opened because of negative confirms.
const NACK_REOPEN_EVERY: Duration = Duration::from_secs(1);
/// The pause between two failed attempts to open a publisher channel.
const REOPEN_POLL: Duration = Duration::from_millis(100);

type Reply = oneshot::Sender<Result<(), PublishError>>;

/// A message on its way, with who waits for it.
struct Pending {
    message: Message,
    reply: Reply,
    deadline: Instant,
    sends: u32,
    /// When the broker first refused it, and how many times.
    first_nack: Option<Instant>,
    nacks: u32,
}

impl Pending {
    fn answer(self, result: Result<(), PublishError>) {
        // The caller may have given up waiting; nobody is left to tell.
        let _ = self.reply.send(result);
    }

    fn error(&self, detail: String, source: Option<lapin::Error>) -> PublishError {
        PublishError::Connection {
            exchange: self.message.exchange.to_string(),
            routing_key: self.message.routing_key.to_string(),
            detail,
            source: source.map(|e| Arc::new(e) as Cause),
        }
    }

    fn timeout(&self, after: Duration) -> PublishError {
        PublishError::Timeout {
            exchange: self.message.exchange.to_string(),
            routing_key: self.message.routing_key.to_string(),
            after,
        }
    }
}

/// The handle callers publish through.
pub(super) struct Publisher {
    requests: mpsc::Sender<Pending>,
    confirm_timeout: Duration,
    /// Why the task stopped, when the connection was given up.
    health: watch::Receiver<Health>,
}

impl Publisher {
    /// Starts the publishing task on `channel` (confirm mode already selected).
    pub(super) fn start(
        link: Link,
        channel: Channel,
        confirm_timeout: Duration,
        window: usize,
    ) -> Self {
        let (requests, receiver) = mpsc::channel(window);
        let task = Task {
            connection: link.current(),
            health: link.health(),
            link,
            channel,
            generation: 0,
            older: Vec::new(),
            confirms: Confirms::new(),
            resend: VecDeque::new(),
            refused: Vec::new(),
            recovering: None,
            window,
            confirm_timeout,
            fresh_after_nack: None,
            timer: Box::pin(tokio::time::sleep_until(Instant::now())),
            timer_at: None,
        };
        let health = task.health.clone();
        tokio::spawn(task.run(receiver));
        Self {
            requests,
            confirm_timeout,
            health,
        }
    }

    /// Publishes `message` and returns once the broker confirmed it, or with the reason it
    /// did not, within the confirm timeout.
    pub(super) async fn publish(&self, message: Message) -> Result<(), PublishError> {
        message.check_short_strings()?;
        let deadline = Instant::now() + self.confirm_timeout;
        let (reply, answer) = oneshot::channel();
        let exchange = message.exchange.clone();
        let routing_key = message.routing_key.clone();
        let timeout = || PublishError::Timeout {
            exchange: exchange.to_string(),
            routing_key: routing_key.to_string(),
            after: self.confirm_timeout,
        };
        let stopped = || PublishError::Connection {
            exchange: exchange.to_string(),
            routing_key: routing_key.to_string(),
            detail: self
                .health
                .borrow()
                .failure()
                .unwrap_or_else(|| "the publisher has stopped".to_owned()),
            source: None,
        };
        let pending = Pending {
            message,
            reply,
            deadline,
            sends: 0,
            first_nack: None,
            nacks: 0,
        };
        match tokio::time::timeout_at(deadline, self.requests.send(pending)).await {
            Err(_) => return Err(timeout()),
            Ok(Err(_)) => return Err(stopped()),
            Ok(Ok(())) => {}
        }
        // The task answers by the deadline; the margin covers a task busy elsewhere.
        match tokio::time::timeout_at(deadline + Duration::from_secs(1), answer).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(stopped()),
            Err(_) => Err(timeout()),
        }
    }
}

/// A usable channel again: a new one (with its connection), or `None` to go on with the
/// current one; or why there will be none.
type Recovered = Result<Option<(Arc<Connection>, Channel)>, String>;

/// What woke the task.
enum Event {
    HealthChanged,
    Decided(Vec<(Pending, Decision<lapin::Error>)>),
    Recovered(Recovered),
    Request(Option<Box<Pending>>),
    Deadline,
}

struct Task {
    link: Link,
    /// The connection `channel` is on.
    connection: Arc<Connection>,
    channel: Channel,
    /// Counts the channels published on; `channel` is this one.
    generation: u64,
    /// Earlier channels with publishes still watched, each with its generation.
    older: Vec<(u64, Channel)>,
    /// Publishes from their write to their outcome (written ones have their frames queued
    /// in lapin).
    confirms: Confirms<Pending, LapinWrite, LapinConfirm, lapin::Error>,
    /// Messages a failure interrupted, to send again once the channel works.
    resend: VecDeque<Pending>,
    /// Messages the broker refused, to send again at the instant given.
    refused: Vec<(Instant, Pending)>,
    /// Waiting for a usable channel; resolves to a new channel (and its connection) if one
    /// was opened.
    recovering: Option<BoxFuture<'static, Recovered>>,
    health: watch::Receiver<Health>,
    window: usize,
    confirm_timeout: Duration,
    /// When a negative confirm last made the task open a fresh channel.
    fresh_after_nack: Option<Instant>,
    /// The timer of the earliest deadline, kept across events (re-armed, not re-created).
    timer: Pin<Box<Sleep>>,
    /// What `timer` is set to.
    timer_at: Option<Instant>,
}

impl Task {
    async fn run(mut self, mut requests: mpsc::Receiver<Pending>) {
        loop {
            let failure = self.health.borrow().failure();
            if let Some(reason) = failure {
                self.fail_everything(&reason, &mut requests);
                return;
            }
            self.send_again();
            let event = self.next_event(&mut requests).await;
            match event {
                Event::HealthChanged => {}
                Event::Decided(decided) => {
                    for (pending, decision) in decided {
                        self.settle(pending, decision);
                    }
                }
                Event::Recovered(Ok(channel)) => {
                    if let Some((connection, channel)) = channel {
                        self.connection = connection;
                        let old = std::mem::replace(&mut self.channel, channel);
                        self.older.push((self.generation, old));
                        self.generation += 1;
                    }
                    if self.resend.is_empty() {
                        tracing::debug!("publisher on a new channel");
                    } else {
                        tracing::info!(resend = self.resend.len(), "publisher channel recovered");
                    }
                }
                Event::Recovered(Err(reason)) => {
                    tracing::error!(%reason, "the publisher channel cannot recover");
                    self.fail_everything(&reason, &mut requests);
                    return;
                }
                Event::Request(Some(pending)) => {
                    self.send(*pending);
                    // Start whatever else is waiting, in one go.
                    while self.can_take() {
                        match requests.try_recv() {
                            Ok(pending) => self.send(pending),
                            Err(_) => break,
                        }
                    }
                }
                Event::Request(None) => return,
                Event::Deadline => self.expire(),
            }
            let confirms = &self.confirms;
            self.older
                .retain(|(generation, _)| confirms.watches(*generation));
        }
    }

    /// Publishes started and not decided yet.
    fn in_flight(&self) -> usize {
        self.confirms.len()
    }

    /// Whether a new request can be started now.
    fn can_take(&self) -> bool {
        self.recovering.is_none() && self.resend.is_empty() && self.in_flight() < self.window
    }

    async fn next_event(&mut self, requests: &mut mpsc::Receiver<Pending>) -> Event {
        let can_take = self.can_take();
        let deadline = self.next_deadline();
        if let Some(at) = deadline
            && self.timer_at != Some(at)
        {
            self.timer.as_mut().reset(at);
            self.timer_at = Some(at);
        }
        let Self {
            confirms,
            channel,
            older,
            recovering,
            health,
            timer,
            ..
        } = self;
        tokio::select! {
            biased;
            changed = health.changed() => match changed {
                Ok(()) => Event::HealthChanged,
                // The transport is gone: nothing will publish through it again.
                Err(_) => Event::Request(None),
            },
            decided = std::future::poll_fn(|cx| {
                let sync = || {
                    let mut returned = lapin_sync(channel);
                    for (_, old) in older.iter() {
                        returned.extend(lapin_sync(old));
                    }
                    returned
                };
                confirms.poll_decided(cx, |p| &p.message, sync)
            }) => Event::Decided(decided),
            result = async {
                match recovering.as_mut() {
                    Some(recovery) => recovery.await,
                    None => std::future::pending().await,
                }
            }, if recovering.is_some() => {
                *recovering = None;
                Event::Recovered(result)
            }
            request = requests.recv(), if can_take => Event::Request(request.map(Box::new)),
            () = timer.as_mut(), if deadline.is_some() => Event::Deadline,
        }
    }

    fn next_deadline(&mut self) -> Option<Instant> {
        let waiting = self
            .resend
            .iter()
            .map(|p| p.deadline)
            .chain(self.refused.iter().map(|(at, _)| *at))
            .min();
        match (self.confirms.next_deadline(), waiting) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Sends what a failure interrupted, once the channel is usable again.
    fn send_again(&mut self) {
        while self.recovering.is_none() && self.in_flight() < self.window {
            let Some(pending) = self.resend.pop_front() else {
                return;
            };
            self.send(pending);
        }
    }

    /// Starts the publish of `pending`: its frames are queued in lapin before this returns,
    /// so publishes leave in the order they were started.
    fn send(&mut self, mut pending: Pending) {
        if Instant::now() >= pending.deadline {
            let error = pending.timeout(self.confirm_timeout);
            pending.answer(Err(error));
            return;
        }
        let size = pending.message.properties.header_frame_size();
        let limit =
            usize::try_from(self.connection.configuration().frame_max()).unwrap_or(usize::MAX);
        if size > limit {
            let message = &pending.message;
            let error = PublishError::HeadersTooLarge {
                exchange: message.exchange.to_string(),
                routing_key: message.routing_key.to_string(),
                size,
                limit,
            };
            pending.answer(Err(error));
            return;
        }
        pending.sends += 1;
        let write = lapin_write(&self.channel, &pending.message);
        let deadline = pending.deadline;
        if let Err((pending, error)) =
            self.confirms
                .insert(pending, deadline, write, self.generation)
        {
            self.interrupted(pending, error);
        }
    }

    fn settle(&mut self, pending: Pending, decision: Decision<lapin::Error>) {
        let message = &pending.message;
        let result = match decision {
            Decision::Routed => Ok(()),
            Decision::Unroutable => Err(PublishError::Unroutable {
                exchange: message.exchange.to_string(),
                routing_key: message.routing_key.to_string(),
            }),
            Decision::Nacked => {
                self.refused(pending);
                return self.fresh_channel_after_nack();
            }
            Decision::Failed(error) => return self.interrupted(pending, error),
        };
        pending.answer(result);
    }

    /// A send or confirm failed with `error`: fail the message if it caused it, or keep it
    /// for a re-send once the channel has recovered.
    fn interrupted(&mut self, pending: Pending, error: lapin::Error) {
        if is_missing_exchange(&error, &pending.message.exchange) {
            let missing = TopologyError::NotFound {
                entity: Entity::Exchange(pending.message.exchange.to_string()),
            };
            pending.answer(Err(PublishError::Topology(missing)));
        } else if pending.sends >= MAX_SENDS {
            let detail = format!("gave up after {MAX_SENDS} sends: {error}");
            let failure = pending.error(detail, Some(error.clone()));
            pending.answer(Err(failure));
        } else {
            tracing::debug!(%error, sends = pending.sends, "publish interrupted; will re-send");
            self.resend.push_back(pending);
        }
        self.start_recovery(error);
    }

    fn start_recovery(&mut self, error: lapin::Error) {
        if self.recovering.is_some() {
            return;
        }
        tracing::warn!(%error, "publisher channel interrupted; opening a new one");
        let failed = self.channel.clone();
        let link = self.link.clone();
        self.recovering = Some(Box::pin(async move {
            // A failed channel is never used again (its status can still say connected while
            // its connection is torn down); one still open is closed.
            tokio::spawn(close_channel(failed, CHANNEL_CLOSE_TIMEOUT));
            // Closed by the broker (a channel error), or its connection was lost: a new
            // channel on the connection that is up, the one that replaced the lost one. The
            // link's supervisor decides when to give up.
            loop {
                let connection = link.up().await?;
                match open_within(open_publisher(&connection)).await {
                    Ok(channel) => return Ok(Some((connection, channel))),
                    Err(error) => tracing::warn!(%error, "opening the publisher channel failed"),
                }
                tokio::time::sleep(REOPEN_POLL).await;
            }
        }));
    }

    /// A quorum queue that refused a publish (`reject-publish` at its length limit) was seen
    /// to go on refusing the channel's publishes after its limit was lifted; a new channel
    /// publishes normally. So after a negative confirm the following publishes go on a fresh
    /// channel, at most once per [`NACK_REOPEN_EVERY`]. The old channel is closed once its
    /// own publishes are decided (by their deadline at the latest).
    fn fresh_channel_after_nack(&mut self) {
        let now = Instant::now();
        if self.recovering.is_some()
            || self
                .fresh_after_nack
                .is_some_and(|at| now.duration_since(at) < NACK_REOPEN_EVERY)
        {
            return;
        }
        self.fresh_after_nack = Some(now);
        let (link, old, linger) = (
            self.link.clone(),
            self.channel.clone(),
            self.confirm_timeout,
        );
        self.recovering = Some(Box::pin(async move {
            let connection = link.up().await?;
            match open_within(open_publisher(&connection)).await {
                Ok(channel) => {
                    tokio::spawn(async move {
                        tokio::time::sleep(linger).await;
                        close_channel(old, CHANNEL_CLOSE_TIMEOUT).await;
                    });
                    Ok(Some((connection, channel)))
                }
                Err(error) => {
                    // Go on with the old channel; a later negative confirm tries again.
                    tracing::debug!(%error, "opening a fresh publisher channel failed");
                    Ok(None)
                }
            }
        }));
    }

    /// The broker refused `pending` (a negative confirm): a quorum queue does so while its
    /// leader moves to another node, and a queue at its length limit with `reject-publish`
    /// until it has room again. The message is sent again, with the same message id, after
    /// a pause that doubles each time, for up to [`NACK_PATIENCE`] and within its deadline;
    /// then it fails with [`PublishError::Nacked`].
    fn refused(&mut self, mut pending: Pending) {
        let now = Instant::now();
        let first = *pending.first_nack.get_or_insert(now);
        pending.nacks += 1;
        let pause = NACK_PAUSE
            .saturating_mul(1 << pending.nacks.min(8).saturating_sub(1))
            .min(NACK_PAUSE_MAX);
        let at = now + pause;
        if at < pending.deadline && at < first + NACK_PATIENCE && pending.sends < MAX_SENDS {
            tracing::debug!(
                nacks = pending.nacks,
                "publish refused by the broker; will re-send"
            );
            self.refused.push((at, pending));
            return;
        }
        let message = &pending.message;
        let nacked = PublishError::Nacked {
            exchange: message.exchange.to_string(),
            routing_key: message.routing_key.to_string(),
        };
        pending.answer(Err(nacked));
    }

    fn expire(&mut self) {
        let now = Instant::now();
        let (due, later): (Vec<_>, Vec<_>) = self.refused.drain(..).partition(|(at, _)| *at <= now);
        self.refused = later;
        self.resend
            .extend(due.into_iter().map(|(_, pending)| pending));
        for pending in self.confirms.expire(now, |p| &p.message) {
            let error = pending.timeout(self.confirm_timeout);
            pending.answer(Err(error));
        }
        let (late, waiting): (Vec<_>, Vec<_>) =
            self.resend.drain(..).partition(|p| p.deadline <= now);
        self.resend = waiting.into();
        for pending in late {
            let error = pending.timeout(self.confirm_timeout);
            pending.answer(Err(error));
        }
    }

    fn fail_everything(&mut self, reason: &str, requests: &mut mpsc::Receiver<Pending>) {
        requests.close();
        // Publishes still being written are dropped with their messages: their callers are
        // told the publisher stopped.
        let mut all: Vec<Pending> = self.confirms.take_all();
        all.extend(self.resend.drain(..));
        all.extend(self.refused.drain(..).map(|(_, pending)| pending));
        while let Ok(pending) = requests.try_recv() {
            all.push(pending);
        }
        for pending in all {
            let error = pending.error(reason.to_owned(), None);
            pending.answer(Err(error));
        }
    }
}

/// Opens a channel in confirm mode.
pub(super) async fn open_publisher(connection: &Connection) -> Result<Channel, lapin::Error> {
    let channel = connection.create_channel().await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    Ok(channel)
}
