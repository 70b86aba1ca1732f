//! The wire contract as a non-Rust consumer sees it: a raw `lapin` consumer reads what the
//! typed publisher sent and checks every property and header of DESIGN's wire contract.

mod common;

use event_manager::envelope::{self, cloud_events};
use event_manager::{Bus, PublishOptions};
use event_manager_examples::{ORDER, Order};
use lapin::options::{BasicGetOptions, QueueBindOptions, QueueDeclareOptions, QueueDeleteOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Connection, ConnectionProperties};

fn header<'a>(table: &'a FieldTable, name: &str) -> &'a AMQPValue {
    table
        .inner()
        .get(name)
        .unwrap_or_else(|| panic!("header {name} missing: {table:?}"))
}

fn text(value: &AMQPValue) -> String {
    match value {
        AMQPValue::LongString(s) => String::from_utf8(s.as_bytes().to_vec()).unwrap(),
        other => panic!("expected a long string, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn published_message_carries_the_wire_contract() {
    let url = common::amqp_url();
    let namespace = common::unique("wire");
    let bus = Bus::connect(&url)
        .await
        .unwrap_or_else(|e| panic!("RabbitMQ is required for this test: {e}"))
        .with_namespace(&namespace)
        .with_app_id("order-service");
    let exchange = bus.topology().exchange_name(ORDER);
    bus.topology().declare_exchange(ORDER).await.unwrap();

    let raw = Connection::connect(&url, ConnectionProperties::default())
        .await
        .unwrap();
    let channel = raw.create_channel().await.unwrap();
    let queue = format!("{namespace}.raw");
    channel
        .queue_declare(
            queue.as_str().into(),
            QueueDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    channel
        .queue_bind(
            queue.as_str().into(),
            exchange.as_str().into(),
            "order.*.submit".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();

    let order = Order::sample(77);
    let options = PublishOptions {
        correlation_id: Some("corr-1".into()),
        traceparent: Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into()),
        ..PublishOptions::default()
    };
    let published = bus
        .publish_with(Order::SUBMIT, &order, &options)
        .await
        .unwrap();

    let got = channel
        .basic_get(queue.as_str().into(), BasicGetOptions { no_ack: true })
        .await
        .unwrap()
        .expect("the message is in the queue");
    let d = &got.delivery;
    let p = &d.properties;
    assert_eq!(d.routing_key.as_str(), "order.v1.submit");
    assert_eq!(serde_json::from_slice::<Order>(&d.data).unwrap(), order);
    assert_eq!(
        p.content_type().as_ref().unwrap().as_str(),
        "application/json"
    );
    assert_eq!(
        p.message_id().as_ref().unwrap().as_str(),
        published.message_id
    );
    assert!(p.timestamp().unwrap() > 1_700_000_000);
    assert_eq!(p.kind().as_ref().unwrap().as_str(), "order.v1.submit");
    assert_eq!(p.app_id().as_ref().unwrap().as_str(), "order-service");
    assert_eq!(p.correlation_id().as_ref().unwrap().as_str(), "corr-1");
    assert_eq!(*p.delivery_mode(), Some(2));

    let h = p.headers().as_ref().expect("headers");
    assert_eq!(text(header(h, envelope::VERSION_HEADER)), "1.2.0");
    assert_eq!(text(header(h, cloud_events::SPECVERSION)), "1.0");
    assert_eq!(text(header(h, cloud_events::ID)), published.message_id);
    assert_eq!(text(header(h, cloud_events::TYPE)), "order.v1.submit");
    assert_eq!(text(header(h, cloud_events::SOURCE)), "order-service");
    let time = text(header(h, cloud_events::TIME));
    assert!(
        humantime_like_rfc3339(&time),
        "cloudEvents_time {time} is not RFC 3339"
    );
    assert_eq!(
        text(header(h, cloud_events::DATASCHEMA)),
        envelope::schema_id("order.v1.submit")
    );
    assert_eq!(
        text(header(h, envelope::TRACEPARENT_HEADER)),
        options.traceparent.unwrap()
    );
    assert!(
        h.inner()
            .keys()
            .all(|k| !k.as_str().starts_with("cloudEvents:")),
        "one separator per message: `_`"
    );

    channel
        .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
        .await
        .unwrap();
    event_manager::testing::transport(&bus)
        .delete_exchange(&exchange)
        .await
        .unwrap();
    raw.close(200, "OK".into()).await.unwrap();
    bus.close().await;
}

/// `2026-11-21T23:44:31.123Z`
fn humantime_like_rfc3339(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() >= 20
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b'T'
        && b[13] == b':'
        && b[16] == b':'
        && s.ends_with('Z')
}
