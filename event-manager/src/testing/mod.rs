//! Tools for tests of services (the `testing` feature): a [`Harness`] around the in-memory
//! broker, and [`transport`], raw access to the broker beneath any [`Bus`].
//!
//! A [`Harness`] is a bus on a private in-memory broker (the same broker, with RabbitMQ's
//! routing, as [`Bus::in_memory`]) that
//!
//! * records every publish, typed: [`Harness::published`] gives the payloads of an event,
//!   [`Harness::published_messages`] their message ids and headers too;
//! * knows when the system is idle: [`Harness::idle`] waits until every queue with a
//!   consumer is drained, every callback finished, every retry came back, including what
//!   callbacks published in turn, or says what is still pending ([`NotIdle`]);
//! * reads retries and dead letters: [`Harness::retries`] (attempts, delay) and
//!   [`Harness::dead_letters`] (reason kind, attempts);
//! * injects faults: [`Harness::fail_next_publishes`] (negative confirm or unroutable),
//!   [`Harness::fail_next_forwards`] (for moves to wait and dead-letter queues),
//!   [`Harness::drop_connection`], [`Harness::delay_deliveries`].
//!
//! It works with any test runner, on any tokio runtime. Every wait (retry delays,
//! [`Harness::idle`]'s timeout, delayed deliveries) is tokio time: under a paused clock
//! (`#[tokio::test(start_paused = true)]`, tokio's `test-util` feature) a 30 s retry delay
//! passes in no time.
//!
//! ```standalone_crate
//! use std::time::Duration;
//! use event_manager::testing::Harness;
//! use event_manager::{Event, Exchange};
//! use schemars::JsonSchema;
//! use serde::{Deserialize, Serialize};
//!
//! pub const ORDER: Exchange = Exchange::topic("order");
//! pub const INVOICE: Exchange = Exchange::topic("invoice");
//!
//! /// An order as it travels between services.
//! #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema, Event)]
//! #[event(exchange = ORDER, version = "1.0.0", events(submit))]
//! pub struct Order { pub id: u64, pub total_cents: u64 }
//!
//! /// An invoice for an order.
//! #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema, Event)]
//! #[event(exchange = INVOICE, version = "1.0.0", events(issued))]
//! pub struct Invoice { pub order: u64, pub cents: u64 }
//!
//! #[tokio::main(flavor = "current_thread")]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let harness = Harness::new();
//!     let bus = harness.bus().clone();
//!
//!     // The service under test: billing invoices every order.
//!     let mut billing = harness.bus().service("billing_order");
//!     billing.on(Order::SUBMIT, move |order: Order, _| {
//!         let bus = bus.clone();
//!         async move {
//!             Invoice { order: order.id, cents: order.total_cents }.issued(&bus).await?;
//!             Ok(())
//!         }
//!     });
//!     // A consumer of invoices, so that they are routed.
//!     let mut mail = harness.bus().service("mail_invoice");
//!     mail.on(Invoice::ISSUED, |_: Invoice, _| async { Ok(()) });
//!     let billing = billing.start().await?;
//!     let mail = mail.start().await?;
//!
//!     Order { id: 7, total_cents: 1250 }.submit(harness.bus()).await?;
//!     harness.idle(Duration::from_secs(5)).await?; // the order, the invoice and its mail
//!
//!     assert_eq!(harness.published(Invoice::ISSUED), [Invoice { order: 7, cents: 1250 }]);
//!     assert!(harness.dead_letters("billing_order").await.is_empty());
//!     billing.shutdown().await?;
//!     mail.shutdown().await?;
//!     Ok(())
//! }
//! ```

use std::sync::Arc;
use std::time::Duration;

use crate::bus::Bus;
use crate::contract::{Event, EventDef};
use crate::topology::DeadLetter;
use crate::transport::{InMemoryBroker, Transport};

mod faults;
mod idle;
mod recorder;
mod records;
#[cfg(test)]
mod tests;

pub use idle::{NotIdle, PendingQueue};
pub use records::{PublishFault, PublishOutcome, Recorded, Retry, Sent};

use recorder::{HarnessTransport, State};

/// The transport beneath `bus`, for tests and tools: messages published on it skip the
/// envelope, and names are broker-side ([`Bus::topology`]).
///
/// ```standalone_crate
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use event_manager::Bus;
/// use event_manager::transport::QueueSpec;
///
/// let bus = Bus::in_memory();
/// let raw = event_manager::testing::transport(&bus);
/// raw.declare_queue(&QueueSpec::durable("scratch")).await?;
/// assert_eq!(raw.queue_len("scratch").await?, 0);
/// # Ok(())
/// # }
/// ```
pub fn transport(bus: &Bus) -> &Arc<dyn Transport> {
    bus.transport()
}

