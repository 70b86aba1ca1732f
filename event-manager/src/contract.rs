//! Exchanges, the [`Event`] trait and the per-event contract descriptor [`EventDef`].
//!
//! A contract says which exchange an event travels through, its name, its semver version and
//! therefore its routing key `<exchange>.v<major>.<event>`. Contracts are normally declared
//! with `#[derive(Event)]`, which generates one [`EventDef`] constant per event the payload
//! type backs.

use std::fmt;
use std::marker::PhantomData;

use schemars::JsonSchema;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::routing::is_valid_word;

/// A topic exchange (the only kind contracts use) owned by one domain, such as `order`.
///
/// The name is also the first word of every routing key published through it, so it must be
/// a single word of `A-Z a-z 0-9 _ -`. [`Exchange::topic`] is a `const fn` that refuses
/// anything else at compile time when used in a constant:
///
/// ```
/// use event_manager::Exchange;
///
/// pub const ORDER: Exchange = Exchange::topic("order");
/// assert_eq!(ORDER.name(), "order");
/// assert!(ORDER.is_durable());
/// ```
///
/// ```compile_fail
/// use event_manager::Exchange;
/// const BAD: Exchange = Exchange::topic("order.v1"); // a dot: refused at compile time
/// let _ = BAD;
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Exchange {
    name: &'static str,
    durable: bool,
    celery: bool,
}

impl Exchange {
    /// A durable topic exchange named `name`.
    ///
    /// # Panics
    ///
    /// When `name` is not a single word of `A-Z a-z 0-9 _ -`; in a `const` this is a compile
    /// error.
    pub const fn topic(name: &'static str) -> Self {
        assert!(
            is_valid_word(name.as_bytes()),
            "an exchange name must be one word of A-Z a-z 0-9 _ -"
        );
        Self {
            name,
            durable: true,
            celery: false,
        }
    }

    /// The same exchange, whose events are published as Celery task messages (protocol 2),
    /// for a Python `event_manager` deployment whose Celery workers consume them: the task
    /// named after the routing key, the payload in its `instance` keyword argument. Consuming
    /// needs no marking: a service reads Celery task messages on any exchange.
    ///
    /// ```
    /// use event_manager::Exchange;
    ///
    /// pub const ORDER: Exchange = Exchange::topic("order").celery();
    /// assert!(ORDER.is_celery());
    /// ```
    pub const fn celery(self) -> Self {
        Self {
            celery: true,
            ..self
        }
    }

    /// Whether its events are published as Celery task messages ([`Exchange::celery`]).
    pub const fn is_celery(&self) -> bool {
        self.celery
    }

    /// The same exchange, declared non-durable (it disappears when the broker restarts).
    pub const fn transient(self) -> Self {
        Self {
            durable: false,
            ..self
        }
    }

    /// The exchange name.
    pub const fn name(&self) -> &'static str {
        self.name
    }

    /// Whether the exchange survives a broker restart.
    pub const fn is_durable(&self) -> bool {
        self.durable
    }
}

impl fmt::Display for Exchange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name)
    }
}

/// A payload type that backs one or more events.
///
/// Implemented by `#[derive(Event)]`; the derive also adds one [`EventDef`] constant per event
/// (`Order::SUBMIT`) and a publish method per event (`order.submit(&bus)`). The same payload
/// type may back several events of one exchange and version, e.g. `order.v1.submit` and
/// `order.v1.chargeback` both carrying an `Order`.
///
/// The per-event facts (name, routing key) live on [`EventDef`]/[`EventContract`] rather than
/// on this trait, because one type can back several events.
pub trait Event: Serialize + DeserializeOwned + JsonSchema + Send + Sync + 'static {
    /// The contracts of every event this type backs.
    const EVENTS: &'static [EventContract];
}

