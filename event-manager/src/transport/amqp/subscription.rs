//! Consuming from a queue: deliveries, their settlement, and the end of a subscription.
//!
//! When the connection is lost, or the channel fails, the subscription consumes again on a
//! new channel, on the connection that replaced the lost one; deliveries of the old channel
//! go back to the queue and come again. The subscription ends, for good, when the queue is
//! gone (the broker cancelled the consumer, or refuses to consume it again), or when the
//! connection is given up; [`Subscription::end_reason`] says which. The service then declares
//! its topology again and subscribes anew, or fails.
//!
//! Deliveries of a subscription are settled through its channel's [`AckPath`]: coalesced
//! into `basic.ack multiple` frames, in order (see [`super::acks`]).

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use async_trait::async_trait;
use futures_util::Stream;
use futures_util::future::BoxFuture;
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions,
    BasicRejectOptions,
};
use lapin::types::FieldTable;
use lapin::{Channel, Connection};

use super::acks::{AckPath, Paths, Ticket};
use super::convert::{from_amqp, short};
use super::link::{CHANNEL_CLOSE_TIMEOUT, Link, OPEN_TIMEOUT, close_channel};
use crate::error::ConsumeError;
use crate::message::Message;
use crate::transport::{Incoming, Settler, Subscription};

/// How long `basic.cancel` may take (it cannot leave while the connection is blocked).
const CANCEL_TIMEOUT: Duration = Duration::from_secs(5);
/// The pause between two failed attempts to consume again.
const RESUME_PAUSE: Duration = Duration::from_millis(200);
/// The shortest time consuming again may keep failing on a connection that is up before a
/// subscription ends (else twice the confirm timeout): a quorum queue electing its leader
/// after a node was lost can take a while to answer.
pub(super) const MIN_RESUME_LIMIT: Duration = Duration::from_secs(30);

/// The message of `delivery`: its names and body are moved out, not copied (its properties
/// can only be read).
fn message(delivery: &mut Delivery) -> Arc<Message> {
    Arc::new(Message {
        exchange: String::from(std::mem::take(&mut delivery.exchange)).into(),
        routing_key: String::from(std::mem::take(&mut delivery.routing_key)).into(),
        body: std::mem::take(&mut delivery.data).into(),
        properties: from_amqp(&delivery.properties),
    })
}

/// A delivery of `basic.get` as the crate's [`Incoming`], settled on its own.
pub(super) fn incoming(mut delivery: Delivery) -> Incoming {
    let message = message(&mut delivery);
    Incoming::with_settler(
        message,
        delivery.redelivered,
        Settler::Amqp(AmqpAcker(Some(Settle::Single(delivery.acker)))),
    )
}

/// Settles one delivery on its channel. Dropped unsettled, it hands the delivery back to
/// its queue (`basic.nack` with requeue), as the in-memory broker does: it would otherwise
/// stay unacknowledged until its channel closes, which for a `basic.get` channel is when the
/// transport closes, and for a consumer's takes a place of its prefetch until then.
pub(crate) struct AmqpAcker(Option<Settle>);

enum Settle {
    /// A `basic.get` delivery: settled on its own through lapin.
    Single(lapin::Acker),
    /// A consumer's delivery: settled through its channel's ordered [`AckPath`].
    Coalesced(Ticket),
}

impl Drop for AmqpAcker {
    fn drop(&mut self) {
        match self.0.take() {
            None => {}
            Some(Settle::Coalesced(ticket)) => {
                if let Err(error) = ticket.hand_back() {
                    tracing::debug!(%error, "handing back a dropped delivery failed; it goes back when its channel closes");
                }
            }
            Some(Settle::Single(acker)) => {
                let Ok(runtime) = tokio::runtime::Handle::try_current() else {
                    return; // It goes back when its channel closes.
                };
                runtime.spawn(async move {
                    let options = BasicNackOptions {
                        multiple: false,
                        requeue: true,
                    };
                    if let Err(error) = acker.nack(options).await {
                        tracing::debug!(%error, "handing back a dropped delivery failed; it goes back when its channel closes");
                    }
                });
            }
        }
    }
}

fn settle_result(result: Result<bool, lapin::Error>) -> Result<(), ConsumeError> {
    match result {
        Ok(true) => Ok(()),
        Ok(false) => Err(ConsumeError::Connection {
            queue: String::new(),
            detail: "the channel recovered since this delivery; the broker delivers it again"
                .into(),
            source: None,
        }),
        Err(e) => Err(ConsumeError::Connection {
            queue: String::new(),
            detail: e.to_string(),
            source: Some(std::sync::Arc::new(e)),
        }),
    }
}

impl AmqpAcker {
    /// Acknowledges the delivery. A consumer's delivery is acknowledged once the ack is on
    /// its channel's ordered path; the frame leaves within a few milliseconds.
    pub(crate) async fn ack(mut self) -> Result<(), ConsumeError> {
        match self.0.take() {
            Some(Settle::Single(acker)) => {
                settle_result(acker.ack(BasicAckOptions::default()).await)
            }
            Some(Settle::Coalesced(ticket)) => ticket.ack(),
            None => Ok(()),
        }
    }