/// A bus on a private in-memory broker that records what is published, knows when the system
/// is idle, reads retries and dead letters, and injects faults. Cheap to clone: clones share
/// the broker and the records.
///
/// Every service and publisher of a test uses [`Harness::bus`], or a bus derived from it
/// ([`Bus::with_app_id`], [`Bus::with_namespace`]), which shares its broker.
///
/// ```standalone_crate
/// use std::time::Duration;
/// use event_manager::testing::Harness;
/// use event_manager::{Event, Exchange, HandlerError};
/// use schemars::JsonSchema;
/// use serde::{Deserialize, Serialize};
///
/// pub const ORDER: Exchange = Exchange::topic("order");
///
/// #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema, Event)]
/// #[event(exchange = ORDER, version = "1.0.0", events(submit))]
/// pub struct Order { pub id: u64 }
///
/// #[tokio::main(flavor = "current_thread")]
/// async fn main() -> Result<(), Box<dyn std::error::Error>> {
///     let harness = Harness::new();
///     let mut billing = harness.bus().service("billing_order");
///     billing.on(Order::SUBMIT, |order: Order, _| async move {
///         if order.id == 13 {
///             return Err(HandlerError::permanent("unlucky order"));
///         }
///         Ok(())
///     });
///     let running = billing.start().await?;
///
///     let published = Order { id: 13 }.submit(harness.bus()).await?;
///     harness.idle(Duration::from_secs(5)).await?;
///
///     let sent = harness.published_messages(Order::SUBMIT);
///     assert_eq!(sent[0].payload, Order { id: 13 });
///     assert_eq!(sent[0].message_id(), Some(published.message_id.as_str()));
///     let dead = harness.dead_letters("billing_order").await;
///     assert_eq!(dead[0].kind().map(|k| k.as_str()), Some("permanent-error"));
///     assert_eq!(dead[0].attempts(), 1);
///     running.shutdown().await?;
///     Ok(())
/// }
/// ```
#[derive(Clone)]
pub struct Harness {
    bus: Bus,
    broker: InMemoryBroker,
    state: Arc<State>,
}

impl std::fmt::Debug for Harness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Harness")
            .field("bus", &self.bus)
            .finish_non_exhaustive()
    }
}

impl Default for Harness {
    fn default() -> Self {
        Self::new()
    }
}

impl Harness {
    /// A harness on a new, empty in-memory broker.
    pub fn new() -> Self {
        let broker = InMemoryBroker::new();
        let state = Arc::new(State::default());
        let bus = Bus::with_transport(HarnessTransport {
            broker: broker.clone(),
            state: state.clone(),
        });
        Self { bus, broker, state }
    }

    /// The bus to publish on and to build services with. Buses derived from it
    /// ([`Bus::with_app_id`], [`Bus::with_namespace`], [`Bus::with_unroutable`]) share its
    /// broker and are recorded too.
    pub fn bus(&self) -> &Bus {
        &self.bus
    }

    /// The payloads of every publish of `event` the broker received (routed or unroutable),
    /// in the order they were published, from any bus of the harness. Publishes refused by an
    /// injected fault are left out (see [`Harness::sent`]), as are bodies that do not decode
    /// as `T` (a foreign publisher's).
    ///
    /// ```standalone_crate
    /// # use event_manager::testing::Harness;
    /// # use event_manager::{Event, Exchange, Unroutable};
    /// # use schemars::JsonSchema;
    /// # use serde::{Deserialize, Serialize};
    /// # pub const ORDER: Exchange = Exchange::topic("order");
    /// #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema, Event)]
    /// #[event(exchange = ORDER, version = "1.0.0", events(submit, cancel))]
    /// pub struct Order { pub id: u64 }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let harness = Harness::new();
    /// // The order service alone: nobody consumes its events in this test.
    /// let bus = harness.bus().with_unroutable(Order::SUBMIT, Unroutable::Ignore);
    /// Order { id: 1 }.submit(&bus).await?;
    /// Order { id: 2 }.submit(&bus).await?;
    /// assert_eq!(harness.published(Order::SUBMIT), [Order { id: 1 }, Order { id: 2 }]);
    /// assert!(harness.published(Order::CANCEL).is_empty());
    /// # Ok(())
    /// # }
    /// ```
    pub fn published<T: Event>(&self, event: EventDef<T>) -> Vec<T> {
        self.published_messages(event)
            .into_iter()
            .map(|recorded| recorded.payload)
            .collect()
    }

