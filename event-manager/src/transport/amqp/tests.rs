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
