//! The registry refuses contradicting contracts when a bus connects or a service starts.
//! This test binary links a second type claiming `order.v1.submit`, next to the example
//! contracts' `Order`.

use event_manager::registry::{self, Conflict};
use event_manager::{Bus, ConnectError, ConsumeError};
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
        Ok(())
    });
    assert!(matches!(
        service.start().await,
        Err(ConsumeError::Registry(e)) if matches!(e.conflicts(), [Conflict::DuplicateRoutingKey { .. }])
    ));
}
