//! `Exchange::transient` on RabbitMQ: the exchange is declared non-durable, and a durable
//! declaration of the same name is refused by the broker.

mod common;

use event_manager::{Bus, Exchange, TopologyError};

const AUDIT: Exchange = Exchange::topic("audit").transient();

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transient_exchange_is_declared_non_durable() {
    assert!(!AUDIT.is_durable());
    let bus = Bus::connect(&common::amqp_url())
        .await
        .unwrap_or_else(|e| panic!("RabbitMQ is required for this test: {e}"))
        .with_namespace(common::unique("transient"));
    bus.topology().declare_exchange(AUDIT).await.unwrap();
    let name = bus.topology().exchange_name(AUDIT);
    let raw = event_manager::testing::transport(&bus);
    // The same name, declared again non-durable: equivalent, accepted.
    raw.declare_exchange(&name, false).await.unwrap();
    // Declared durable: RabbitMQ refuses an inequivalent `durable` flag.
    let err = raw.declare_exchange(&name, true).await.unwrap_err();
    assert!(
        matches!(&err, TopologyError::Mismatch { argument, .. } if argument == "durable"),
        "{err:?}"
    );
    raw.delete_exchange(&name).await.unwrap();
    bus.close().await;
}