/// The facts of one event contract: exchange, event name, semver version, routing key and the
/// JSON Schema of its payload. Every contract linked into the binary is listed by
/// [`crate::registry`].
#[derive(Clone, Copy)]
pub struct EventContract {
    exchange: Exchange,
    name: &'static str,
    version: &'static str,
    major: u64,
    routing_key: &'static str,
    schema_id: &'static str,
    type_name: &'static str,
    description: &'static str,
    schema: fn() -> schemars::Schema,
}

impl EventContract {
    #[doc(hidden)]
    #[allow(clippy::too_many_arguments)]
    pub const fn __new(
        exchange: Exchange,
        name: &'static str,
        version: &'static str,
        major: u64,
        routing_key: &'static str,
        schema_id: &'static str,
        type_name: &'static str,
        description: &'static str,
        schema: fn() -> schemars::Schema,
    ) -> Self {
        Self {
            exchange,
            name,
            version,
            major,
            routing_key,
            schema_id,
            type_name,
            description,
            schema,
        }
    }

    /// The exchange the event is published to.
    pub const fn exchange(&self) -> Exchange {
        self.exchange
    }

    /// The event name, the last word of the routing key (`submit`).
    pub const fn name(&self) -> &'static str {
        self.name
    }

    /// The full semver version as written in the contract (`1.2.0`).
    pub const fn version_str(&self) -> &'static str {
        self.version
    }

    /// The full semver version (`1.2.0`).
    pub fn version(&self) -> semver::Version {
        semver::Version::parse(self.version)
            .unwrap_or_else(|_| semver::Version::new(self.major, 0, 0))
    }

    /// The major version, the one that appears in the routing key.
    pub const fn major(&self) -> u64 {
        self.major
    }

    /// The routing key, `<exchange>.v<major>.<event>` (`order.v1.submit`).
    pub const fn routing_key(&self) -> &'static str {
        self.routing_key
    }

    /// The `$id` of the payload's exported JSON Schema (`urn:event-manager:schema:<key>`),
    /// also sent in the `cloudEvents_dataschema` header.
    pub const fn schema_id(&self) -> &'static str {
        self.schema_id
    }

    /// The Rust type carrying the payload, as `std::any::type_name` spells it.
    pub const fn type_name(&self) -> &'static str {
        self.type_name
    }

    /// The payload's doc comment, empty when it has none.
    pub const fn description(&self) -> &'static str {
        self.description
    }

    /// The JSON Schema (2020-12) of the payload, as schemars generates it.
    pub fn payload_schema(&self) -> schemars::Schema {
        (self.schema)()
    }
}

impl fmt::Debug for EventContract {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventContract")
            .field("routing_key", &self.routing_key)
            .field("version", &self.version)
            .field("type_name", &self.type_name)
            .finish_non_exhaustive()
    }
}

impl fmt::Display for EventContract {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.routing_key, self.version)
    }
}

/// One event of a payload type `T`: the handle used to publish it and to register callbacks
/// for it. Generated by `#[derive(Event)]` as an associated constant (`Order::SUBMIT`).
pub struct EventDef<T> {
    contract: EventContract,
    payload: PhantomData<fn() -> T>,
}

impl<T> EventDef<T> {
    #[doc(hidden)]
    pub const fn __new(contract: EventContract) -> Self {
        Self {
            contract,
            payload: PhantomData,
        }
    }

    /// The contract of this event.
    pub const fn contract(&self) -> &EventContract {
        &self.contract
    }

    /// The exchange the event is published to.
    pub const fn exchange(&self) -> Exchange {
        self.contract.exchange
    }

    /// The event name (`submit`).
    pub const fn name(&self) -> &'static str {
        self.contract.name
    }

    /// The routing key (`order.v1.submit`).
    pub const fn routing_key(&self) -> &'static str {
        self.contract.routing_key
    }

    /// The full semver version (`1.2.0`).
    pub fn version(&self) -> semver::Version {
        self.contract.version()
    }
}

impl<T> Clone for EventDef<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for EventDef<T> {}

impl<T> fmt::Debug for EventDef<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.contract, f)
    }
}
