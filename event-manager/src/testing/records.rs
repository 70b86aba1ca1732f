//! What a [`Harness`](super::Harness) recorded: publishes ([`Sent`], typed as [`Recorded`]),
//! retries ([`Retry`]), and the faults it injects ([`PublishFault`]).

use std::sync::Arc;
use std::time::Duration;

use crate::envelope;
use crate::error::PublishError;
use crate::message::{Headers, Message};

/// A fault injected into the next publishes with
/// [`Harness::fail_next_publishes`](super::Harness::fail_next_publishes) or
/// [`Harness::fail_next_forwards`](super::Harness::fail_next_forwards). The message is not
/// routed to any queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PublishFault {
    /// The broker refuses the message: the publish fails with [`PublishError::Nacked`], as
    /// when a full queue with `x-overflow: reject-publish` refuses it.
    Nack,
    /// No queue takes the message: the publish fails with [`PublishError::Unroutable`], as
    /// when its consumers' queues are not bound yet.
    Unroutable,
}

impl PublishFault {
    /// The error a publish of `routing_key` to `exchange` fails with.
    pub(super) fn error(self, exchange: &str, routing_key: &str) -> PublishError {
        let (exchange, routing_key) = (exchange.to_owned(), routing_key.to_owned());
        match self {
            Self::Nack => PublishError::Nacked {
                exchange,
                routing_key,
            },
            Self::Unroutable => PublishError::Unroutable {
                exchange,
                routing_key,
            },
        }
    }
}

/// What became of one publish.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PublishOutcome {
    /// The broker confirmed it and at least one queue took it.
    Routed,
    /// No queue is bound to take it ([`PublishError::Unroutable`]). The bus reports it as an
    /// error, or lets it through under an [`Unroutable`](crate::Unroutable) policy.
    Unroutable,
    /// A fault injected by the harness refused it: no queue got it.
    Injected(PublishFault),
    /// It failed otherwise (e.g. its exchange does not exist); the error's text.
    Failed(String),
}

impl PublishOutcome {
    /// Whether the broker received the message: [`PublishOutcome::Routed`] or
    /// [`PublishOutcome::Unroutable`].
    pub fn reached_broker(&self) -> bool {
        matches!(self, Self::Routed | Self::Unroutable)
    }
}

/// One publish through the harness, as the broker saw it: events, and the crate's own moves
/// to wait and dead-letter queues (published to the default exchange `""`). See
/// [`Harness::sent`](super::Harness::sent).
#[derive(Debug, Clone)]
pub struct Sent {
    /// The whole message.
    pub message: Arc<Message>,
    /// What became of it.
    pub outcome: PublishOutcome,
}

/// One publish of an event, with its payload decoded: see
/// [`Harness::published_messages`](super::Harness::published_messages).
#[derive(Debug, Clone)]
pub struct Recorded<T> {
    /// The payload, decoded from the JSON body.
    pub payload: T,
    /// The whole message: properties and headers as published.
    pub message: Arc<Message>,
    /// What became of it: [`PublishOutcome::Routed`] or [`PublishOutcome::Unroutable`].
    pub outcome: PublishOutcome,
}

impl<T> Recorded<T> {
    /// The message id, the one [`Published::message_id`](crate::Published::message_id)
    /// returned to the publisher.
    pub fn message_id(&self) -> Option<&str> {
        self.message.properties.message_id.as_deref()
    }

    /// The application headers (`event-version`, `cloudEvents_*`, `traceparent`, …).
    pub fn headers(&self) -> &Headers {
        &self.message.properties.headers
    }

    /// The routing key (`order.v1.submit`).
    pub fn routing_key(&self) -> &str {
        &self.message.routing_key
    }

    /// The exchange, with the namespace of the bus that published it, if any.
    pub fn exchange(&self) -> &str {
        &self.message.exchange
    }

    /// The publishing service (AMQP `app_id`, [`Bus::with_app_id`](crate::Bus::with_app_id)).
    pub fn app_id(&self) -> Option<&str> {
        self.message.properties.app_id.as_deref()
    }

    /// The correlation id, when the publisher gave one.
    pub fn correlation_id(&self) -> Option<&str> {
        self.message.properties.correlation_id.as_deref()
    }

    /// Whether a queue took it.
    pub fn routed(&self) -> bool {
        self.outcome == PublishOutcome::Routed
    }
}

/// A failed message parked in a wait queue by its service, to be tried again after a delay:
/// see [`Harness::retries`](super::Harness::retries).
#[derive(Debug, Clone)]
pub struct Retry {
    pub(super) message: Arc<Message>,
    pub(super) delay: Duration,
}

impl Retry {
    /// The message as parked in the wait queue.
    pub fn message(&self) -> &Message {
        &self.message
    }

    /// The message id, the same on every attempt.
    pub fn message_id(&self) -> Option<&str> {
        self.message.properties.message_id.as_deref()
    }

    /// How many attempts failed before this retry: 1 for the first retry.
    pub fn attempts(&self) -> u32 {
        envelope::our_header(&self.message.properties.headers, envelope::ATTEMPTS_HEADER)
            .and_then(|value| value.as_int())
            .map_or(0, |n| u32::try_from(n.max(0)).unwrap_or(u32::MAX))
    }

    /// How long it waits before the next attempt.
    pub fn delay(&self) -> Duration {
        self.delay
    }

    /// The wait queue (`<queue>.wait.<ms>ms`).
    pub fn wait_queue(&self) -> &str {
        &self.message.routing_key
    }

    /// The routing key the event was first published with.
    pub fn routing_key(&self) -> &str {
        envelope::original_routing_key(&self.message)
    }

    /// The payload, decoded as `T`.
    pub fn decode<T: serde::de::DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        envelope::from_json(&self.message.body)
    }
}
