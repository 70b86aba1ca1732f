//! # event-manager
//!
//! Typed, versioned and checkable event contracts between services, over RabbitMQ or an
//! in-memory broker with the same semantics.
//!
//! A shared contracts crate declares exchanges and versioned events; `#[derive(Event)]` turns a
//! payload struct into its contracts (`order.v1.submit`, `order.v1.chargeback`), a typed
//! publisher (`order.submit(&bus)`) and the handles used to register callbacks
//! (`Order::SUBMIT`).
//!
//! ```standalone_crate
//! use std::time::Duration;
//! use event_manager::testing::Harness;
//! use event_manager::{Event, Exchange};
//! use schemars::JsonSchema;
//! use serde::{Deserialize, Serialize};
//!
//! pub const ORDER: Exchange = Exchange::topic("order");
//!
//! /// An order as it travels between services.
//! #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema, Event)]
//! #[event(exchange = ORDER, version = "1.2.0", events(submit, chargeback))]
//! pub struct Order {
//!     pub id: u64,
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! assert_eq!(Order::SUBMIT.routing_key(), "order.v1.submit");
//! assert_eq!(Order::CHARGEBACK.routing_key(), "order.v1.chargeback");
//!
//! // A service connects with `Bus::from_env()`; this example runs on the in-memory broker of
//! // the test harness (the `testing` feature), which records what is published.
//! let harness = Harness::new();
//! let bus = harness.bus();
//! let mut logistics = bus.service("logistics_order");
//! logistics.bind(ORDER, "order.#")?;
//! for event in [Order::SUBMIT, Order::CHARGEBACK] {
//!     logistics.on(event, |order: Order, delivery| async move {
//!         println!("{} for order {}", delivery.routing_key(), order.id);
//!         Ok(())
//!     });
//! }
//! let running = logistics.start().await?;
//! Order { id: 1 }.submit(bus).await?;
//! Order { id: 1 }.chargeback(bus).await?;
//! harness.idle(Duration::from_secs(5)).await?; // logistics handled both
//! assert_eq!(harness.published(Order::SUBMIT), [Order { id: 1 }]);
//! assert_eq!(harness.published(Order::CHARGEBACK), [Order { id: 1 }]);
//! running.shutdown().await?;
//! # Ok(())
//! # }
//! ```
//!
//! ## Parts
//!
//! | Where an event is … | Module |
//! |---|---|
//! | declared | [`contract`]: [`Exchange`], the [`Event`] trait, [`EventDef`], [`EventContract`]; [`registry`]: every contract linked into the binary |
//! | named and routed | [`routing`]: [`RoutingKey`], [`EventKey`] (the `<exchange>.v<major>.<event>` scheme), [`BindingPattern`] and RabbitMQ's topic matching rules |
//! | encoded | [`envelope`]: the wire format (body, properties, headers), retry and dead-letter copies; [`message`]: the broker-neutral message |
//! | published | [`Bus`] ([`bus`]) |
//! | carried | [`transport`]: the in-memory broker and RabbitMQ through `lapin` |
//! | declared on the broker | [`topology`]: broker-side names, a service's queues ([`Service::queues`]) |
//! | consumed, retried, dead-lettered | [`Service`] ([`service`]): dispatch, versions, retries, dead letters, shutdown |
//! | exported | [`schema`]: JSON Schema and AsyncAPI files |
//! | checked for compatibility | [`compat`] and the `event-manager` command line tool |
//!
//! The words mean one thing each: *check* is the compatibility check of two contracts;
//! *validate* is refusing malformed input (routing keys, patterns, `#[event]` attributes,
//! contradicting contracts in the registry); *settle* is acknowledging or rejecting a delivery
//! on the broker.
//!
//! ## Features
//!
//! * `amqp` (default): RabbitMQ through `lapin` (`amqp://` URLs); implies `runtime`. Without
//!   it, [`Bus::connect`] refuses an `amqp://` URL with [`ConnectError::FeatureDisabled`].
//! * `runtime`: [`bus`], [`service`] and [`transport`] with the in-memory broker, on tokio.
//! * `compat` (default): the [`compat`] checker.
//! * `cli` (opt-in): the `event-manager` command line tool; implies `compat`.
//! * `tls`: `amqps://` through rustls; implies `amqp`.
//! * `postgres` (opt-in): `event_manager::outbox`, a transactional outbox and an idempotent
//!   inbox on PostgreSQL (sqlx, rustls), with in-memory stores; implies `runtime`.
//! * `otel` (opt-in): W3C trace context (`traceparent`, `tracestate`) written on publish and
//!   read on consume through `tracing-opentelemetry`; see `event_manager::telemetry`.
//! * `testing`: `event_manager::testing`, the test harness (`testing::Harness`: what was
//!   published, waiting until the system is idle, retries and dead letters, injected faults)
//!   and raw access to the broker.
//!
//! Without default features the crate is the contract core (`contract`, `routing`,
//! `registry`, `schema`, `envelope`), without tokio or lapin, and `#[derive(Event)]` emits
//! no publish methods; `--no-default-features --features cli` builds the checker on it.
#![deny(missing_docs)]
#![warn(rustdoc::broken_intra_doc_links)]

#[cfg(feature = "runtime")]
pub mod bus;
#[cfg(feature = "compat")]
pub mod compat;
pub mod contract;
// Their crate-internal helpers serve the bus and the services.
#[cfg_attr(not(feature = "runtime"), allow(dead_code))]
pub mod envelope;
pub mod error;
#[cfg_attr(not(feature = "runtime"), allow(dead_code))]
pub mod message;
#[cfg(feature = "postgres")]
pub mod outbox;
pub mod registry;
pub mod routing;
pub mod schema;
#[cfg(feature = "runtime")]
pub mod service;
#[cfg(feature = "runtime")]
pub mod telemetry;
#[cfg(test)]
mod test_probe;