    /// Rejects the delivery, requeueing it or not.
    pub(crate) async fn reject(mut self, requeue: bool) -> Result<(), ConsumeError> {
        match self.0.take() {
            Some(Settle::Single(acker)) => {
                settle_result(acker.reject(BasicRejectOptions { requeue }).await)
            }
            Some(Settle::Coalesced(ticket)) => ticket.reject(requeue),
            None => Ok(()),
        }
    }
}

/// Why [`consume`] started no consumer.
pub(super) enum NotConsuming {
    /// The broker refused, or the connection failed.
    Failed(lapin::Error),
    /// No answer in time.
    NoAnswer,
}

/// Opens a channel on `connection` with `prefetch` and consumes `queue` on it, within
/// `within`.
///
/// The broker acts on a request whose answer comes too late all the same: a consumer it
/// registers then would take up to `prefetch` deliveries on a channel nobody reads and hold
/// them unacknowledged for as long as the connection lives. So when no answer came in time,
/// the channel is closed: the broker handles the close after the consume, and puts back
/// whatever it delivered there. (A channel whose `open-ok` comes late has no consumer; lapin
/// closes it when it finds nobody waiting for it.)
pub(super) async fn consume(
    connection: &Connection,
    queue: &str,
    prefetch: u16,
    within: Duration,
) -> Result<(Channel, lapin::Consumer), NotConsuming> {
    let deadline = tokio::time::Instant::now() + within;
    let channel = tokio::time::timeout_at(deadline, connection.create_channel())
        .await
        .map_err(|_| NotConsuming::NoAnswer)?
        .map_err(NotConsuming::Failed)?;
    let start = async {
        channel
            .basic_qos(prefetch, BasicQosOptions::default())
            .await?;
        channel
            .basic_consume(
                short(queue),
                "".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
    };
    match tokio::time::timeout_at(deadline, start).await {
        Ok(Ok(consumer)) => Ok((channel, consumer)),
        Ok(Err(e)) => Err(NotConsuming::Failed(e)),
        Err(_) => {
            tokio::spawn(close_channel(channel, CHANNEL_CLOSE_TIMEOUT));
            Err(NotConsuming::NoAnswer)
        }
    }
}

/// A consumer on the connection it was opened on.
type Consuming = (Arc<Connection>, Channel, lapin::Consumer);

pub(super) struct AmqpSubscription {
    link: Link,
    queue: String,
    prefetch: u16,
    /// How long consuming again may keep failing on a connection that is up before the
    /// subscription ends.
    resume_limit: Duration,
    /// The connection `channel` is on.
    connection: Arc<Connection>,
    channel: Channel,
    consumer: lapin::Consumer,
    /// Where the deliveries are settled.
    acks: Arc<AckPath>,
    /// The consumer channels of the transport.
    paths: Paths,
    /// Resolves with the reason once the connection is given up.
    dead: BoxFuture<'static, String>,
    /// Consuming again on a new channel after the consumer was interrupted.
    resuming: Option<BoxFuture<'static, Result<Consuming, String>>>,
    ended: Option<String>,
    cancelled: bool,
}

impl AmqpSubscription {
    pub(super) fn new(
        link: Link,
        paths: Paths,
        queue: &str,
        prefetch: u16,
        resume_limit: Duration,
        consuming: Consuming,
    ) -> Self {
        let mut health = link.health();
        let dead = Box::pin(async move {
            match health.wait_for(|h| h.failure().is_some()).await {
                Ok(h) => h.failure().unwrap_or_default(),
                Err(_) => "the transport was dropped".to_owned(),
            }
        });
        let (connection, channel, consumer) = consuming;
        Self {
            link,
            queue: queue.to_owned(),
            prefetch,
            resume_limit,
            acks: AckPath::start(channel.clone(), prefetch, &paths),
            paths,
            connection,
            channel,
            consumer,
            dead,
            resuming: None,
            ended: None,
            cancelled: false,
        }
    }

    /// Consumes again on a new channel, on the connection that is up (the one that replaced
    /// a lost connection). Pauses and tries again while the connection is coming back; ends
    /// with the reason when the queue is missing there (the service declares its topology
    /// again), once the connection is given up, or once consuming has kept failing for
    /// longer than the resume limit on one connection that is up (a broker that never
    /// answers: the service then subscribes anew, or fails, rather than look alive).
    fn resume(&self) -> BoxFuture<'static, Result<Consuming, String>> {
        let (link, queue, prefetch) = (self.link.clone(), self.queue.clone(), self.prefetch);
        let limit = self.resume_limit;
        // A failed channel still open would keep its consumer and hold up to the prefetch of
        // deliveries: close it, which hands them back to the queue.
        let failed = self.channel.clone();
        Box::pin(async move {
            close_channel(failed, CHANNEL_CLOSE_TIMEOUT).await;
            // The connection the attempts are made on, and since when.
            let mut trying: Option<(Arc<Connection>, tokio::time::Instant)> = None;
            loop {
                let connection = link.up().await?;
                let since = match &trying {
                    Some((on, since)) if Arc::ptr_eq(on, &connection) => *since,
                    _ => tokio::time::Instant::now(),
                };
                trying = Some((connection.clone(), since));
                let failure = match consume(&connection, &queue, prefetch, OPEN_TIMEOUT).await {
                    Ok((channel, consumer)) => return Ok((connection, channel, consumer)),
                    Err(NotConsuming::Failed(e))
                        if matches!(e.kind(), lapin::ErrorKind::ProtocolError(_)) =>
                    {
                        return Err(format!("consuming `{queue}` again was refused: {e}"));
                    }
                    Err(NotConsuming::Failed(e)) => {
                        tracing::warn!(%queue, error = %e, "consuming again failed");
                        e.to_string()
                    }
                    Err(NotConsuming::NoAnswer) => {
                        tracing::warn!(%queue, "consuming again got no answer in time");
                        "no answer in time".to_owned()
                    }
                };
                let failing = since.elapsed();
                if failing >= limit && connection.status().connected() {
                    return Err(format!(
                        "consuming `{queue}` again kept failing for {failing:.1?} on a connection that is up; last: {failure}"
                    ));
                }
                tokio::time::sleep(RESUME_PAUSE).await;
            }
        })
    }

    /// After the broker confirmed the cancel: puts back in the queue the deliveries that
    /// reached the client but were never returned by `poll_next` (all of them arrived before
    /// the `cancel-ok`), so that a subscription kept open for the settlements of its earlier
    /// deliveries holds none that nobody reads.
    fn requeue_held(&mut self) {
        let mut waker = Context::from_waker(std::task::Waker::noop());
        while let Poll::Ready(Some(Ok(delivery))) =
            Pin::new(&mut self.consumer).poll_next(&mut waker)
        {
            let ticket = self.acks.register(delivery.delivery_tag, &delivery.acker);
            if let Err(error) = ticket.hand_back() {
                tracing::debug!(queue = %self.queue, %error, "handing back a held delivery failed; it goes back when the channel closes");
            }
        }
    }

    fn end(&mut self, reason: String) -> Poll<Option<Incoming>> {
        tracing::error!(%reason, "subscription ended");
        self.ended = Some(reason);
        Poll::Ready(None)
    }
}

