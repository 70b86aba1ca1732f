//! Every event contract linked into the binary, collected at link time with `inventory`.
//!
//! `#[derive(Event)]` registers each contract it generates, so a contracts crate only has to
//! be linked for its events to be listed here, exported as schemas and checked.
//!
//! ```standalone_crate
//! use event_manager::registry;
//!
//! for contract in registry::events() {
//!     println!("{} {}", contract.routing_key(), contract.version_str());
//! }
//! registry::validate()?;
//! # Ok::<(), event_manager::registry::RegistryError>(())
//! ```

use std::collections::BTreeMap;

use crate::contract::{EventContract, Exchange};
use crate::routing::EventKey;

inventory::collect!(EventContract);

/// Contracts that contradict each other or themselves.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// Two payload types claim the same routing key (and so the same major version).
    #[error(
        "routing key `{routing_key}` is claimed by both `{first}` and `{second}`; each major version of an event needs exactly one payload type"
    )]
    DuplicateRoutingKey {
        /// The routing key.
        routing_key: String,
        /// One type claiming it.
        first: String,
        /// The other type claiming it.
        second: String,
    },
    /// A contract's version disagrees with the `v<major>` word of its routing key, or the key
    /// is not of the form `<exchange>.v<major>.<event>`.
    #[error(
        "contract `{routing_key}` of `{type_name}` has version {version}, but its routing key must be `{expected}`"
    )]
    VersionMismatch {
        /// The routing key.
        routing_key: String,
        /// The payload type.
        type_name: String,
        /// The declared version.
        version: String,
        /// The routing key the version calls for.
        expected: String,
    },
    /// Two exchanges share a name but not their settings.
    #[error("exchange `{name}` is declared both durable and transient")]
    ExchangeConflict {
        /// The exchange name.
        name: String,
    },
}

/// Every registered event contract, ordered by routing key.
pub fn events() -> Vec<&'static EventContract> {
    let mut all: Vec<&'static EventContract> =
        inventory::iter::<EventContract>.into_iter().collect();
    all.sort_by_key(|c| (c.routing_key(), c.type_name()));
    all.dedup_by(|a, b| a.routing_key() == b.routing_key() && a.type_name() == b.type_name());
    all
}

/// The contract published with `routing_key`, if one is registered.
pub fn find(routing_key: &str) -> Option<&'static EventContract> {
    inventory::iter::<EventContract>
        .into_iter()
        .find(|c| c.routing_key() == routing_key)
}

/// Every exchange used by a registered contract, ordered by name.
pub fn exchanges() -> Vec<Exchange> {
    let mut by_name: BTreeMap<&'static str, Exchange> = BTreeMap::new();
    for c in events() {
        by_name.entry(c.exchange().name()).or_insert(c.exchange());
    }
    by_name.into_values().collect()
}

/// Checks the registered contracts: one payload type per routing key, versions agreeing with
/// routing keys, one setting per exchange name. Services call this when they start.
pub fn validate() -> Result<(), RegistryError> {
    check(&events())
}

/// Checks a set of contracts as [`validate`] does.
pub fn check(contracts: &[&EventContract]) -> Result<(), RegistryError> {
    let mut by_key: BTreeMap<&str, &EventContract> = BTreeMap::new();
    let mut exchanges: BTreeMap<&str, Exchange> = BTreeMap::new();
    for &c in contracts {
        let expected = EventKey::new(c.exchange().name(), c.version().major, c.name());
        if EventKey::parse(c.routing_key()) != Some(expected) || expected.major() != c.major() {
            return Err(RegistryError::VersionMismatch {
                routing_key: c.routing_key().to_owned(),
                type_name: c.type_name().to_owned(),
                version: c.version_str().to_owned(),
                expected: expected.to_string(),
            });
        }
        if let Some(first) = by_key.insert(c.routing_key(), c)
            && first.type_name() != c.type_name()
        {
            return Err(RegistryError::DuplicateRoutingKey {
                routing_key: c.routing_key().to_owned(),
                first: first.type_name().to_owned(),
                second: c.type_name().to_owned(),
            });
        }
        if let Some(other) = exchanges.insert(c.exchange().name(), c.exchange())
            && other != c.exchange()
        {
            return Err(RegistryError::ExchangeConflict {
                name: c.exchange().name().to_owned(),
            });
        }
    }
    Ok(())
}
