//! The outcome of a handled message, applied: acknowledge it, or first move it to a wait queue
//! (retry) or to the dead-letter queue, and acknowledge it only once the broker confirmed the move.
//!
//! A move that fails never loses the message and never turns into a hot loop:
//!
//! * the target queue is missing (deleted from outside): the service's topology is declared
//!   again and the move retried at once;
//! * the headers no longer fit in one AMQP frame (the message arrived close to the broker's
//!   frame limit and the forwarding headers pushed it over): the largest headers that are
//!   not part of the wire contract are left out, named in `dropped-headers`, and the move
//!   retried;
//! * any other failure (a negative confirm, e.g. from a full dead-letter queue with
//!   `x-overflow: reject-publish`; a confirm timeout; a lost connection): the delivery stays
//!   unacknowledged and the move is retried in-process after 1 s, 2 s, 4 s … (at most 30 s
//!   apart), logged at error level from the third failure on, until it succeeds or the service
//!   stops taking messages; the delivery then goes back to its queue (`reject` with requeue).

use std::time::Duration;

use super::dispatch::Outcome;
use super::runner::Shared;
use crate::envelope::{self, DeadLetterKind};
use crate::error::{ConsumeError, PublishError, TopologyError};
use crate::message::Message;
use crate::telemetry::metrics::Settled;
use crate::transport::Incoming;

/// The first pause after a failed move; it doubles with each further failure.
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// The longest pause between two tries of a move.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// From this many failed tries of one move on, each failure is logged at error level.
const LOUD_AFTER: u32 = 3;

/// Applies the `outcome` of handling `incoming`: acknowledges it, or moves it to a wait or
/// dead-letter queue and acknowledges it once the broker confirmed the move. Returns how it
/// ended, or `None` when it went back to the queue (the service stopped before the move).
pub(super) async fn apply(
    shared: &Shared,
    incoming: Incoming,
    message: &Message,
    outcome: Outcome,
    attempt: u32,
) -> Option<Settled> {
    let (forward, settled) = match outcome {
        Outcome::Handled => (None, Settled::Handled),
        Outcome::Retry(reason) => match shared.retry.delay_before(attempt.saturating_add(1)) {
            Some(delay) => {
                tracing::info!(attempt, ?delay, %reason, "callback failed; will retry");
                let wait = shared.topology.wait_queue(delay);
                (
                    Some(envelope::to_retry(message, &wait, attempt)),
                    Settled::Retried,
                )
            }
            None => {
                let reason = format!("gave up after {attempt} attempt(s): {reason}");
                tracing::warn!(%reason, "dead-lettering");
                let kind = DeadLetterKind::HandlerFailed;
                (
                    Some(dead_letter(shared, message, attempt, kind, &reason)),
                    Settled::DeadLettered(kind.as_str()),
                )
            }
        },
        Outcome::DeadLetter(kind, reason) => {
            tracing::warn!(%kind, %reason, "dead-lettering");
            (
                Some(dead_letter(shared, message, attempt, kind, &reason)),
                Settled::DeadLettered(kind.as_str()),
            )
        }
    };
    if let Some(forward) = forward
        && !move_message(shared, forward).await
    {
        // The service stops taking messages: back to the queue, for this or another consumer.
        if let Err(error) = incoming.reject(true).await {
            tracing::warn!(%error, "requeue failed; the broker will deliver the message again");
        }
        return None;
    }
    if let Err(error) = incoming.ack().await {
        tracing::warn!(%error, "ack failed; the broker will deliver the message again");
    }
    Some(settled)
}

fn dead_letter(
    shared: &Shared,
    message: &Message,
    attempts: u32,
    kind: DeadLetterKind,
    reason: &str,
) -> Message {
    envelope::to_dead_letter(
        message,
        shared.topology.dead_letter_queue(),
        shared.topology.queue(),
        attempts,
        kind,
        reason,
    )
}

