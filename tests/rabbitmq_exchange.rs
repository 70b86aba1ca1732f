//! `Exchange::transient` on RabbitMQ: the exchange is declared non-durable, and a durable
//! declaration of the same name is refused by the broker; a refusal, or the deletion of
//! another queue, leaves messages got with `basic.get` with their taker.

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

/// A message got with `basic.get` and not yet acknowledged stays with its taker when a
/// declaration on the same transport is refused, or another queue read with `basic.get` is
/// deleted: the broker closes the channel of a refused declaration, and deleting a queue
/// closes the channel it was read on; neither may be the channel the message was got on (it
/// would go back to the queue, be delivered again, and its acknowledgement would fail).
#[tokio::test]
async fn a_message_got_stays_got_when_a_declaration_is_refused_or_a_queue_deleted() {
    use event_manager::message::Message;
    use event_manager::transport::{AmqpTransport, QueueSpec, Transport};

    let transport = AmqpTransport::connect(&common::amqp_url()).await.unwrap();
    let queue = common::unique("got_then_refused");
    let other = common::unique("read_then_deleted");
    let exchange = common::unique("refused_exchange");
    for name in [&queue, &other] {
        transport
            .declare_queue(&QueueSpec::durable(name))
            .await
            .unwrap();
    }
    let message = Message {
        exchange: "".into(),
        routing_key: queue.clone().into(),
        body: b"7".to_vec().into(),
        properties: Default::default(),
    };
    transport.publish(message).await.unwrap();
    let got = transport.get(&queue).await.unwrap().expect("a message");
    assert!(transport.get(&other).await.unwrap().is_none());
    transport.delete_queue(&other).await.unwrap();
    transport.declare_exchange(&exchange, false).await.unwrap();
    let refused = transport.declare_exchange(&exchange, true).await;
    let acked = got.ack().await;
    let again = transport.get(&queue).await.unwrap();
    let again_body = again.as_ref().map(|g| g.message.body.to_vec());
    if let Some(again) = again {
        let _ = again.ack().await;
    }
    transport.delete_exchange(&exchange).await.unwrap();
    transport.delete_queue(&queue).await.unwrap();
    transport.close().await;
    assert!(
        matches!(&refused, Err(TopologyError::Mismatch { .. })),
        "{refused:?}"
    );
    assert!(acked.is_ok(), "the acknowledgement failed: {acked:?}");
    assert_eq!(again_body, None, "the message got went back to the queue");
}
