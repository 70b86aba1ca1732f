//! `Exchange::transient` on RabbitMQ: the exchange is declared non-durable, and a durable
//! declaration of the same name is refused by the broker; a refusal leaves messages got with
//! `basic.get` with their taker.

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
/// declaration on the same transport is refused: the broker closes the channel of a refused
/// declaration, and that must not be the channel the message was got on (it would go back to
/// the queue, be delivered again, and its acknowledgement would fail).
#[tokio::test]
async fn a_refused_declaration_does_not_put_back_a_message_got() {
    use event_manager::message::Message;
    use event_manager::transport::{AmqpTransport, QueueSpec, Transport};

    let transport = AmqpTransport::connect(&common::amqp_url()).await.unwrap();
    let queue = common::unique("got_then_refused");
    let exchange = common::unique("refused_exchange");
    transport
        .declare_queue(&QueueSpec::durable(&queue))
        .await
        .unwrap();
    let message = Message {
        exchange: "".into(),
        routing_key: queue.clone().into(),
        body: b"7".to_vec().into(),
        properties: Default::default(),
    };
    transport.publish(message).await.unwrap();
    let got = transport.get(&queue).await.unwrap().expect("a message");
    transport.declare_exchange(&exchange, false).await.unwrap();
    let refused = transport.declare_exchange(&exchange, true).await;
    assert!(
        matches!(&refused, Err(TopologyError::Mismatch { .. })),
        "{refused:?}"
    );
    let acked = got.ack().await;
    let again = transport.get(&queue).await.unwrap();
    let again_body = again.as_ref().map(|g| g.message.body.to_vec());
    if let Some(again) = again {
        again.ack().await.unwrap();
    }
    transport.delete_exchange(&exchange).await.unwrap();
    transport.delete_queue(&queue).await.unwrap();
    transport.close().await;
    assert!(acked.is_ok(), "the acknowledgement failed: {acked:?}");
    assert_eq!(again_body, None, "the message got went back to the queue");
}
