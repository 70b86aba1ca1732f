//! Consuming: a [`Service`] owns one durable queue, its bindings, its callbacks and its
//! failure policy.
//!
//! # Dispatch
//!
//! Each callback is registered for one event contract ([`Service::on`]), i.e. for one routing
//! key such as `order.v1.submit`. Bindings decide what reaches the queue: explicit patterns
//! from [`Service::bind`] (`order.*.submit`, `order.#`), plus an exact binding for every
//! callback whose key no explicit pattern covers. A delivery is dispatched by its routing key
//! to every callback registered for it; they all run, and the message is acknowledged once
//! all succeeded. Registering a second callback for the same event adds it, never replaces.
//!
//! # Versions
//!
//! The version of a message comes from its `event-version` header, or from the `v<major>`
//! word of its routing key when the header is missing (a plain kombu or pika publisher). A
//! newer minor or patch of the same major is accepted: unknown fields are ignored, as serde
//! does by default. A major that no callback accepts is dead-lettered with the reason
//! `unsupported version`. [`OnEvent::upcast_from`] lets one callback take an older major too.
//!
//! # Failures
//!
//! * Every callback registered for the routing key returns `Ok`: the message is acknowledged.
//! * A callback returns a retryable error or panics (inside its future, or before it returns
//!   one): the message is parked in a wait queue and comes back after the delay of the
//!   service's [`RetryPolicy`]; once the attempts are used up it is dead-lettered. An
//!   `attempts` header too large to count further means the attempts are used up.
//! * A callback returns a [`HandlerError::permanent`] error: dead-lettered at once.
//! * Several callbacks for one event all run to completion, even when one of them fails early;
//!   the outcome is the first error, permanent when any of the errors is permanent. **On a
//!   retry every callback runs again**, those that succeeded too: callbacks must be
//!   idempotent (they are anyway: delivery is at-least-once). [`Delivery::message_id`] is
//!   stable across retries, to detect repeats.
//! * The body does not decode (or its `Deserialize` panics), an upcaster panics, the body is
//!   larger than [`Service::max_body_bytes`], or it carries a version or routing key no
//!   callback accepts: dead-lettered at once, never retried, with a reason saying which.
//!
//! No panic of a callback, a decoder or an upcaster stops the consumer: each is caught per
//! message.
//!
//! Dead letters go to `<queue>.dlq` with the original body and properties and the headers
//! `dead-letter-reason`, `dead-letter-kind`, `attempts`, `original-exchange`,
//! `original-routing-key`, `failed-at` and `dead-letter-queue` (before 0.2 they had an `x-`
//! prefix, still read). Nothing is acknowledged before it was handled or
//! the broker confirmed its move to a wait or dead-letter queue. When that move fails:
//!
//! * because the target queue is missing (deleted from outside), the service declares its
//!   topology again and retries the move at once;
//! * for any other reason (a full dead-letter queue refusing messages, a confirm timeout, a
//!   lost connection), the message is held unacknowledged and the move retried after 1 s,
//!   2 s, 4 s … (at most 30 s apart), logged at error level from the third failure on, until
//!   it succeeds; if the service stops first, the message goes back to its queue. It is never
//!   dropped and never requeued in a tight loop.
//!
//! [`ServiceQueues::replay_dead_letters`] moves dead letters back: only those in the
//! dead-letter queue when it starts, so a replay ends even when the replayed messages fail
//! again. [`Service::queues`] lists, measures, reads and deletes a service's queues.
//!
//! # Topology
//!
//! A service declares what it owns when it starts: its queue, the wait queues of its retry
//! policy, its dead-letter queue, the exchanges it reads from and its bindings. While it runs
//! it declares them all again every [`Service::topology_refresh`] interval (default 30 s) and
//! whenever a move finds a queue missing, so a queue, exchange or binding deleted from
//! outside comes back. A failed refresh is logged and tried again at the next interval. On a
//! namespaced bus ([`Bus::with_namespace`]) every queue name carries the namespace.
//!
//! # Shutdown
//!
//! [`RunningService::shutdown`] stops taking messages and returns within the grace period
//! ([`Service::shutdown_grace`]). Within it, the subscription is cancelled (the cancel gets at
//! most 5 s of it: under a memory alarm the broker blocks the connection and the cancel never
//! completes) while the running callbacks go on; those that finish are acknowledged (or moved
//! to a wait or dead-letter queue). When the grace period is over, whatever is unfinished is
//! dropped unsettled and the broker delivers it again; messages that were prefetched but not
//! started go back to the queue as well. A message held because its move keeps failing goes
//! back to the queue at once.

mod dispatch;
mod handler;
mod health;
mod outcome;
mod retry;
mod runner;
mod subscriptions;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;

