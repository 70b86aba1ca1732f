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
