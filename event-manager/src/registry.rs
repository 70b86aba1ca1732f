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
//!
//! A [`RegistryError`] lists every [`Conflict`] found, not only the first.

use std::collections::BTreeMap;
use std::fmt;

use crate::contract::{EventContract, Exchange};
use crate::routing::EventKey;

inventory::collect!(EventContract);

/// Contracts that contradict each other or themselves: every [`Conflict`] found, at least one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryError {
    conflicts: Vec<Conflict>,
}

impl RegistryError {
    /// Every conflict found, in the order of the contracts checked; never empty.
    pub fn conflicts(&self) -> &[Conflict] {
        &self.conflicts
    }
}

impl fmt::Display for RegistryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.conflicts.as_slice() {
            [one] => write!(f, "{one}"),
            all => {
                write!(f, "{} contract conflicts:", all.len())?;
                for conflict in all {
                    write!(f, "\n  - {conflict}")?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for RegistryError {}

/// One contradiction between contracts, or within one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Conflict {
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
    #[error(
        "exchange `{name}` is declared with different settings (durable or transient, Celery wire or not)"
    )]
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
    conflicts_among(&events())
}

/// Checks a set of contracts as [`validate`] does, reporting every conflict found.
pub(crate) fn conflicts_among(contracts: &[&EventContract]) -> Result<(), RegistryError> {
    let mut conflicts = Vec::new();
    let mut by_key: BTreeMap<&str, &EventContract> = BTreeMap::new();
    let mut exchanges: BTreeMap<&str, Exchange> = BTreeMap::new();
    for &c in contracts {
        let expected = EventKey::new(c.exchange().name(), c.version().major, c.name());
        if EventKey::parse(c.routing_key()) != Some(expected) || expected.major() != c.major() {
            conflicts.push(Conflict::VersionMismatch {
                routing_key: c.routing_key().to_owned(),
                type_name: c.type_name().to_owned(),
                version: c.version_str().to_owned(),
                expected: expected.to_string(),
            });
        }
        match by_key.get(c.routing_key()) {
            Some(first) if first.type_name() != c.type_name() => {
                conflicts.push(Conflict::DuplicateRoutingKey {
                    routing_key: c.routing_key().to_owned(),
                    first: first.type_name().to_owned(),
                    second: c.type_name().to_owned(),
                });
            }
            Some(_) => {}
            None => {
                by_key.insert(c.routing_key(), c);
            }
        }
        match exchanges.get(c.exchange().name()) {
            Some(first) if *first != c.exchange() => {
                let conflict = Conflict::ExchangeConflict {
                    name: c.exchange().name().to_owned(),
                };
                if !conflicts.contains(&conflict) {
                    conflicts.push(conflict);
                }
            }
            Some(_) => {}
            None => {
                exchanges.insert(c.exchange().name(), c.exchange());
            }
        }
    }
    if conflicts.is_empty() {
        Ok(())
    } else {
        Err(RegistryError { conflicts })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema() -> schemars::Schema {
        schemars::json_schema!({})
    }

    #[test]
    fn a_version_disagreeing_with_its_routing_key_is_refused() {
        let exchange = Exchange::topic("order");
        let bad = EventContract::__new(
            exchange,
            "submit",
            "2.0.0",
            1,
            "order.v1.submit",
            "urn:event-manager:schema:order.v1.submit",
            "Bad",
            "",
            schema,
        );
        let err = conflicts_among(&[&bad]).unwrap_err();
        assert!(
            matches!(err.conflicts(), [Conflict::VersionMismatch { expected, .. }] if expected == "order.v2.submit"),
            "{err:?}"
        );
        let good = EventContract::__new(
            exchange,
            "submit",
            "2.0.0",
            2,
            "order.v2.submit",
            "urn:event-manager:schema:order.v2.submit",
            "Good",
            "",
            schema,
        );
        conflicts_among(&[&good]).unwrap();
    }

    #[test]
    fn every_conflict_is_reported_not_only_the_first() {
        let contract = |exchange, version, major, key, type_name| {
            EventContract::__new(
                exchange,
                "submit",
                version,
                major,
                key,
                "urn:event-manager:schema:x",
                type_name,
                "",
                schema,
            )
        };
        let bad_version = contract(
            Exchange::topic("order"),
            "2.0.0",
            1,
            "order.v1.submit",
            "BadVersion",
        );
        let first = contract(
            Exchange::topic("invoice"),
            "1.0.0",
            1,
            "invoice.v1.submit",
            "First",
        );
        let second = contract(
            Exchange::topic("invoice").transient(),
            "1.0.0",
            1,
            "invoice.v1.submit",
            "Second",
        );
        let err = conflicts_among(&[&bad_version, &first, &second]).unwrap_err();
        match err.conflicts() {
            [
                Conflict::VersionMismatch { type_name, .. },
                Conflict::DuplicateRoutingKey {
                    routing_key,
                    first,
                    second,
                },
                Conflict::ExchangeConflict { name },
            ] => {
                assert_eq!(type_name, "BadVersion");
                assert_eq!(routing_key, "invoice.v1.submit");
                assert_eq!((first.as_str(), second.as_str()), ("First", "Second"));
                assert_eq!(name, "invoice");
            }
            other => panic!("expected three conflicts, got {other:?}"),
        }
        let text = err.to_string();
        assert!(text.starts_with("3 contract conflicts:"), "{text}");
        for part in ["BadVersion", "invoice.v1.submit", "exchange `invoice`"] {
            assert!(text.contains(part), "{text}");
        }
    }
}