#[async_trait]
impl Subscription for AmqpSubscription {
    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Incoming>> {
        loop {
            if self.cancelled || self.ended.is_some() {
                return Poll::Ready(None);
            }
            if let Poll::Ready(reason) = self.dead.as_mut().poll(cx) {
                return self.end(reason);
            }
            if let Some(resuming) = &mut self.resuming {
                let resumed = ready!(resuming.as_mut().poll(cx));
                self.resuming = None;
                match resumed {
                    Ok((connection, channel, consumer)) => {
                        tracing::info!(queue = %self.queue, "consuming again");
                        // Deliveries of the old channel cannot be settled any more: the
                        // broker has put them back in the queue.
                        self.acks = AckPath::start(channel.clone(), self.prefetch, &self.paths);
                        self.connection = connection;
                        self.channel = channel;
                        self.consumer = consumer;
                    }
                    Err(reason) => return self.end(reason),
                }
            }
            match ready!(Pin::new(&mut self.consumer).poll_next(cx)) {
                None if self.connection.status().connected() => {
                    return self.end(
                        "the broker cancelled the consumer (queue deleted?) or the channel closed"
                            .to_owned(),
                    );
                }
                None => {
                    tracing::warn!(queue = %self.queue, "connection lost; consuming again once it is back");
                    self.resuming = Some(self.resume());
                }
                Some(Ok(mut delivery)) => {
                    let ticket = self.acks.register(delivery.delivery_tag, &delivery.acker);
                    let message = message(&mut delivery);
                    return Poll::Ready(Some(Incoming::with_settler(
                        message,
                        delivery.redelivered,
                        Settler::Amqp(AmqpAcker(Some(Settle::Coalesced(ticket)))),
                    )));
                }
                Some(Err(e)) => {
                    tracing::warn!(queue = %self.queue, error = %e, "consumer interrupted; consuming again");
                    self.resuming = Some(self.resume());
                }
            }
        }
    }

    fn end_reason(&self) -> Option<String> {
        self.ended.clone()
    }

    async fn cancel(&mut self) {
        // A consumer being opened again (after a lost connection) is given up with its
        // future: lapin closes the channel it opened, which puts back what it delivered.
        self.resuming = None;
        if !self.cancelled {
            self.cancelled = true;
            let tag = self.consumer.tag();
            let cancel = self
                .channel
                .basic_cancel(tag, BasicCancelOptions::default());
            match tokio::time::timeout(CANCEL_TIMEOUT, cancel).await {
                Ok(Ok(())) => self.requeue_held(),
                Ok(Err(e)) => tracing::debug!(error = %e, "basic.cancel failed"),
                Err(_) => tracing::warn!(
                    "basic.cancel got no answer within {CANCEL_TIMEOUT:?} (blocked connection?); \
                     unsettled deliveries go back to the queue when the channel closes"
                ),
            }
        }
    }
}
