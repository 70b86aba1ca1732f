//! Moving dead letters back to their service queue once the cause is fixed.

use super::retry::{RetryPolicy, dead_letter_queue_name, retried_queue_name, wait_queue_name};
use crate::bus::Bus;
use crate::envelope;
use crate::error::{ConsumeError, TopologyError};

/// Deletes the queues of the service named `queue` (as given to [`Bus::service`]; on a
/// namespaced bus the queues carry the namespace): the queue itself, its retry and dead-letter
/// queues and the wait queues of `policy`, with the messages they hold. For tests, examples and
/// decommissioning a service.
pub async fn delete_service_queues(
    bus: &Bus,
    queue: &str,
    policy: &RetryPolicy,
) -> Result<(), TopologyError> {
    let transport = bus.transport();
    let queue = bus.queue_name(queue);
    for delay in policy.distinct_delays() {
        transport
            .delete_queue(&wait_queue_name(&queue, delay))
            .await?;
    }
    transport.delete_queue(&retried_queue_name(&queue)).await?;
    transport
        .delete_queue(&dead_letter_queue_name(&queue))
        .await?;
    transport.delete_queue(&queue).await
}

/// Moves dead letters of the service named `queue` (as given to [`Bus::service`]) from its
/// dead-letter queue back to its queue, each with a fresh set of attempts, and returns how
/// many were moved. Each one is removed from the dead-letter queue only after the broker
/// confirmed its re-publication.
///
/// Only the messages in the dead-letter queue when the replay starts are moved, at most
/// `limit` of them: a replayed message that fails again and comes back to the dead-letter
/// queue while the replay runs is not replayed a second time, so the replay ends even when
/// the cause of the failures is not fixed.
pub async fn replay_dead_letters(
    bus: &Bus,
    queue: &str,
    limit: usize,
) -> Result<usize, ConsumeError> {
    let transport = bus.transport();
    let queue = bus.queue_name(queue);
    let dlq = dead_letter_queue_name(&queue);
    let waiting = transport.queue_len(&dlq).await?;
    let budget = usize::try_from(waiting).map_or(limit, |waiting| waiting.min(limit));
    let mut moved = 0;
    while moved < budget {
        let Some(incoming) = transport.get(&dlq).await? else {
            break;
        };
        let replay = envelope::to_replay(&incoming.message, &queue);
        if let Err(source) = transport.publish(replay).await {
            let _ = incoming.reject(true).await;
            return Err(ConsumeError::Forward {
                queue,
                source: Box::new(source),
            });
        }
        incoming.ack().await?;
        moved += 1;
    }
    Ok(moved)
}