    /// [`Harness::published`] with each message: its id, headers, publisher and whether a
    /// queue took it.
    ///
    /// ```standalone_crate
    /// # use event_manager::testing::Harness;
    /// # use event_manager::{Event, Exchange, PublishOptions, Unroutable};
    /// # use schemars::JsonSchema;
    /// # use serde::{Deserialize, Serialize};
    /// # pub const ORDER: Exchange = Exchange::topic("order");
    /// # #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema, Event)]
    /// # #[event(exchange = ORDER, version = "1.2.0", events(submit))]
    /// # pub struct Order { pub id: u64 }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let harness = Harness::new();
    /// let bus = harness
    ///     .bus()
    ///     .with_app_id("order")
    ///     .with_unroutable(Order::SUBMIT, Unroutable::Ignore);
    /// let options = PublishOptions {
    ///     correlation_id: Some("checkout-42".into()),
    ///     ..PublishOptions::default()
    /// };
    /// let published = bus.publish_with(Order::SUBMIT, &Order { id: 1 }, &options).await?;
    ///
    /// let sent = &harness.published_messages(Order::SUBMIT)[0];
    /// assert_eq!(sent.payload, Order { id: 1 });
    /// assert_eq!(sent.message_id(), Some(published.message_id.as_str()));
    /// assert_eq!(sent.correlation_id(), Some("checkout-42"));
    /// assert_eq!(sent.app_id(), Some("order"));
    /// assert_eq!(sent.headers().get_str("event-version"), Some("1.2.0"));
    /// assert!(!sent.routed()); // nobody is bound in this test
    /// # Ok(())
    /// # }
    /// ```
    pub fn published_messages<T: Event>(&self, event: EventDef<T>) -> Vec<Recorded<T>> {
        self.state
            .sent()
            .into_iter()
            .filter(|sent| {
                !sent.message.exchange.is_empty()
                    && sent.message.routing_key == event.routing_key()
                    && sent.outcome.reached_broker()
            })
            .filter_map(|sent| {
                let payload = crate::envelope::from_json(&sent.message.body).ok()?;
                Some(Recorded {
                    payload,
                    message: sent.message,
                    outcome: sent.outcome,
                })
            })
            .collect()
    }

    /// Every publish through the harness so far, in order, with its outcome: events, raw
    /// messages, publishes refused by an injected fault, and the services' own moves to wait
    /// and dead-letter queues (published to the default exchange `""`, addressed to the
    /// queue by routing key).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use event_manager::message::Message;
    /// use event_manager::testing::{Harness, PublishOutcome};
    ///
    /// let harness = Harness::new();
    /// let raw = event_manager::testing::transport(harness.bus());
    /// let message = Message {
    ///     exchange: "".into(),
    ///     routing_key: "nowhere".into(),
    ///     body: b"{}".to_vec().into(),
    ///     properties: Default::default(),
    /// };
    /// assert!(raw.publish(message).await.is_err());
    /// let sent = harness.sent();
    /// assert_eq!(sent[0].message.routing_key, "nowhere");
    /// assert_eq!(sent[0].outcome, PublishOutcome::Unroutable);
    /// # Ok(())
    /// # }
    /// ```
    pub fn sent(&self) -> Vec<Sent> {
        self.state.sent()
    }

