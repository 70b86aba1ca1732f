//! A list of broker URLs: every password masked, a dead node skipped, and a lost node left
//! for the next one with the consumer and the unconfirmed publishes carried over.
//!
//! The "nodes" here are two TCP proxies in front of the one local RabbitMQ, so that a node can
//! be killed (its listener and every connection through it closed) while the broker and its
//! queues stay. The real three-node cluster runs in `scripts/cluster-failover`.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use event_manager::message::Message;
use event_manager::transport::{AmqpTransport, QueueKind, QueueSpec, Transport};
use event_manager::{Bus, ConnectError};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

/// A TCP proxy to the local broker; [`Proxy::kill`] closes it and every connection through it.
struct Proxy {
    port: u16,
    tasks: JoinSet<()>,
}

impl Proxy {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let broker = broker_addr();
        let mut tasks = JoinSet::new();
        tasks.spawn(async move {
            let mut connections = JoinSet::new();
            while let Ok((mut client, _)) = listener.accept().await {
                let broker = broker.clone();
                connections.spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(broker).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
            }
        });
        Self { port, tasks }
    }

    fn url(&self) -> String {
        let broker = common::amqp_url();
        let (head, tail) = broker.split_once('@').expect("credentials in AMQP_URL");
        let path = tail.find('/').map_or("", |at| &tail[at..]);
        format!("{head}@127.0.0.1:{}{path}", self.port)
    }

    /// Closes the listener and every connection through it (the accept task owns them).
    fn kill(&mut self) {
        self.tasks.abort_all();
    }
}

fn broker_addr() -> String {
    let url = common::amqp_url();
    let (_, rest) = url.split_once("://").unwrap();
    let authority = rest.split('/').next().unwrap();
    let host_port = authority.rsplit('@').next().unwrap();
    if host_port.contains(':') {
        host_port.to_owned()
    } else {
        format!("{host_port}:5672")
    }
}

#[tokio::test]
async fn every_password_of_a_url_list_is_masked() {
    // The report: a list read as one URL printed the later passwords in clear.
    let list =
        "amqp://guest:first-s3cret@127.0.0.1:1/%2f,amqp://guest:first-s3cret@127.0.0.1:2/%2f";
    let err = Bus::connect(list).await.unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, ConnectError::Broker { .. }), "{err:?}");
    assert!(!text.contains("s3cret"), "{text}");
    assert!(!format!("{err:?}").contains("s3cret"));
    assert!(text.contains("amqp://guest:***@127.0.0.1:1/%2f"), "{text}");
    assert!(text.contains("amqp://guest:***@127.0.0.1:2/%2f"), "{text}");
    // URLs with different credentials cannot share one connection: a named error, no
    // password either.
    let list = "amqp://a:pw-one-1@127.0.0.1:1/%2f, amqp://b:pw,two-2@127.0.0.1:2/%2f";
    let err = Bus::connect(list).await.unwrap_err();
    let text = format!("{err} {err:?}");
    assert!(matches!(err, ConnectError::Config { .. }), "{err:?}");
    assert!(
        !text.contains("pw-one") && !text.contains("two-2"),
        "{text}"
    );
}

#[tokio::test]
async fn a_dead_node_first_in_the_list_is_skipped() {
    let dead = "amqp://guest:guest@127.0.0.1:1/%2f";
    let list = format!("{dead},{}", common::amqp_url());
    let transport = AmqpTransport::connect(&list).await.unwrap();
    assert_eq!(
        transport.node().as_deref(),
        Some(event_manager::transport::urls::redact(&common::amqp_url()).as_str())
    );
    let queue = common::unique("skip_dead");
    transport
        .declare_queue(&QueueSpec::durable(&queue))
        .await
        .unwrap();
    transport.publish(addressed(&queue, 1)).await.unwrap();
    let got = transport.get(&queue).await.unwrap().expect("the message");
    got.ack().await.unwrap();
    transport.delete_queue(&queue).await.unwrap();
    transport.close().await;
}

/// The connection's node is killed while a publisher and a consumer run: the transport
/// reconnects to the other node of the list, the consumer resumes there, every publish is
/// confirmed, and every message arrives (duplicates allowed, lost = 0).
#[tokio::test]
async fn a_lost_node_is_left_for_the_next_one_without_loss() {
    let mut first = Proxy::start().await;
    let second = Proxy::start().await;
    let list = format!("{},{}", first.url(), second.url());
    let transport = std::sync::Arc::new(AmqpTransport::connect(&list).await.unwrap());
    assert!(transport.node().unwrap().contains(&first.port.to_string()));
    let queue = common::unique("failover");
    let mut spec = QueueSpec::durable(&queue);
    spec.kind = QueueKind::Quorum;
    transport.declare_queue(&spec).await.unwrap();
    let mut subscription = transport.subscribe(&queue, 50).await.unwrap();

    const COUNT: u64 = 3000;
    let publisher = {
        let transport = transport.clone();
        let queue = queue.clone();
        tokio::spawn(async move {
            let mut confirmed = 0;
            let mut pending = JoinSet::new();
            for id in 0..COUNT {
                let transport = transport.clone();
                let message = addressed(&queue, id);
                pending.spawn(async move { transport.publish(message).await });
                if id % 100 == 99 {
                    while let Some(done) = pending.join_next().await {
                        done.unwrap().expect("every publish is confirmed");
                        confirmed += 1;
                    }
                }
            }
            while let Some(done) = pending.join_next().await {
                done.unwrap().expect("every publish is confirmed");
                confirmed += 1;
            }
            confirmed
        })
    };

    let mut seen = BTreeSet::new();
    let mut deliveries = 0u64;
    let mut killed = false;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while seen.len() < COUNT as usize {
        let next = tokio::time::timeout_at(deadline, subscription.next())
            .await
            .unwrap_or_else(|_| panic!("only {} of {COUNT} arrived within 60 s", seen.len()));
        let incoming = next.expect("the subscription survives the lost node");
        deliveries += 1;
        let id: u64 = std::str::from_utf8(&incoming.message.body)
            .unwrap()
            .parse()
            .unwrap();
        seen.insert(id);
        let _ = incoming.ack().await;
        if !killed && seen.len() >= COUNT as usize / 3 {
            killed = true;
            first.kill();
        }
    }
    let confirmed = publisher.await.unwrap();
    assert!(killed);
    assert!(
        transport.node().unwrap().contains(&second.port.to_string()),
        "{:?}",
        transport.node()
    );
    println!(
        "failover: published={COUNT} confirmed={confirmed} handled={} deliveries={deliveries} lost={}",
        seen.len(),
        COUNT - seen.len() as u64
    );
    assert_eq!(confirmed, COUNT);
    subscription.cancel().await;
    transport.delete_queue(&queue).await.unwrap();
    transport.close().await;
}

/// A message to `queue` through the default exchange, its body the decimal `id`.
fn addressed(queue: &str, id: u64) -> Message {
    Message {
        exchange: "".into(),
        routing_key: queue.to_owned().into(),
        body: id.to_string().into_bytes().into(),
        properties: event_manager::message::Properties {
            message_id: Some(format!("failover-{id}")),
            ..Default::default()
        },
    }
}
