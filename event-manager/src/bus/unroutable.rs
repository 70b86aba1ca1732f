//! [`Unroutable`]: what a publish does when no queue is bound to receive its event.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::contract::EventContract;
use crate::error::PublishError;

/// What a publish does when no queue is bound to receive the event (the broker returned it).
///
/// Events are facts: a team often rolls out a new event before any consumer exists. For
/// such an event, [`Unroutable::Log`] (or [`Unroutable::Ignore`]) lets the publish succeed,
/// with [`Published::routed`](crate::Published::routed) `false`, instead of failing, which
/// inside a callback would retry, then dead-letter the message being handled. Keep
/// [`Unroutable::Error`], the default, for events that must reach someone (a command, a
/// payment to settle).
///
/// Set it per event on a bus ([`Bus::with_unroutable`](crate::Bus::with_unroutable)) or per
/// publish ([`PublishOptions::unroutable`](crate::PublishOptions::unroutable)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Unroutable {
    /// Fail the publish with [`PublishError::Unroutable`] (the default).
    #[default]
    Error,
    /// Succeed, log a warning, and count it ([`Bus::unroutable_count`](crate::Bus::unroutable_count)).
    Log,
    /// Succeed, and count it.
    Ignore,
}

/// The unroutable policies of a bus and the count of unroutable publishes it let through.
#[derive(Debug, Clone, Default)]
pub(crate) struct Policies {
    by_key: Arc<Vec<(&'static str, Unroutable)>>,
    count: Arc<AtomicU64>,
}

impl Policies {
    /// These policies with `policy` for `routing_key`.
    pub(crate) fn with(&self, routing_key: &'static str, policy: Unroutable) -> Self {
        let mut by_key: Vec<_> = self
            .by_key
            .iter()
            .filter(|(key, _)| *key != routing_key)
            .copied()
            .collect();
        by_key.push((routing_key, policy));
        Self {
            by_key: Arc::new(by_key),
            count: self.count.clone(),
        }
    }

    /// The policy of one publish of `contract`.
    pub(crate) fn of(&self, contract: &EventContract, chosen: Option<Unroutable>) -> Unroutable {
        chosen.unwrap_or_else(|| self.for_key(contract.routing_key(), Unroutable::Error))
    }

    /// The policy set for events published with `routing_key`, else `fallback`.
    pub(crate) fn for_key(&self, routing_key: &str, fallback: Unroutable) -> Unroutable {
        self.by_key
            .iter()
            .find(|(key, _)| *key == routing_key)
            .map_or(fallback, |(_, policy)| *policy)
    }

    /// Applies `policy` to the outcome of a publish: `Ok(true)` routed, `Ok(false)`
    /// unroutable and let through, or the error.
    pub(crate) fn apply(
        &self,
        policy: Unroutable,
        result: Result<(), PublishError>,
    ) -> Result<bool, PublishError> {
        match (result, policy) {
            (Ok(()), _) => Ok(true),
            (Err(error @ PublishError::Unroutable { .. }), Unroutable::Log) => {
                self.count.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(%error, "published, but no queue is bound for it yet");
                Ok(false)
            }
            (Err(PublishError::Unroutable { .. }), Unroutable::Ignore) => {
                self.count.fetch_add(1, Ordering::Relaxed);
                Ok(false)
            }
            (Err(error), _) => Err(error),
        }
    }

    /// How many publishes were let through unroutable.
    pub(crate) fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }
}
