//! How the queues a service owns beside its own are named: wait queues, the retried queue,
//! the dead-letter queue. (The namespace prefix is the bus's: `Bus::queue_name`.)

use std::time::Duration;

/// The wait queue of the service queue `queue` for `delay`: `<queue>.wait.<ms>ms`.
pub(crate) fn wait_queue(queue: &str, delay: Duration) -> String {
    format!("{queue}.wait.{}ms", delay.as_millis())
}

/// The queue wait queues hand retries back to, consumed beside `queue`: `<queue>.retried`.
pub(crate) fn retried_queue(queue: &str) -> String {
    format!("{queue}.retried")
}

/// The dead-letter queue of the service queue `queue`: `<queue>.dlq`.
pub(crate) fn dead_letter_queue(queue: &str) -> String {
    format!("{queue}.dlq")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_of_a_namespaced_service() {
        let queue = "t1.billing_order";
        assert_eq!(
            wait_queue(queue, Duration::from_secs(5)),
            "t1.billing_order.wait.5000ms"
        );
        assert_eq!(retried_queue(queue), "t1.billing_order.retried");
        assert_eq!(dead_letter_queue(queue), "t1.billing_order.dlq");
    }
}
