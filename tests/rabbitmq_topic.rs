//! Differential test: random binding patterns and routing keys, bound and published on a real
//! RabbitMQ, must be routed exactly as `BindingPattern::matches` predicts (including keys no
//! pattern matches, which a `mandatory` publish reports as unroutable).

mod common;

use std::collections::BTreeSet;

use event_manager::PublishError;
use event_manager::message::Message;
use event_manager::transport::QueueSpec;
use event_manager::{BindingPattern, Bus};

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topic_matching_agrees_with_rabbitmq() {
    let bus = Bus::connect(&common::amqp_url())
        .await
        .unwrap_or_else(|e| panic!("RabbitMQ is required for this test: {e}"));
    let transport = event_manager::testing::transport(&bus).clone();
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(7);
    println!("seed {seed}");
    let mut rng = Lcg(seed);

    let mut patterns: Vec<String> = [
        "#",
        "order.#",
        "#.submit",
        "a.#.c",
        "*",
        "a.*",
        "#.#",
        "*.#",
        "#.*",
        "a.#.#.c",
        "#.a.#",
        "order.*.submit",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    while patterns.len() < 40 {
        let p = rng.words(&["a", "b", "c", "*", "#"], 1, 5);
        if !patterns.contains(&p) {
            patterns.push(p);
        }
    }
    let mut keys: Vec<String> = [
        "",
        "order",
        "submit",
        "a.c",
        "a.b.c",
        "order.v1.submit",
        "a",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    while keys.len() < 80 {
        keys.push(rng.words(&["a", "b", "c"], 1, 5));
    }

    let exchange = common::unique("topic");
    transport.declare_exchange(&exchange, false).await.unwrap();
    let queues: Vec<String> = (0..patterns.len())
        .map(|i| format!("{exchange}.q{i}"))
        .collect();
    for (queue, pattern) in queues.iter().zip(&patterns) {
        let mut spec = QueueSpec::durable(queue);
        spec.durable = false;
        transport.declare_queue(&spec).await.unwrap();
        transport
            .bind(queue, &exchange, &BindingPattern::parse(pattern).unwrap())
            .await
            .unwrap();
    }

    let mut mismatches = Vec::new();
    for (index, key) in keys.iter().enumerate() {
        let message = Message {
            exchange: exchange.clone().into(),
            routing_key: key.clone().into(),
            body: index.to_string().into_bytes().into(),
            properties: Default::default(),
        };
        let predicted_routable = patterns
            .iter()
            .any(|p| BindingPattern::parse(p).unwrap().matches(key));
        match transport.publish(message).await {
            Ok(()) => {
                if !predicted_routable {
                    mismatches.push(format!("key {key:?} was routed, we predicted no queue"));
                }
            }
            Err(PublishError::Unroutable { .. }) => {
                if predicted_routable {
                    mismatches.push(format!("key {key:?} was unroutable, we predicted a queue"));
                }
            }
            Err(e) => panic!("publish failed: {e}"),
        }
    }

    for (queue, pattern) in queues.iter().zip(&patterns) {
        let mut got = BTreeSet::new();
        while let Some(incoming) = transport.get(queue).await.unwrap() {
            let index: usize = std::str::from_utf8(&incoming.message.body)
                .unwrap()
                .parse()
                .unwrap();
            got.insert(keys[index].clone());
            incoming.ack().await.unwrap();
        }
        let parsed = BindingPattern::parse(pattern).unwrap();
        let expected: BTreeSet<String> =
            keys.iter().filter(|k| parsed.matches(k)).cloned().collect();
        if got != expected {
            mismatches.push(format!(
                "pattern {pattern:?}: RabbitMQ routed {got:?}, we predicted {expected:?}"
            ));
        }
    }

    for queue in &queues {
        transport.delete_queue(queue).await.unwrap();
    }
    transport.delete_exchange(&exchange).await.unwrap();
    bus.close().await;
    assert!(
        mismatches.is_empty(),
        "seed {seed}:\n{}",
        mismatches.join("\n")
    );
}
