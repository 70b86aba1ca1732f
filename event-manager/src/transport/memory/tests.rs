//! Unit tests of the in-memory broker.

use super::*;
use std::time::Duration;

/// A small deterministic generator of patterns and keys.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, bound: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 33) % bound as u64) as usize
    }

    fn words(&mut self, alphabet: &[&str], min: usize, max: usize) -> String {
        let n = min + self.next(max - min + 1);
        (0..n)
            .map(|_| alphabet[self.next(alphabet.len())])
            .collect::<Vec<_>>()
            .join(".")
    }
}

fn transient(name: &str) -> QueueSpec {
    let mut spec = QueueSpec::durable(name);
    spec.durable = false;
    spec
}

/// Binds `patterns` (queue `q<i>` with pattern `i`, some queues twice), publishes `keys`
/// and checks that every queue got exactly the keys its patterns match, once each.
async fn routes_as_the_patterns_say(patterns: &[String], keys: &[String]) {
    let broker = InMemoryBroker::new();
    broker.declare_exchange("x", false).await.unwrap();
    let queues = patterns.len().div_ceil(2);
    for q in 0..queues {
        broker
            .declare_queue(&transient(&format!("q{q}")))
            .await
            .unwrap();
    }
    let bound: Vec<(usize, BindingPattern)> = patterns
        .iter()
        .enumerate()
        .map(|(i, p)| (i % queues, BindingPattern::parse(p).unwrap()))
        .collect();
    for (q, pattern) in &bound {
        broker.bind(&format!("q{q}"), "x", pattern).await.unwrap();
        // Binding twice is a no-op.
        broker.bind(&format!("q{q}"), "x", pattern).await.unwrap();
    }
    for (i, key) in keys.iter().enumerate() {
        let message = Message {
            exchange: "x".into(),
            routing_key: key.clone().into(),
            body: i.to_string().into_bytes().into(),
            properties: Default::default(),
        };
        let routable = bound.iter().any(|(_, p)| p.matches(key));
        match broker.publish(message).await {
            Ok(()) => assert!(routable, "{key:?} was routed"),
            Err(PublishError::Unroutable { .. }) => assert!(!routable, "{key:?} unroutable"),
            Err(e) => panic!("{e}"),
        }
    }
    for q in 0..queues {
        let mut got = Vec::new();
        while let Some(incoming) = broker.get(&format!("q{q}")).await.unwrap() {
            got.push(
                std::str::from_utf8(&incoming.message.body)
                    .unwrap()
                    .to_owned(),
            );
            incoming.ack().await.unwrap();
        }
        let expected: Vec<String> = keys
            .iter()
            .enumerate()
            .filter(|(_, key)| bound.iter().any(|(b, p)| *b == q && p.matches(key)))
            .map(|(i, _)| i.to_string())
            .collect();
        assert_eq!(got, expected, "queue q{q}");
    }
}

#[tokio::test]
async fn few_and_many_bindings_route_exactly_as_the_patterns_match() {
    let mut rng = Lcg(42);
    for bindings in [1, 3, FEW_BINDINGS, FEW_BINDINGS + 1, 60, 400] {
        let patterns: Vec<String> = (0..bindings)
            .map(|_| rng.words(&["a", "b", "c", "*", "#"], 1, 5))
            .collect();
        let keys: Vec<String> = (0..120)
            .map(|_| rng.words(&["a", "b", "c"], 0, 5))
            .collect();
        routes_as_the_patterns_say(&patterns, &keys).await;
    }
}

#[tokio::test]
async fn deleting_a_queue_unbinds_it_from_the_trie() {
    let broker = InMemoryBroker::new();
    broker.declare_exchange("x", false).await.unwrap();
    for q in 0..=FEW_BINDINGS {
        broker
            .declare_queue(&transient(&format!("q{q}")))
            .await
            .unwrap();
        let pattern = BindingPattern::parse(&format!("k{q}.#")).unwrap();
        broker.bind(&format!("q{q}"), "x", &pattern).await.unwrap();
    }
    let publish = |key: &str| {
        broker.publish(Message {
            exchange: "x".into(),
            routing_key: key.to_owned().into(),
            body: Vec::new().into(),
            properties: Default::default(),
        })
    };
    publish("k0.a").await.unwrap();
    broker.delete_queue("q0").await.unwrap();
    assert!(matches!(
        publish("k0.a").await,
        Err(PublishError::Unroutable { .. })
    ));
    publish("k1").await.unwrap();
    assert_eq!(broker.queue_len("q1").await.unwrap(), 1);
}

