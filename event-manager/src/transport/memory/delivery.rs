//! Deliveries of the in-memory broker: their settlement ([`MemoryAcker`]) and a consumer's
//! stream of them ([`MemorySubscription`]).

use super::*;

/// Settles one delivery of the in-memory broker; a delivery dropped unsettled is requeued.
pub(crate) struct MemoryAcker {
    queue: Arc<Queue>,
    /// The consumer it was handed to ([`GETTER`] for `basic.get`).
    consumer: u64,
    /// The delivery, until it is settled.
    delivery: Option<Ready>,
}

impl MemoryAcker {
    pub(super) fn new(queue: Arc<Queue>, consumer: u64, delivery: Ready) -> Self {
        Self {
            queue,
            consumer,
            delivery: Some(delivery),
        }
    }

    fn settle(&mut self, outcome: Settle) {
        if let Some(delivery) = self.delivery.take() {
            self.queue.settle(self.consumer, delivery, outcome);
        }
    }

    /// Acknowledges the delivery; the broker forgets it.
    pub(crate) fn ack(mut self) -> Result<(), ConsumeError> {
        self.settle(Settle::Ack);
        Ok(())
    }

    /// Rejects the delivery, requeueing it or dead-lettering it by the queue's policy.
    pub(crate) fn reject(mut self, requeue: bool) -> Result<(), ConsumeError> {
        self.settle(if requeue {
            Settle::Requeue
        } else {
            Settle::Reject
        });
        Ok(())
    }
}

impl Drop for MemoryAcker {
    fn drop(&mut self) {
        // Never lose a delivery that nobody settled.
        self.settle(Settle::Requeue);
    }
}

pub(super) struct MemorySubscription {
    pub(super) queue: Arc<Queue>,
    pub(super) consumer: u64,
    /// Taken from the consumer's deliveries in one go, returned one by one.
    pub(super) taken: VecDeque<Delivery>,
    pub(super) cancelled: bool,
}

impl MemorySubscription {
    pub(super) fn cancel_now(&mut self) {
        if !self.cancelled {
            self.cancelled = true;
            let mut unreturned = self.queue.remove_consumer(self.consumer);
            unreturned.extend(self.taken.drain(..));
            // Handed to this consumer but never returned by `next`: back to the queue.
            for delivery in unreturned {
                self.queue.settle(self.consumer, delivery, Settle::Requeue);
            }
        }
    }
}

impl Drop for MemorySubscription {
    fn drop(&mut self) {
        self.cancel_now();
    }
}

#[async_trait]
impl Subscription for MemorySubscription {
    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Incoming>> {
        if self.cancelled {
            return Poll::Ready(None);
        }
        if self.taken.is_empty()
            && self
                .queue
                .take_handed(self.consumer, &mut self.taken, cx.waker())
                .is_none()
        {
            // The queue was deleted.
            return Poll::Ready(None);
        }
        match self.taken.pop_front() {
            Some(delivery) => Poll::Ready(Some(Incoming::with_settler(
                delivery.message.clone(),
                delivery.returns > 0,
                Settler::Memory(MemoryAcker::new(
                    self.queue.clone(),
                    self.consumer,
                    delivery,
                )),
            ))),
            None => Poll::Pending,
        }
    }

    async fn cancel(&mut self) {
        self.cancel_now();
    }
}
