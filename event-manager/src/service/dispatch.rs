//! One message: its checks, its callbacks and the outcome they give.

use std::sync::Arc;
use std::time::Instant;

use futures_util::future::join_all;
use tracing::Instrument;

use super::handler::{Delivery, combine, guarded};
use super::outcome;
use super::runner::Shared;
use crate::envelope::{self, DeadLetterKind};
use crate::message::Message;
use crate::routing::EventKey;
use crate::transport::Incoming;

/// How one message ends.
pub(super) enum Outcome {
    Handled,
    Retry(String),
    DeadLetter(DeadLetterKind, String),
}

/// Handles one delivery from start to settlement.
pub(super) async fn handle(shared: &Shared, incoming: Incoming) {
    let message = incoming.message.clone();
    let span = crate::telemetry::trace::process_span(shared.topology.queue(), &message);
    async move {
        let _in_flight = shared.in_flight.enter();
        let started = Instant::now();
        shared.status.delivered(started);
        let (outcome, attempts, event) =
            run_callbacks(shared, &message, incoming.redelivered).await;
        // Counted under the event's routing key (a retry arrives from its wait queue under
        // another one), or under the key it carried when no callback takes it.
        let key = event.unwrap_or(&message.routing_key);
        let metrics = shared.metrics(key);
        metrics.consumed();
        let failure = match &outcome {
            Outcome::Handled => None,
            Outcome::Retry(reason) => Some((DeadLetterKind::HandlerFailed, reason)),
            Outcome::DeadLetter(kind, reason) => Some((*kind, reason)),
        };
        if let Some((kind, reason)) = failure {
            crate::telemetry::trace::record_failure(kind.as_str());
            shared.status.error(format!("`{key}`: {reason}"));
        }
        if let Some(settled) = outcome::apply(shared, incoming, &message, outcome, attempts).await {
            metrics.settled(settled, started.elapsed());
        }
    }
    .instrument(span)
    .await;
}

/// Runs the callbacks for `message`; returns the outcome, the attempt number and the routing
/// key of the event when a callback of the service takes it.
///
/// Every callback registered for the routing key runs to completion, even when another one
/// failed: the outcome is the first error, permanent when any error is permanent.
async fn run_callbacks(
    shared: &Shared,
    message: &Arc<Message>,
    redelivered: bool,
) -> (Outcome, u32, Option<&'static str>) {
    if message.body.len() > shared.max_body_bytes {
        let reason = format!(
            "body of {} bytes exceeds the limit of {} bytes",
            message.body.len(),
            shared.max_body_bytes
        );
        return (
            Outcome::DeadLetter(DeadLetterKind::TooLarge, reason),
            1,
            None,
        );
    }
    let received = match envelope::read(message) {
        Ok(r) => r,
        Err(e) => {
            let kind = match e {
                envelope::EnvelopeError::Body(_) => DeadLetterKind::Undecodable,
                _ => DeadLetterKind::BadEnvelope,
            };
            return (Outcome::DeadLetter(kind, e.to_string()), 1, None);
        }
    };
    let attempt = received.attempts.saturating_add(1);
    if let Some(preferred) = preferred_copy(shared, &received)
        && preferred != received.routing_key
    {
        tracing::debug!(%preferred, "another major of this event is handled instead; skipping this copy");
        return (Outcome::Handled, attempt, None);
    }
    let Some((&event, route)) = shared.routes.get_key_value(received.routing_key) else {
        let (kind, reason) = no_route_reason(shared, received.routing_key);
        return (Outcome::DeadLetter(kind, reason), attempt, None);
    };
    let delivery = Delivery {
        message: message.clone(),
        version: received.version,
        attempt,
        redelivered,
    };
    let result = match route.handlers.as_slice() {
        [only] => match only(&received.payload, delivery) {
            Ok(f) => guarded(f).await,
            Err((kind, reason)) => {
                return (Outcome::DeadLetter(kind, reason), attempt, Some(event));
            }
        },
        handlers => {
            let mut futures = Vec::with_capacity(handlers.len());
            for handler in handlers {
                match handler(&received.payload, delivery.clone()) {
                    Ok(f) => futures.push(guarded(f)),
                    Err((kind, reason)) => {
                        return (Outcome::DeadLetter(kind, reason), attempt, Some(event));
                    }
                }
            }
            combine(join_all(futures).await)
        }
    };
    let outcome = match result {
        Ok(()) => Outcome::Handled,
        Err(e) if e.is_permanent() => Outcome::DeadLetter(
            DeadLetterKind::PermanentError,
            format!("permanent error: {e}"),
        ),
        Err(e) => Outcome::Retry(e.to_string()),
    };
    (outcome, attempt, Some(event))
}

/// For an event published in several majors at once: the copy this service handles, the one
/// with the highest major among those it has callbacks for.
fn preferred_copy<'m>(shared: &Shared, received: &envelope::Received<'m>) -> Option<&'m str> {
    envelope::copies(received.published_as?)
        .filter(|key| shared.routes.contains_key(key))
        .max_by_key(|key| EventKey::parse(key).map(|k| k.major()))
}

fn no_route_reason(shared: &Shared, key: &str) -> (DeadLetterKind, String) {
    if let Some(event) = EventKey::parse(key) {
        let accepted: Vec<&str> = shared
            .routes
            .keys()
            .copied()
            .filter(|k| EventKey::parse(k).is_some_and(|k| k.same_event(&event)))
            .collect();
        if !accepted.is_empty() {
            return (
                DeadLetterKind::UnsupportedVersion,
                format!(
                    "unsupported version: `{key}` has no callback in this service, which accepts {}",
                    accepted.join(", ")
                ),
            );
        }
    }
    (
        DeadLetterKind::NoCallback,
        format!("no callback for routing key `{key}`"),
    )
}
