//! Consuming from a queue: deliveries, their settlement, and the end of a subscription.
//!
//! While lapin recovers a lost connection the consumer stream pauses, or yields an error and
//! is resumed once the channel recovered. The subscription ends, for good, when the queue is
//! gone (the broker cancelled the consumer), when the channel cannot recover, or when the
//! connection watchdog gives the connection up; [`Subscription::end_reason`] says which.
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
use lapin::Channel;
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicCancelOptions, BasicRejectOptions};
use tokio::sync::watch;

use super::acks::{AckPath, Ticket};
use super::connect::Health;
use super::convert::from_amqp;
use crate::error::ConsumeError;
use crate::message::Message;
use crate::transport::{Incoming, Settler, Subscription};

/// How long `basic.cancel` may take (it cannot leave while the connection is blocked).
const CANCEL_TIMEOUT: Duration = Duration::from_secs(5);

fn message(delivery: &mut Delivery) -> Arc<Message> {
    Arc::new(Message {
        exchange: delivery.exchange.as_str().to_owned().into(),
        routing_key: delivery.routing_key.as_str().to_owned().into(),
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
        Settler::Amqp(AmqpAcker::Single(delivery.acker)),
    )
}

/// Settles one delivery on its channel.
pub(crate) enum AmqpAcker {
    /// A `basic.get` delivery: settled on its own through lapin.
    Single(lapin::Acker),
    /// A consumer's delivery: settled through its channel's ordered [`AckPath`].
    Coalesced(Ticket),
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
    pub(crate) async fn ack(self) -> Result<(), ConsumeError> {
        match self {
            Self::Single(acker) => settle_result(acker.ack(BasicAckOptions::default()).await),
            Self::Coalesced(ticket) => ticket.ack(),
        }
    }

    /// Rejects the delivery, requeueing it or not.
    pub(crate) async fn reject(self, requeue: bool) -> Result<(), ConsumeError> {
        match self {
            Self::Single(acker) => {
                settle_result(acker.reject(BasicRejectOptions { requeue }).await)
            }
            Self::Coalesced(ticket) => ticket.reject(requeue),
        }
    }
}

pub(super) struct AmqpSubscription {
    channel: Channel,
    consumer: lapin::Consumer,
    /// Where the deliveries are settled.
    acks: Arc<AckPath>,
    /// Resolves with the reason once the watchdog gives the connection up.
    dead: BoxFuture<'static, String>,
    /// Waiting for the channel to recover after the consumer was interrupted.
    recovering: Option<BoxFuture<'static, Result<(), String>>>,
    ended: Option<String>,
    cancelled: bool,
}

impl AmqpSubscription {
    pub(super) fn new(
        channel: Channel,
        consumer: lapin::Consumer,
        prefetch: u16,
        mut health: watch::Receiver<Health>,
    ) -> Self {
        let dead = Box::pin(async move {
            match health.wait_for(|h| h.failure().is_some()).await {
                Ok(h) => h.failure().unwrap_or_default(),
                Err(_) => "the transport was dropped".to_owned(),
            }
        });
        Self {
            acks: AckPath::start(channel.clone(), prefetch),
            channel,
            consumer,
            dead,
            recovering: None,
            ended: None,
            cancelled: false,
        }
    }

    /// Waits for the channel to recover from `error`: as long as the connection is being
    /// re-established (the watchdog ends the wait when it gives up).
    fn recover(&self, error: lapin::Error) -> BoxFuture<'static, Result<(), String>> {
        let channel = self.channel.clone();
        Box::pin(async move {
            channel
                .wait_for_recovery(error)
                .await
                .map_err(|e| format!("the consumer's channel cannot recover: {e}"))
        })
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
            if let Some(recovering) = &mut self.recovering {
                let recovered = ready!(recovering.as_mut().poll(cx));
                self.recovering = None;
                if let Err(reason) = recovered {
                    return self.end(reason);
                }
            }
            match ready!(Pin::new(&mut self.consumer).poll_next(cx)) {
                None => {
                    return self.end(
                        "the broker cancelled the consumer (queue deleted?) or the channel closed"
                            .to_owned(),
                    );
                }
                Some(Ok(mut delivery)) => {
                    let ticket = self.acks.register(delivery.delivery_tag, &delivery.acker);
                    let message = message(&mut delivery);
                    return Poll::Ready(Some(Incoming::with_settler(
                        message,
                        delivery.redelivered,
                        Settler::Amqp(AmqpAcker::Coalesced(ticket)),
                    )));
                }
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "consumer interrupted; waiting for recovery");
                    self.recovering = Some(self.recover(e));
                }
            }
        }
    }

    fn end_reason(&self) -> Option<String> {
        self.ended.clone()
    }

    async fn cancel(&mut self) {
        if !self.cancelled {
            self.cancelled = true;
            let tag = self.consumer.tag();
            let cancel = self
                .channel
                .basic_cancel(tag, BasicCancelOptions::default());
            match tokio::time::timeout(CANCEL_TIMEOUT, cancel).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::debug!(error = %e, "basic.cancel failed"),
                Err(_) => tracing::warn!(
                    "basic.cancel got no answer within {CANCEL_TIMEOUT:?} (blocked connection?); \
                     unsettled deliveries go back to the queue when the channel closes"
                ),
            }
        }
    }
}
