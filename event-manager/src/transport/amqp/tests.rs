//! The transport's own bookkeeping, against the local RabbitMQ (`AMQP_URL`, or the default
//! local broker): these tests fail, never skip, when no broker answers.

use super::*;

/// `AMQP_URL` when set (as `./scripts/test` sets it), else the local broker.
fn amqp_url() -> String {
    std::env::var(crate::bus::AMQP_URL_ENV)
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned())
}

fn unique(base: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("u{}x{nanos:x}.{base}", std::process::id())
}

#[tokio::test]
async fn a_get_keeps_a_channel_only_for_a_queue_that_exists() {
    let transport = AmqpTransport::connect(&amqp_url()).await.unwrap();
    let missing = unique("never_declared");
    let read = unique("read");
    for _ in 0..2 {
        let got = transport.get(&missing).await;
        assert!(
            matches!(
                &got,
                Err(ConsumeError::Topology(TopologyError::NotFound { .. }))
            ),
            "{:?}",
            got.map(|g| g.is_some())
        );
    }
    let after_missing = transport.gets().len();
    transport
        .declare_queue(&QueueSpec::durable(&read))
        .await
        .unwrap();
    let empty = transport.get(&read).await.unwrap();
    let while_read = transport.gets().len();
    transport.delete_queue(&read).await.unwrap();
    let after_delete = transport.gets().len();
    transport.close().await;
    assert!(empty.is_none());
    assert_eq!(after_missing, 0, "a missing queue kept its get channel");
    assert_eq!(while_read, 1);
    assert_eq!(after_delete, 0);
}

/// RabbitMQ cuts the text of a channel close to 255 bytes: for an exchange name of more
/// than about 216 bytes, "no exchange '…' in vhost '/'" loses its end. Such a publish to a
/// missing exchange used to be taken for a broken channel, sent 20 times (closing the
/// channel each time) and fail as a connection error, never `NotFound`; the bus then never
/// declared the exchange again.
#[tokio::test]
async fn a_missing_exchange_with_a_long_name_is_not_found() {
    let transport = AmqpTransport::connect(&amqp_url()).await.unwrap();
    for len in [60, 230, 250, 255] {
        let base = unique("long_missing_exchange_");
        let name = format!("{base}{}", "x".repeat(len - base.len()));
        assert_eq!(name.len(), len);
        let message = Message {
            exchange: name.clone().into(),
            routing_key: "a.v1.b".into(),
            body: Vec::from(&b"{}"[..]).into(),
            properties: Default::default(),
        };
        let published = transport.publish(message).await;
        assert!(
            matches!(
                &published,
                Err(PublishError::Topology(TopologyError::NotFound { entity: Entity::Exchange(e) })) if *e == name
            ),
            "{len}: {published:?}"
        );
    }
    transport.close().await;
}