/// Publishes `forward` (addressed to a wait or dead-letter queue through the default
/// exchange) until the broker confirmed it. Returns `false`, with the message not moved, once
/// the service stops taking messages (shutdown, or its subscription ended: its deliveries can
/// then no longer be settled).
async fn move_message(shared: &Shared, mut forward: Message) -> bool {
    let mut closing = shared.closing.clone();
    let mut failures: u32 = 0;
    let mut redeclared = false;
    loop {
        let error = match shared.topology.forward(forward.clone()).await {
            Ok(()) => return true,
            Err(error) => error,
        };
        if let PublishError::HeadersTooLarge { size, limit, .. } = &error
            && envelope::shrink_headers(&mut forward, size.saturating_sub(*limit))
        {
            tracing::warn!(%error, "leaving out the largest foreign headers to move the message");
            continue;
        }
        if target_missing(&error) && !redeclared {
            redeclared = true;
            tracing::warn!(%error, target = %forward.routing_key, "the target queue is missing; declaring the service's topology again");
            match shared.redeclare().await {
                Ok(()) => continue,
                Err(error) => tracing::warn!(%error, "declaring the topology again failed"),
            }
        }
        if let Some(reason) = shared.topology.bus().transport().failure() {
            // The transport gave up for good: no try will ever move the message. Stop
            // holding it (it goes back to the queue with the connection), so that the
            // service sees its subscription end and fails, instead of waiting for ever.
            tracing::error!(%reason, target = %forward.routing_key, "the transport gave up; the message is not moved");
            return false;
        }
        failures = failures.saturating_add(1);
        let pause = backoff(failures);
        log_failure(shared, &forward, error, failures, pause);
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            _ = closing.wait_for(|closing| *closing) => return false,
        }
        redeclared = false;
    }
}

fn log_failure(
    shared: &Shared,
    forward: &Message,
    source: PublishError,
    failures: u32,
    pause: Duration,
) {
    let id = forward
        .properties
        .message_id
        .as_deref()
        .unwrap_or("(no id)");
    let target = &forward.routing_key;
    let error = ConsumeError::Forward {
        queue: shared.topology.queue().to_owned(),
        source: Box::new(source),
    };
    if failures >= LOUD_AFTER {
        tracing::error!(%error, failures, retry_in = ?pause, "cannot move message {id} to {target}; holding it unacknowledged");
    } else {
        tracing::warn!(%error, failures, retry_in = ?pause, "cannot move message {id} to {target}; retrying");
    }
}

/// Whether a forward failed because its target queue does not exist.
fn target_missing(error: &PublishError) -> bool {
    match error {
        PublishError::Unroutable { exchange, .. } => exchange.is_empty(),
        PublishError::Topology(TopologyError::NotFound { .. }) => true,
        _ => false,
    }
}

/// The pause after the `failures`-th failed try: 1 s, 2 s, 4 s … at most 30 s.
fn backoff(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(16);
    FIRST_BACKOFF
        .saturating_mul(1 << doublings)
        .min(MAX_BACKOFF)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_30_seconds() {
        let pauses: Vec<u64> = (1..=8).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(pauses, [1, 2, 4, 8, 16, 30, 30, 30]);
        assert_eq!(backoff(u32::MAX), MAX_BACKOFF);
    }

    #[test]
    fn only_a_missing_queue_counts_as_missing() {
        let unroutable = |exchange: &str| PublishError::Unroutable {
            exchange: exchange.into(),
            routing_key: "billing.dlq".into(),
        };
        assert!(target_missing(&unroutable("")));
        assert!(!target_missing(&unroutable("order")));
        assert!(target_missing(&PublishError::Topology(
            TopologyError::NotFound {
                entity: crate::error::Entity::Queue("billing.dlq".into())
            }
        )));
        assert!(!target_missing(&PublishError::Nacked {
            exchange: String::new(),
            routing_key: "billing.dlq".into(),
        }));
    }
}