pub use handler::{Delivery, HandlerError, HandlerResultExt};
pub use health::{Health, HealthProbe};
pub use retry::RetryPolicy;
pub use runner::RunningService;

use crate::bus::Bus;
use crate::contract::{Event, EventDef, Exchange};
use crate::error::ConsumeError;
use crate::routing::{BindingPattern, RoutingKey};
use crate::topology::{Migrated, ServiceQueues, ServiceTopology};
use crate::transport::QueueKind;
use handler::{Callback, ErasedHandler, erase};

/// Callbacks registered for one routing key.
#[derive(Clone)]
pub(crate) struct Route {
    pub(crate) exchange: Exchange,
    pub(crate) handlers: Vec<ErasedHandler>,
}

/// A consuming service: one durable queue, its bindings, callbacks and policies.
/// Built with [`Bus::service`], started with [`Service::start`] or [`Service::run_until`].
pub struct Service {
    pub(crate) bus: Bus,
    pub(crate) queue: String,
    pub(crate) bindings: Vec<(Exchange, BindingPattern)>,
    pub(crate) routes: BTreeMap<&'static str, Route>,
    pub(crate) retry: RetryPolicy,
    pub(crate) prefetch: u16,
    pub(crate) concurrency: usize,
    pub(crate) max_body_bytes: usize,
    pub(crate) queue_kind: QueueKind,
    pub(crate) delivery_limit: u32,
    pub(crate) shutdown_grace: Duration,
    pub(crate) topology_refresh: Duration,
    /// How many callbacks [`Service::on_tx`] registered: each records the messages it
    /// handled under a name of its own.
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    pub(crate) tx_callbacks: usize,
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service")
            .field("queue", &self.queue)
            .field("routes", &self.routes.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// The default largest body a service accepts: 1 MiB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 1 << 20;

/// The default [`Service::delivery_limit`]: 50.
pub const DEFAULT_DELIVERY_LIMIT: u32 = 50;

impl Service {
    pub(crate) fn new(bus: Bus, queue: String) -> Self {
        Self {
            bus,
            queue,
            bindings: Vec::new(),
            routes: BTreeMap::new(),
            retry: RetryPolicy::default(),
            prefetch: 100,
            concurrency: 16,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            queue_kind: QueueKind::Quorum,
            delivery_limit: DEFAULT_DELIVERY_LIMIT,
            shutdown_grace: Duration::from_secs(30),
            topology_refresh: Duration::from_secs(30),
            tx_callbacks: 0,
        }
    }

    /// The queue name as given to [`Bus::service`], without the namespace of the bus; the
    /// name on the broker is [`ServiceQueues::queue`] of [`Service::queues`].
    pub fn queue(&self) -> &str {
        &self.queue
    }

    /// Binds the queue to `exchange` with a topic pattern such as `order.*.submit` or
    /// `order.#`. Every binding is declared, not only the first.
    pub fn bind(
        &mut self,
        exchange: Exchange,
        pattern: &str,
    ) -> Result<&mut Self, crate::RoutingError> {
        let pattern = BindingPattern::parse(pattern)?;
        if !self
            .bindings
            .iter()
            .any(|(e, p)| *e == exchange && *p == pattern)
        {
            self.bindings.push((exchange, pattern));
        }
        Ok(self)
    }

    /// Registers `callback` for `event`: the Rust side of Python's
    /// `@Order.submit.register_callback`. Several callbacks for one event all run.
    ///
    /// The callback is a plain async function of the payload and a [`Delivery`]; any error
    /// type convertible into [`HandlerError`] may be returned.
    pub fn on<T, F, Fut>(&mut self, event: EventDef<T>, callback: F) -> OnEvent<'_, T>
    where
        T: Event,
        F: Fn(T, Delivery) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), HandlerError>> + Send + 'static,
    {
        let callback: Callback<T> =
            Arc::new(move |payload, delivery| callback(payload, delivery).boxed());
        self.add_route(
            event,
            erase(std::any::type_name::<T>(), |t: T| t, callback.clone()),
        );
        OnEvent {
            service: self,
            callback,
        }
    }

    fn add_route<U>(&mut self, event: EventDef<U>, handler: ErasedHandler) {
        self.routes
            .entry(event.routing_key())
            .or_insert_with(|| Route {
                exchange: event.exchange(),
                handlers: Vec::new(),
            })
            .handlers
            .push(handler);
    }

    /// The retry policy (default: [`RetryPolicy::default`]).
    pub fn retry(&mut self, policy: RetryPolicy) -> &mut Self {
        self.retry = policy;
        self
    }

    /// How many deliveries the broker may hand over before they are acknowledged
    /// (default 100). Memory use of a consumer is bounded by it.
    pub fn prefetch(&mut self, prefetch: u16) -> &mut Self {
        self.prefetch = prefetch.max(1);
        self
    }

    /// How many messages are handled at once (default 16).
    pub fn concurrency(&mut self, concurrency: usize) -> &mut Self {
        self.concurrency = concurrency.max(1);
        self
    }

    /// The largest body accepted; larger ones are dead-lettered (default 1 MiB).
    pub fn max_body_bytes(&mut self, limit: usize) -> &mut Self {
        self.max_body_bytes = limit;
        self
    }

    /// Quorum (the default) or classic queues: the service queue, its wait queues, its retry
    /// queue and its dead-letter queue are all of this kind.
    ///
    /// Quorum queues are replicated over the nodes of a cluster and survive the loss of a
    /// minority of them; they hand retries on with RabbitMQ's at-least-once dead-letter
    /// strategy. Classic queues live on one node. A queue's kind cannot change in place: a
    /// service whose queues exist as classic ones fails to start with
    /// [`TopologyError::Mismatch`](crate::TopologyError::Mismatch) on `x-queue-type`, until
    /// they are moved with [`Service::migrate_queues`] or it asks for
    /// [`QueueKind::Classic`] here.
    pub fn queue_kind(&mut self, kind: QueueKind) -> &mut Self {
        self.queue_kind = kind;
        self
    }

    /// On quorum queues, how many times a delivery may be handed back to the queue
    /// unsettled (its consumer crashed, lost its connection or stopped before settling it)
    /// before RabbitMQ moves it to the dead-letter queue, with
    /// [`DeadLetterKind::DeliveryLimit`](crate::envelope::DeadLetterKind::DeliveryLimit)
    /// (default [`DEFAULT_DELIVERY_LIMIT`], at least 1).
    ///
    /// It stops a message that crashes every process handling it from looping forever.
    /// Failed callbacks do not count: they are retried through the wait queues and their
    /// deliveries acknowledged. The limit is set explicitly because RabbitMQ 4 otherwise
    /// applies 20 and, without a dead-letter target, drops the message; here the dead
    /// letter is handed on at-least-once. Classic queues have no limit.
    pub fn delivery_limit(&mut self, limit: u32) -> &mut Self {
        self.delivery_limit = limit.max(1);
        self
    }

    /// How long a shutdown may take in all (default 30 s): the cancel of the subscription and
    /// the running callbacks share it (see [Shutdown](crate::service#shutdown)). At most a
    /// year.
    pub fn shutdown_grace(&mut self, grace: Duration) -> &mut Self {
        self.shutdown_grace = grace.min(crate::LONGEST_WAIT);
        self
    }

    /// How often a running service declares its topology again (default 30 s): its queue,
    /// wait queues, dead-letter queue, exchanges and bindings, so that one deleted from
    /// outside comes back. Declaring is idempotent and cheap; it runs beside the deliveries,
    /// with a deadline of 10 s, and a failure is logged, not fatal. At least 1 ms.
    pub fn topology_refresh(&mut self, interval: Duration) -> &mut Self {
        self.topology_refresh = interval.max(Duration::from_millis(1));
        self
    }

    /// The queues this service owns on the broker, named after its queue and its retry
    /// policy: to list, measure, read dead letters from, replay and delete.
    pub fn queues(&self) -> ServiceQueues {
        ServiceQueues::new(&self.bus, &self.queue, &self.retry.distinct_delays())
    }

    /// Declares the service's queue, bindings, wait and dead-letter queues without consuming.
    /// A publisher can call it for the services it knows about, so that events published
    /// before those services first start are kept in their queues instead of being
    /// unroutable. Declaring is idempotent; the exchanges are declared on the broker again
    /// even when the bus declared them before, so it also repairs a topology deleted from
    /// outside.
    pub async fn declare(&self) -> Result<(), ConsumeError> {
        self.topology().declare().await?;
        Ok(())
    }

    /// Recreates every queue of the service that exists with another declaration than this
    /// service's (classic where it declares quorum queues, or a quorum queue without its
    /// delivery limit…), without losing a message, and returns what it moved; then
    /// [`Service::declare`] and [`Service::start`] succeed.
    ///
    /// **Stop every consumer of the service first** (every process running it): a message
    /// a consumer holds unacknowledged when its queue is deleted is lost. Publishers may go
    /// on publishing.
    ///
    /// Each queue to recreate is emptied into a temporary queue `<queue>.migrating` of the
    /// new kind (the service queue's bindings are switched over to it first, so no publish
    /// is unroutable), deleted once empty, declared anew with the service's bindings, and
    /// refilled from the temporary queue, which is then deleted. Every message is moved
    /// with `basic.get`, a confirmed publish through the default exchange and an
    /// acknowledgement after the confirm; it keeps its body, message id, properties and
    /// headers (one that lacks them gets `original-exchange` and `original-routing-key`, so
    /// that it is still dispatched by its event). Wait queues restart their delay.
    ///
    /// Delivery stays at-least-once: a publish that races the switch of the bindings can
    /// land twice, as can a message whose copy was confirmed when the process died.
    /// Running it again is how a migration interrupted by a crash or an error is finished:
    /// a `<queue>.migrating` left over is emptied back. When nothing differs and nothing is
    /// left over, it changes nothing and returns an empty list.
    ///
    /// ```standalone_crate
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use event_manager::Bus;
    /// use event_manager::transport::QueueKind;
    ///
    /// let bus = Bus::in_memory();
    /// // The release before declared classic queues.
    /// let mut old = bus.service("billing_order");
    /// old.queue_kind(QueueKind::Classic);
    /// old.declare().await?;
    ///
    /// // This one declares quorum queues (the default): refused until they are migrated.
    /// let billing = bus.service("billing_order");
    /// assert!(billing.declare().await.unwrap_err().to_string().contains("migrate"));
    /// for migrated in billing.migrate_queues().await? {
    ///     println!("{}: moved {} message(s)", migrated.queue, migrated.moved);
    /// }
    /// billing.declare().await?;
    /// assert!(billing.migrate_queues().await?.is_empty());
    /// # Ok(())
    /// # }
    /// ```
    pub async fn migrate_queues(&self) -> Result<Vec<Migrated>, ConsumeError> {
        self.topology().migrate().await
    }

    /// What the service owns on the broker.
    pub(crate) fn topology(&self) -> ServiceTopology {
        ServiceTopology::new(
            self.queues(),
            self.queue_kind,
            self.delivery_limit,
            self.all_bindings(),
        )
    }

    /// Every binding to declare: the explicit ones, and an exact one for each callback no
    /// explicit pattern covers.
    fn all_bindings(&self) -> Vec<(Exchange, BindingPattern)> {
        let mut all = self.bindings.clone();
        for (key, route) in &self.routes {
            let covered = self
                .bindings
                .iter()
                .any(|(e, p)| *e == route.exchange && p.matches(key));
            if !covered && let Ok(key) = RoutingKey::parse(key) {
                all.push((route.exchange, BindingPattern::exact(&key)));
            }
        }
        all
    }
}

impl Bus {
    /// A consuming service reading the durable queue `queue` (e.g. `billing_order`). Several
    /// processes using the same queue name share its messages; different names each get every
    /// message (fan-out). On a namespaced bus the queue on the broker is
    /// `<namespace>.<queue>` ([`Topology::queue_name`](crate::topology::Topology::queue_name)).
    pub fn service(&self, queue: impl Into<String>) -> Service {
        Service::new(self.clone(), queue.into())
    }
}

/// Returned by [`Service::on`]: lets the same callback accept older majors of the event.
pub struct OnEvent<'s, T> {
    service: &'s mut Service,
    callback: Callback<T>,
}

