//! [`VersionedPublish`]: one event published in several majors at once, for a migration.

use std::borrow::Cow;

use tracing::Instrument;

use super::{Bus, Published, exchange_missing};
use crate::contract::{Event, EventDef};
use crate::envelope;
use crate::error::PublishError;
use crate::telemetry::trace;

/// A publish of one event in several major versions, built by [`Bus::publish_versions`].
#[derive(Debug)]
pub struct VersionedPublish<'b> {
    bus: &'b Bus,
    copies: Vec<(crate::contract::EventContract, crate::message::Message)>,
}

impl<'b> VersionedPublish<'b> {
    pub(super) fn new(bus: &'b Bus) -> Self {
        Self {
            bus,
            copies: Vec::new(),
        }
    }

    /// Adds the copy of the event as `event`.
    pub fn version<T: Event>(
        mut self,
        event: EventDef<T>,
        payload: &T,
    ) -> Result<Self, PublishError> {
        let contract = *event.contract();
        let mut message = envelope::encode_with(&contract, payload, &self.bus.origin())?;
        message.exchange = Cow::Owned(self.bus.exchange_name(contract.exchange()));
        self.copies.push((contract, message));
        Ok(self)
    }

    /// Publishes every copy at once and returns when the broker confirmed all of them. On an
    /// error some copies may have been published: sending again re-sends all of them with a
    /// new message id unless the caller passes the same payloads, so handlers should be
    /// idempotent (at-least-once). A copy whose exchange was deleted behind the bus's back is
    /// sent once more after the exchange is declared again, as [`Bus::publish`] does. A copy
    /// nobody is bound for follows its event's [`Unroutable`](crate::Unroutable) policy on
    /// the bus.
    pub async fn send(self) -> Result<Vec<Published>, PublishError> {
        let (contracts, mut messages): (Vec<_>, Vec<_>) = self.copies.into_iter().unzip();
        envelope::link_copies(&mut messages);
        // A publish span per copy, whose trace context the copy carries.
        let spans: Vec<tracing::Span> = contracts
            .iter()
            .zip(&mut messages)
            .map(|(contract, message)| {
                let span = trace::producer_span(
                    trace::Produce::Send,
                    trace::Destination {
                        namespace: self.bus.inner.namespace.as_deref(),
                        name: contract.exchange().name(),
                    },
                    contract,
                );
                trace::record_message_id(&span, message.properties.message_id.as_deref());
                trace::TraceHeaders::of(&span).insert_into(&mut message.properties.headers);
                span
            })
            .collect();
        for contract in &contracts {
            self.bus.declare_exchange(contract.exchange()).await?;
        }
        let mut published: Vec<Published> = contracts
            .iter()
            .zip(&messages)
            .map(|(c, m)| Published {
                message_id: m.properties.message_id.clone().unwrap_or_default(),
                routing_key: c.routing_key(),
                routed: true,
            })
            .collect();
        let policies = &self.bus.inner.unroutable;
        // Kept for a second send of the copies whose exchange turns out to be gone: rare,
        // and a migration's dual publish is not the hot path.
        let kept = messages.clone();
        let results = futures_util::future::join_all(
            messages
                .into_iter()
                .zip(spans)
                .map(|(m, span)| self.bus.publish_event(m).instrument(span)),
        )
        .await;
        let mut again = Vec::new();
        for (index, ((contract, message), result)) in
            contracts.iter().zip(kept).zip(results).enumerate()
        {
            match result {
                Err(error) if exchange_missing(&error) => {
                    self.bus.redeclare_exchange(contract.exchange()).await?;
                    again.push((index, message));
                }
                result => {
                    published[index].routed =
                        policies.apply(policies.of(contract, None), result)?;
                }
            }
        }
        for (index, message) in again {
            let policy = policies.of(&contracts[index], None);
            published[index].routed =
                policies.apply(policy, self.bus.publish_event(message).await)?;
        }
        Ok(published)
    }
}
