//! Removing bindings: all of a deleted queue's, or one ([`Transport::unbind`]).
//!
//! [`Transport::unbind`]: crate::transport::Transport::unbind

use std::sync::Arc;

use super::{ExchangeState, Inner, Queue, lock};
use crate::error::TopologyError;
use crate::routing::BindingPattern;

impl ExchangeState {
    /// Removes every binding of `queue`.
    pub(super) fn unbind_all(&mut self, queue: &Arc<Queue>) {
        self.unbind(queue, None);
    }

    /// Removes the bindings of `queue`: the one with `only`, or every one without it.
    fn unbind(&mut self, queue: &Arc<Queue>, only: Option<&BindingPattern>) {
        let chosen = |pattern: &BindingPattern| only.is_none_or(|only| only == pattern);
        let trie = &mut self.trie;
        self.bindings.retain(|(pattern, q)| {
            let bound = Arc::ptr_eq(q, queue) && chosen(pattern);
            if bound {
                trie.remove(pattern, |q| Arc::ptr_eq(q, queue));
            }
            !bound
        });
        self.by_pattern.retain(|pattern, queues| {
            if chosen(pattern) {
                queues.retain(|q| !Arc::ptr_eq(q, queue));
            }
            !queues.is_empty()
        });
    }
}

/// Removes the binding of `queue` to `exchange` with `pattern`. A binding, queue or exchange
/// that does not exist is no error: nothing is bound (the AMQP transport does the same).
pub(super) fn unbind(
    inner: &Inner,
    queue: &str,
    exchange: &str,
    pattern: &BindingPattern,
) -> Result<(), TopologyError> {
    let mut state = lock(&inner.state);
    let Some(target) = state.queues.get(queue).cloned() else {
        return Ok(());
    };
    if let Some(exchange) = state.exchanges.get_mut(exchange) {
        exchange.unbind(&target, Some(pattern));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::message::Message;
    use crate::transport::{InMemoryBroker, QueueSpec, Transport};

    use super::*;

    fn order(key: &'static str) -> Message {
        Message {
            exchange: "x".into(),
            routing_key: key.into(),
            body: Vec::from(&b"{}"[..]).into(),
            properties: Default::default(),
        }
    }

    /// Beyond the few bindings matched in turn, routing walks the trie: both must forget.
    #[tokio::test]
    async fn unbinding_removes_one_binding_of_one_queue() {
        for extra in [0, 20] {
            let broker = InMemoryBroker::new();
            broker.declare_exchange("x", true).await.unwrap();
            for queue in ["a", "b"] {
                broker
                    .declare_queue(&QueueSpec::durable(queue))
                    .await
                    .unwrap();
            }
            let submit = BindingPattern::parse("order.*.submit").unwrap();
            let all = BindingPattern::parse("order.#").unwrap();
            broker.bind("a", "x", &submit).await.unwrap();
            broker.bind("a", "x", &all).await.unwrap();
            broker.bind("b", "x", &submit).await.unwrap();
            for n in 0..extra {
                let other = BindingPattern::parse(&format!("other{n}.#")).unwrap();
                broker.bind("b", "x", &other).await.unwrap();
            }
            broker.unbind("a", "x", &submit).await.unwrap();
            broker.publish(order("order.v1.submit")).await.unwrap();
            assert_eq!(
                broker.queue_len("a").await.unwrap(),
                1,
                "still bound by order.#"
            );
            broker.unbind("a", "x", &all).await.unwrap();
            broker.publish(order("order.v1.submit")).await.unwrap();
            assert_eq!(broker.queue_len("a").await.unwrap(), 1, "unbound");
            assert_eq!(
                broker.queue_len("b").await.unwrap(),
                2,
                "b keeps its binding"
            );
            // Nothing to unbind is fine: a binding, a queue or an exchange that is missing.
            broker.unbind("a", "x", &all).await.unwrap();
            broker.unbind("nope", "x", &all).await.unwrap();
            broker.unbind("a", "nope", &all).await.unwrap();
            broker.unbind("b", "x", &submit).await.unwrap();
            let unrouted = broker.publish(order("order.v1.submit")).await;
            assert!(unrouted.is_err(), "{unrouted:?}");
        }
    }
}