impl<T: Event> OnEvent<'_, T> {
    /// Also accept `older` events, converted with `From` (an upcaster).
    ///
    /// ```standalone_crate
    /// # use event_manager::{Bus, Event, Exchange};
    /// # use schemars::JsonSchema;
    /// # use serde::{Deserialize, Serialize};
    /// # pub const ORDER: Exchange = Exchange::topic("order");
    /// #[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, Event)]
    /// #[event(exchange = ORDER, version = "1.4.0", events(submit))]
    /// pub struct OrderV1 { pub id: u64 }
    ///
    /// #[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, Event)]
    /// #[event(exchange = ORDER, version = "2.0.0", events(submit))]
    /// pub struct OrderV2 { pub id: u64, pub currency: String }
    ///
    /// impl From<OrderV1> for OrderV2 {
    ///     fn from(v1: OrderV1) -> Self { Self { id: v1.id, currency: "EUR".into() } }
    /// }
    ///
    /// let bus = Bus::in_memory();
    /// let mut billing = bus.service("billing_order");
    /// billing.bind(ORDER, "order.*.submit")?;
    /// billing
    ///     .on(OrderV2::SUBMIT, |order: OrderV2, _| async move {
    ///         println!("{} in {}", order.id, order.currency);
    ///         Ok(())
    ///     })
    ///     .upcast_from(OrderV1::SUBMIT);
    /// # Ok::<(), event_manager::RoutingError>(())
    /// ```
    pub fn upcast_from<U>(self, older: EventDef<U>) -> Self
    where
        U: Event,
        T: From<U>,
    {
        self.upcast_with(older, T::from)
    }

    /// Also accept `older` events, converted by `upcast`.
    pub fn upcast_with<U: Event>(
        self,
        older: EventDef<U>,
        upcast: impl Fn(U) -> T + Send + Sync + 'static,
    ) -> Self {
        let handler = erase(std::any::type_name::<U>(), upcast, self.callback.clone());
        self.service.add_route(older, handler);
        self
    }
}