    /// The retries of the service `service` so far, in order: every failed message it
    /// parked in a wait queue, with the attempts made and the delay before the next. `service`
    /// is the queue name given to [`Bus::service`] on [`Harness::bus`] (for a service on a
    /// namespaced bus, its broker-side name, [`Topology::queue_name`]).
    ///
    /// Retry delays are tokio time: under a paused clock they pass at once.
    ///
    /// ```standalone_crate
    /// use std::time::Duration;
    /// use event_manager::testing::Harness;
    /// use event_manager::{Event, Exchange, HandlerError, RetryPolicy};
    /// use schemars::JsonSchema;
    /// use serde::{Deserialize, Serialize};
    ///
    /// pub const ORDER: Exchange = Exchange::topic("order");
    ///
    /// #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema, Event)]
    /// #[event(exchange = ORDER, version = "1.0.0", events(submit))]
    /// pub struct Order { pub id: u64 }
    ///
    /// // tokio's `test-util` feature; in a test: #[tokio::test(start_paused = true)]
    /// #[tokio::main(flavor = "current_thread", start_paused = true)]
    /// async fn main() -> Result<(), Box<dyn std::error::Error>> {
    ///     let harness = Harness::new();
    ///     let mut billing = harness.bus().service("billing_order");
    ///     billing.retry(RetryPolicy::new(3, vec![Duration::from_secs(30)]));
    ///     billing.on(Order::SUBMIT, |_: Order, _| async {
    ///         Err(HandlerError::retry("payment provider down"))
    ///     });
    ///     let running = billing.start().await?;
    ///
    ///     Order { id: 1 }.submit(harness.bus()).await?;
    ///     harness.idle(Duration::from_secs(120)).await?; // two 30 s waits, in virtual time
    ///
    ///     let retries = harness.retries("billing_order");
    ///     let attempts: Vec<u32> = retries.iter().map(|r| r.attempts()).collect();
    ///     assert_eq!(attempts, [1, 2]);
    ///     assert_eq!(retries[0].delay(), Duration::from_secs(30));
    ///     let dead = harness.dead_letters("billing_order").await;
    ///     assert_eq!(dead[0].attempts(), 3);
    ///     assert_eq!(dead[0].decode::<Order>()?, Order { id: 1 });
    ///     running.shutdown().await?;
    ///     Ok(())
    /// }
    /// ```
    ///
    /// [`Topology::queue_name`]: crate::topology::Topology::queue_name
    pub fn retries(&self, service: &str) -> Vec<Retry> {
        let prefix = format!("{}.wait.", self.bus.topology().queue_name(service));
        self.state
            .sent()
            .into_iter()
            .filter(|sent| sent.message.exchange.is_empty() && sent.outcome.reached_broker())
            .filter_map(|sent| {
                let millis = sent
                    .message
                    .routing_key
                    .strip_prefix(prefix.as_str())?
                    .strip_suffix("ms")?
                    .parse()
                    .ok()?;
                Some(Retry {
                    message: sent.message,
                    delay: Duration::from_millis(millis),
                })
            })
            .collect()
    }

    /// The dead letters of the service `service` (named as for [`Harness::retries`]), as its
    /// dead-letter queue holds them now, oldest first: each with its reason kind, reason,
    /// attempts and payload ([`DeadLetter`]). Empty when the service never declared its
    /// queues. They stay in the queue.
    ///
    /// See [`Harness`] for an example.
    pub async fn dead_letters(&self, service: &str) -> Vec<DeadLetter> {
        self.bus
            .service(service)
            .queues()
            .dead_letters(usize::MAX)
            .await
            .unwrap_or_default()
    }

    /// Waits until the system is idle: every queue with a consumer drained, every wait queue
    /// of a retry empty, every delivery settled (callbacks finished, moves to wait and
    /// dead-letter queues confirmed), including the events callbacks published in turn and
    /// the retries of those events. Dead-letter queues, and queues nobody consumes, do not
    /// count. Work a callback hands to a task of its own (`tokio::spawn`) is not seen.
    ///
    /// Fails with [`NotIdle`], which lists what is still pending per queue, when the system
    /// is not idle within `timeout` (tokio time: under a paused clock, virtual time; a retry
    /// delay counts against it).
    ///
    /// ```standalone_crate
    /// use std::time::Duration;
    /// use event_manager::testing::Harness;
    /// use event_manager::{Event, Exchange};
    /// use schemars::JsonSchema;
    /// use serde::{Deserialize, Serialize};
    ///
    /// pub const ORDER: Exchange = Exchange::topic("order");
    ///
    /// #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema, Event)]
    /// #[event(exchange = ORDER, version = "1.0.0", events(submit))]
    /// pub struct Order { pub id: u64 }
    ///
    /// #[tokio::main(flavor = "current_thread")]
    /// async fn main() -> Result<(), Box<dyn std::error::Error>> {
    ///     let harness = Harness::new();
    ///     let mut slow = harness.bus().service("slow_order");
    ///     slow.on(Order::SUBMIT, |_: Order, _| async {
    ///         tokio::time::sleep(Duration::from_secs(3600)).await;
    ///         Ok(())
    ///     });
    ///     let running = slow.start().await?;
    ///     Order { id: 1 }.submit(harness.bus()).await?;
    ///
    ///     let pending = harness.idle(Duration::from_millis(100)).await.unwrap_err();
    ///     assert_eq!(pending.queue("slow_order").map(|q| q.unsettled), Some(1));
    ///     println!("{pending}"); // not idle after 100ms: `slow_order`: 1 unsettled (…)
    ///     drop(running);
    ///     Ok(())
    /// }
    /// ```
    pub async fn idle(&self, timeout: Duration) -> Result<(), NotIdle> {
        idle::wait(&self.state, &self.broker, timeout).await
    }
}
