//! The registry refuses contradicting contracts when a bus connects or a service starts.
//! This test binary links a second type claiming `order.v1.submit`, next to the example
//! contracts' `Order`.

use event_manager::registry::{self, Conflict};
use event_manager::{Bus, ConnectError, ConsumeError, EventContract, Exchange};
use event_manager_examples::ORDER;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A second payload type claiming the routing key of `Order::SUBMIT`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, event_manager::Event)]
#[event(exchange = ORDER, version = "1.0.0", events(submit))]
pub struct ImpostorOrder {
    /// An id.
    pub id: u64,
}

#[tokio::test]
async fn two_types_claiming_one_routing_key_are_refused_at_startup() {
    let err = registry::validate().unwrap_err();
    match err.conflicts() {
        [
            Conflict::DuplicateRoutingKey {
                routing_key,
                first,
                second,
            },
        ] => {
            assert_eq!(routing_key, "order.v1.submit");
            let names = [first.as_str(), second.as_str()];
            assert!(
                names.iter().any(|n| n.ends_with("ImpostorOrder")),
                "{names:?}"
            );
            assert!(names.iter().any(|n| n.ends_with("::Order")), "{names:?}");
        }
        other => panic!("expected DuplicateRoutingKey, got {other:?}"),
    }
    assert!(err.to_string().contains("order.v1.submit"));

    assert!(matches!(
        Bus::connect("memory://").await,
        Err(ConnectError::Registry(e)) if matches!(e.conflicts(), [Conflict::DuplicateRoutingKey { .. }])
    ));
    let bus = Bus::in_memory();
    let mut service = bus.service("impostor");
    service.on(ImpostorOrder::SUBMIT, |_: ImpostorOrder, _| async {
        Ok::<_, std::convert::Infallible>(())
    });
    assert!(matches!(
        service.start().await,
        Err(ConsumeError::Registry(e)) if matches!(e.conflicts(), [Conflict::DuplicateRoutingKey { .. }])
    ));
}

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
    let err = registry::check(&[&bad]).unwrap_err();
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
    registry::check(&[&good]).unwrap();
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
    let err = registry::check(&[&bad_version, &first, &second]).unwrap_err();
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