/// The longest wait or period the crate keeps as given: a year. Longer ones (a timeout of
/// `Duration::MAX`, say) are taken as a year, since a deadline that far ahead would overflow
/// the clock.
#[cfg_attr(not(feature = "runtime"), allow(dead_code))]
pub(crate) const LONGEST_WAIT: std::time::Duration =
    std::time::Duration::from_secs(365 * 24 * 3600);
#[cfg(feature = "testing")]
pub mod testing;
#[cfg(feature = "runtime")]
pub mod topology;
#[cfg(feature = "runtime")]
pub mod transport;

#[cfg(feature = "runtime")]
pub use bus::{Bus, PublishOptions, Published, Unroutable, VersionedPublish};
pub use contract::{Event, EventContract, EventDef, Exchange};
pub use error::{ConnectError, ConsumeError, Entity, PublishError, TopologyError};
pub use event_manager_derive::Event;
pub use routing::{BindingPattern, EventKey, RoutingError, RoutingKey};
#[cfg(feature = "runtime")]
pub use service::{
    Delivery, HandlerError, HandlerResultExt, Health, HealthProbe, OnEvent, RetryPolicy,
    RunningService, Service,
};

/// The publish method `#[derive(Event)]` emits for one event (`order.submit(&bus)`), or,
/// with `fallback`, one that type-checks next to the derive's errors. Expands to nothing
/// without the `runtime` feature, which has no bus. Not a public API.
#[cfg(feature = "runtime")]
#[doc(hidden)]
#[macro_export]
macro_rules! __publish_method {
    (fallback $method:ident) => {
        pub async fn $method(
            &self,
            _bus: &$crate::Bus,
        ) -> ::core::result::Result<$crate::Published, $crate::PublishError> {
            ::core::unimplemented!()
        }
    };
    ($(#[$attr:meta])* $method:ident, $def:ident) => {
        $(#[$attr])*
        pub async fn $method(
            &self,
            bus: &$crate::Bus,
        ) -> ::core::result::Result<$crate::Published, $crate::PublishError> {
            bus.publish(Self::$def, self).await
        }
    };
}

/// Without the `runtime` feature there is no bus to publish on: no publish method.
#[cfg(not(feature = "runtime"))]
#[doc(hidden)]
#[macro_export]
macro_rules! __publish_method {
    ($($tokens:tt)*) => {};
}

/// The README's Rust blocks, compiled and run as doc tests (they use the test harness and
/// the outbox: `cargo test --doc --all-features`).
#[cfg(all(doctest, feature = "testing", feature = "postgres"))]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;

/// Items used by the code `#[derive(Event)]` generates. Not a public API.
#[doc(hidden)]
pub mod __private {
    pub use crate::__publish_method as publish_method;
    pub use crate::contract::{EventContract, EventDef};
    pub use inventory;

    use crate::contract::Exchange;
    use crate::routing::{EventKey, copy};

    /// The value of `Order::SUBMIT` in the code `#[derive(Event)]` emits next to its errors,
    /// so that uses of the constant type-check. Never registered, never run: that code does
    /// not compile.
    pub const fn fallback_event_def<T>() -> EventDef<T> {
        fn no_schema() -> schemars::Schema {
            schemars::Schema::default()
        }
        EventDef::__new(EventContract::__new(
            Exchange::topic("invalid"),
            "invalid",
            "0.0.0",
            0,
            "invalid.v0.invalid",
            "invalid",
            "invalid",
            "",
            no_schema,
        ))
    }

    /// The JSON Schema of `T` (2020-12).
    pub fn root_schema<T: schemars::JsonSchema>() -> schemars::Schema {
        schemars::generate::SchemaSettings::draft2020_12()
            .into_generator()
            .into_root_schema_for::<T>()
    }

    /// The length of `<exchange>.v<major>.<event>` (see [`EventKey`]).
    pub const fn routing_key_len(exchange: &str, major: u64, event: &str) -> usize {
        EventKey::new(exchange, major, event).len()
    }

    /// The bytes of `<exchange>.v<major>.<event>` (see [`EventKey`]); `N` must be
    /// [`routing_key_len`].
    pub const fn routing_key_bytes<const N: usize>(
        exchange: &str,
        major: u64,
        event: &str,
    ) -> [u8; N] {
        EventKey::new(exchange, major, event).to_bytes::<N>()
    }

    /// The length of the schema id of the event with `routing_key`.
    pub const fn schema_id_len(routing_key: &str) -> usize {
        crate::envelope::SCHEMA_ID_PREFIX.len() + routing_key.len()
    }

    /// The bytes of the schema id of the event with `routing_key` (see
    /// [`crate::envelope::schema_id`]); `N` must be [`schema_id_len`].
    pub const fn schema_id_bytes<const N: usize>(routing_key: &str) -> [u8; N] {
        let mut out = [0u8; N];
        let at = copy(&mut out, 0, crate::envelope::SCHEMA_ID_PREFIX.as_bytes());
        copy(&mut out, at, routing_key.as_bytes());
        out
    }

    /// `bytes` as text; they are ASCII by construction.
    pub const fn as_str(bytes: &'static [u8]) -> &'static str {
        match core::str::from_utf8(bytes) {
            Ok(s) => s,
            Err(_) => panic!("routing key bytes are not UTF-8"),
        }
    }
}