#[tokio::test]
async fn a_deleted_queue_ends_its_subscriptions_and_a_dropped_one_requeues() {
    let broker = InMemoryBroker::new();
    broker.declare_queue(&transient("q")).await.unwrap();
    let publish = || {
        broker.publish(Message {
            exchange: "".into(),
            routing_key: "q".into(),
            body: Vec::new().into(),
            properties: Default::default(),
        })
    };
    for _ in 0..3 {
        publish().await.unwrap();
    }
    // Handed to a subscription that never returned them: back to the queue on drop.
    let subscription = broker.subscribe("q", 2).await.unwrap();
    assert_eq!(broker.queue_len("q").await.unwrap(), 1);
    drop(subscription);
    assert_eq!(broker.queue_len("q").await.unwrap(), 3);
    let mut subscription = broker.subscribe("q", 10).await.unwrap();
    let first = subscription.next().await.unwrap();
    assert!(first.redelivered);
    first.ack().await.unwrap();
    broker.delete_queue("q").await.unwrap();
    // What was already taken is still returned; then the subscription ends.
    let mut rest = 0;
    while subscription.next().await.is_some() {
        rest += 1;
    }
    assert!(rest <= 2);
}

/// Publishes a message to `queue`, takes it and rejects it without requeue: dead-letters it.
async fn reject_one(broker: &InMemoryBroker, queue: &str) {
    broker
        .publish(Message {
            exchange: "".into(),
            routing_key: queue.to_owned().into(),
            body: Vec::from(&b"{}"[..]).into(),
            properties: Default::default(),
        })
        .await
        .unwrap();
    let incoming = broker.get(queue).await.unwrap().unwrap();
    incoming.reject(false).await.unwrap();
}

/// A quorum queue with the at-least-once dead-letter strategy keeps a dead letter that no
/// queue takes until one does, as RabbitMQ does; it used to be dropped. A classic queue
/// (at most once) drops it, as RabbitMQ does.
#[tokio::test(start_paused = true)]
async fn an_at_least_once_dead_letter_waits_for_its_target() {
    let broker = InMemoryBroker::new();
    let mut specs = Vec::new();
    for (name, kind, target) in [
        ("src", QueueKind::Quorum, "dlq"),
        ("classic", QueueKind::Classic, "nowhere"),
        ("gone", QueueKind::Quorum, "gone_dlq"),
    ] {
        let mut source = QueueSpec::durable(name);
        source.kind = kind;
        source.dead_letter = Some(DeadLetterTarget {
            exchange: String::new(),
            routing_key: Some(target.into()),
            at_least_once: true,
        });
        broker.declare_queue(&source).await.unwrap();
        reject_one(&broker, name).await;
        specs.push(source);
    }
    // A source queue deleted takes its waiting dead letter with it, even when a queue of the
    // same name comes back.
    broker.delete_queue("gone").await.unwrap();
    broker.declare_queue(&specs[2]).await.unwrap();
    tokio::time::sleep(Duration::from_secs(5)).await;
    for target in ["dlq", "nowhere", "gone_dlq"] {
        broker
            .declare_queue(&QueueSpec::durable(target))
            .await
            .unwrap();
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        broker.queue_len("dlq").await.unwrap(),
        1,
        "the dead letter was lost"
    );
    assert_eq!(broker.queue_len("src").await.unwrap(), 0);
    assert_eq!(broker.queue_len("nowhere").await.unwrap(), 0);
    assert_eq!(broker.queue_len("gone_dlq").await.unwrap(), 0);
}

