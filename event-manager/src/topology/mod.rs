//! Names and declarations on the broker, owned by the [`Bus`] and its namespace. The bus
//! does not depend on this module; it depends on the bus.
//!
//! * [`Topology`] ([`Bus::topology`]): the broker-side names of exchanges and queues on a
//!   namespaced bus, and declaring an exchange ahead of the first publish.
//! * [`ServiceQueues`] ([`Service::queues`](crate::Service::queues)): the queues one service
//!   owns, to list, measure, read dead letters from, replay and delete.
//! * [`Migrated`] ([`Service::migrate_queues`](crate::Service::migrate_queues)): a queue
//!   recreated with a new declaration (e.g. classic to quorum) without losing a message.
//!
//! A service's queues are named after its queue `<q>` (with the bus namespace, if any):
//! `<q>.wait.<ms>ms` (one wait queue per retry delay), `<q>.retried` (where wait queues hand
//! retries back) and `<q>.dlq` (dead letters).

mod migrate;
mod names;
mod queues;
mod service;

pub use migrate::{MIGRATING_SUFFIX, Migrated};
pub use queues::{DeadLetter, ServiceQueues};
pub(crate) use service::ServiceTopology;

use crate::bus::Bus;
use crate::contract::Exchange;
use crate::error::TopologyError;

/// The broker-side names and declarations of a [`Bus`]: get it with [`Bus::topology`].
///
/// ```
/// use event_manager::{Bus, Exchange};
///
/// const ORDER: Exchange = Exchange::topic("order");
/// let bus = Bus::in_memory().with_namespace("test42");
/// assert_eq!(bus.topology().exchange_name(ORDER), "test42.order");
/// assert_eq!(bus.topology().queue_name("billing_order"), "test42.billing_order");
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Topology<'b> {
    bus: &'b Bus,
}

impl Bus {
    /// The broker-side names and declarations of this bus: exchange and queue names with
    /// the namespace, and declaring an exchange ahead of the first publish.
    pub fn topology(&self) -> Topology<'_> {
        Topology { bus: self }
    }
}

impl Topology<'_> {
    /// The broker-side name of `exchange` on this bus (see [`Bus::with_namespace`]).
    pub fn exchange_name(&self, exchange: Exchange) -> String {
        self.bus.exchange_name(exchange)
    }

    /// The broker-side name of the service queue of the service named `service`, as given to
    /// [`Bus::service`] (see [`Bus::with_namespace`]).
    pub fn queue_name(&self, service: &str) -> String {
        self.bus.queue_name(service)
    }

    /// Declares `exchange` on the broker, once per bus. Publishing declares it on first use,
    /// so this is only needed for a queue bound by another tool before anything is published.
    pub async fn declare_exchange(&self, exchange: Exchange) -> Result<(), TopologyError> {
        self.bus.declare_exchange(exchange).await
    }
}