/// Outside a Tokio runtime (a caller on another executor) a publish into a queue with a
/// time to live used to panic (`tokio::spawn` of its expiry timer). Without a timer, a
/// message past its time to live is found expired when it is taken.
#[test]
fn a_time_to_live_needs_no_runtime() {
    use futures_util::FutureExt;
    fn now<T>(f: futures_util::future::BoxFuture<'_, T>) -> T {
        f.now_or_never().expect("ready")
    }
    let broker = InMemoryBroker::new();
    let mut spec = transient("ttl");
    spec.message_ttl = Some(Duration::from_millis(20));
    spec.dead_letter = Some(DeadLetterTarget {
        exchange: String::new(),
        routing_key: Some("ttl.dead".into()),
        at_least_once: false,
    });
    now(broker.declare_queue(&transient("ttl.dead"))).unwrap();
    now(broker.declare_queue(&spec)).unwrap();
    let message = Message {
        exchange: "".into(),
        routing_key: "ttl".into(),
        body: bytes::Bytes::from_static(b"{}"),
        properties: Default::default(),
    };
    now(broker.publish(message)).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    assert!(now(broker.get("ttl")).unwrap().is_none(), "expired");
    let dead = now(broker.get("ttl.dead")).unwrap().expect("dead-lettered");
    assert_eq!(
        dead.message
            .properties
            .headers
            .get_str(crate::envelope::BROKER_DEATH_REASON_HEADER),
        Some("expired")
    );
}

/// A time to live of 0 still lets a consumer with room take the message, as on RabbitMQ;
/// without one, it expires.
#[tokio::test]
async fn a_time_to_live_of_zero_reaches_a_waiting_consumer() {
    let broker = InMemoryBroker::new();
    let mut spec = transient("ttl0");
    spec.message_ttl = Some(Duration::ZERO);
    spec.dead_letter = Some(DeadLetterTarget {
        exchange: String::new(),
        routing_key: Some("ttl0.dead".into()),
        at_least_once: false,
    });
    broker.declare_queue(&transient("ttl0.dead")).await.unwrap();
    broker.declare_queue(&spec).await.unwrap();
    let message = || Message {
        exchange: "".into(),
        routing_key: "ttl0".into(),
        body: bytes::Bytes::from_static(b"{}"),
        properties: Default::default(),
    };
    let mut subscription = broker.subscribe("ttl0", 10).await.unwrap();
    broker.publish(message()).await.unwrap();
    let delivered = tokio::time::timeout(Duration::from_secs(5), subscription.next())
        .await
        .expect("delivered")
        .expect("a delivery");
    delivered.ack().await.unwrap();
    subscription.cancel().await;
    broker.publish(message()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(broker.queue_len("ttl0").await.unwrap(), 0);
    assert_eq!(broker.queue_len("ttl0.dead").await.unwrap(), 1);
}

/// A message whose own time to live ran out while it waited behind one that had not: it
/// expires once that one is taken, as on RabbitMQ. Its only timer had fired while it was
/// not at the head, so that it stayed in the queue.
#[tokio::test]
async fn a_message_that_expired_behind_the_head_goes_when_the_head_is_taken() {
    let broker = InMemoryBroker::new();
    let mut spec = transient("ttl_mixed");
    spec.message_ttl = Some(Duration::from_secs(60));
    spec.dead_letter = Some(DeadLetterTarget {
        exchange: String::new(),
        routing_key: Some("ttl_mixed.dead".into()),
        at_least_once: false,
    });
    broker
        .declare_queue(&transient("ttl_mixed.dead"))
        .await
        .unwrap();
    broker.declare_queue(&spec).await.unwrap();
    let message = |expiration: Option<&str>| {
        let mut message = Message {
            exchange: "".into(),
            routing_key: "ttl_mixed".into(),
            body: bytes::Bytes::from_static(b"{}"),
            properties: Default::default(),
        };
        message.properties.expiration = expiration.map(str::to_owned);
        message
    };
    broker.publish(message(None)).await.unwrap();
    broker.publish(message(Some("20"))).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        broker.queue_len("ttl_mixed").await.unwrap(),
        2,
        "behind the head"
    );
    let head = broker.get("ttl_mixed").await.unwrap().expect("the head");
    head.ack().await.unwrap();
    assert_eq!(broker.queue_len("ttl_mixed").await.unwrap(), 0);
    assert_eq!(broker.queue_len("ttl_mixed.dead").await.unwrap(), 1);
}
