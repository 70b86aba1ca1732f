//! The coalesced, ordered acknowledgement path on a real RabbitMQ (`AMQP_URL`, default the
//! local broker): deliveries settled out of order, rejected in the middle, held for long,
//! or settled just before the subscription closes. A `basic.ack multiple` that covered an
//! unfinished delivery would lose it; one that named an already settled tag would make the
//! broker close the channel (`PRECONDITION_FAILED - unknown delivery tag`). Each test ends
//! by checking, after the channel closed, that its queue is empty: nothing was left
//! unacknowledged, and nothing acknowledged came back.
//!
//! These tests fail, never skip, when no broker answers: `./scripts/test` starts one.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use event_manager::Bus;
use event_manager::message::Message;
use event_manager::transport::{Incoming, QueueSpec, Subscription, Transport};

fn amqp_url() -> String {
    std::env::var("AMQP_URL")
        .ok()
        .filter(|u| !u.trim().is_empty())
        .unwrap_or_else(|| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned())
}

/// A queue name no other test, run or process uses.
fn unique(base: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("acks-{}-{nanos:x}.{base}", std::process::id())
}

async fn connect() -> Bus {
    Bus::connect(&amqp_url()).await.unwrap_or_else(|e| {
        panic!("RabbitMQ is required for this test and could not be reached: {e}")
    })
}

/// A transient queue named `name`, filled with `count` messages whose bodies are their
/// numbers, through the default exchange.
async fn filled_queue(transport: &Arc<dyn Transport>, name: &str, count: u64) {
    let mut spec = QueueSpec::durable(name);
    spec.durable = false;
    transport
        .declare_queue(&spec)
        .await
        .expect("queue declared");
    let publishes = (0..count).map(|n| {
        transport.publish(Message {
            exchange: "".into(),
            routing_key: name.to_owned().into(),
            body: n.to_string().into_bytes().into(),
            properties: Default::default(),
        })
    });
    for result in futures_util::future::join_all(publishes).await {
        result.expect("published");
    }
}

fn number(incoming: &Incoming) -> u64 {
    std::str::from_utf8(&incoming.message.body)
        .expect("UTF-8")
        .parse()
        .expect("a number")
}

/// The next delivery, failing the test if the subscription ends or nothing comes in time.
async fn next(subscription: &mut Box<dyn Subscription>) -> Incoming {
    match tokio::time::timeout(Duration::from_secs(20), subscription.next()).await {
        Ok(Some(incoming)) => incoming,
        Ok(None) => panic!("the subscription ended: {:?}", subscription.end_reason()),
        Err(_) => panic!("no delivery within 20 s"),
    }
}

/// Closes the subscription (its channel closes once every delivery is settled or dropped),
/// then checks on a fresh connection that `queue` is empty and deletes it.
async fn assert_drained(bus: Bus, mut subscription: Box<dyn Subscription>, queue: &str) {
    subscription.cancel().await;
    drop(subscription);
    bus.close().await;
    let fresh = connect().await;
    let transport = event_manager::testing::transport(&fresh);
    // Unacknowledged deliveries go back to the queue when the channel closes.
    let mut ready = 0;
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        ready = transport.queue_len(queue).await.expect("queue exists");
        if ready > 0 {
            break;
        }
    }
    transport.delete_queue(queue).await.expect("deleted");
    fresh.close().await;
    assert_eq!(
        ready, 0,
        "messages came back to {queue}: not all were acknowledged"
    );
}

/// A small deterministic generator, for the order in which deliveries finish.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, bound: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % bound
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_finishing_out_of_order_are_each_acknowledged_once() {
    const COUNT: u64 = 3000;
    let bus = connect().await;
    let transport = event_manager::testing::transport(&bus).clone();
    let queue = unique("out-of-order");
    filled_queue(&transport, &queue, COUNT).await;
    let mut subscription = transport.subscribe(&queue, 200).await.expect("subscribed");

    // Each delivery finishes after its own delay, in a task of its own; every 37th is first
    // rejected with requeue (it comes back, redelivered, and is then acknowledged).
    let acked: Arc<Mutex<HashMap<u64, u32>>> = Arc::default();
    let errors: Arc<Mutex<Vec<String>>> = Arc::default();
    let mut rng = Lcg(7);
    let mut tasks = Vec::new();
    let mut requeued = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while acked.lock().unwrap().len() < COUNT as usize {
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {} of {COUNT} acknowledged after 60 s",
            acked.lock().unwrap().len()
        );
        let incoming = tokio::select! {
            incoming = next(&mut subscription) => incoming,
            // Everything delivered is in flight: wait for the tasks to settle some.
            () = tokio::time::sleep(Duration::from_millis(50)) => continue,
        };
        let n = number(&incoming);
        let delay = Duration::from_micros(rng.next(3000));
        let reject = n.is_multiple_of(37) && !incoming.redelivered;
        requeued += u64::from(reject);
        let (acked, errors) = (acked.clone(), errors.clone());
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let settled = if reject {
                incoming.reject(true).await
            } else {
                incoming.ack().await
            };
            match settled {
                Ok(()) if !reject => *acked.lock().unwrap().entry(n).or_default() += 1,
                Ok(()) => {}
                Err(e) => errors.lock().unwrap().push(format!("{n}: {e}")),
            }
        }));
        tasks.retain(|t| !t.is_finished());
    }
    for task in tasks {
        task.await.expect("settled");
    }
    assert!(
        errors.lock().unwrap().is_empty(),
        "{:?}",
        errors.lock().unwrap()
    );
    assert!(requeued > 0);
    let acked = acked.lock().unwrap().clone();
    assert_eq!(acked.len() as u64, COUNT);
    let twice: Vec<_> = acked.iter().filter(|(_, times)| **times != 1).collect();
    assert!(twice.is_empty(), "handled more than once: {twice:?}");
    // Nothing else arrives: no acknowledged message comes back.
    let extra = tokio::time::timeout(Duration::from_millis(300), subscription.next()).await;
    assert!(
        extra.is_err(),
        "a delivery came after all were acknowledged"
    );
    assert_drained(bus, subscription, &queue).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_delivery_does_not_stall_the_ones_after_it() {
    // With a prefetch of 20, the other 299 deliveries can only arrive if they are
    // acknowledged while the first one is still held: one by one, not by a `multiple` that
    // would cover it.
    const COUNT: u64 = 300;
    let bus = connect().await;
    let transport = event_manager::testing::transport(&bus).clone();
    let queue = unique("held");
    filled_queue(&transport, &queue, COUNT).await;
    let mut subscription = transport.subscribe(&queue, 20).await.expect("subscribed");
    let held = next(&mut subscription).await;
    let mut others = 0;
    while others < COUNT - 1 {
        let incoming = next(&mut subscription).await;
        assert!(!incoming.redelivered, "an acknowledged delivery came back");
        incoming.ack().await.expect("acknowledged");
        others += 1;
    }
    // The held one is still unacknowledged: it comes back if the channel closes now, so the
    // queue is not empty yet from the broker's point of view.
    held.ack().await.expect("acknowledged");
    assert_drained(bus, subscription, &queue).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settlements_made_just_before_closing_reach_the_broker() {
    // An acknowledgement queued right before the connection closes can reach the broker
    // and still not count: the broker may put the channel's deliveries back first. Closing
    // must settle and close the consumer channels before the connection, whether the
    // subscription was dropped first or is still open. The race is narrow, so it is run
    // many times.
    const ROUNDS: usize = 100;
    const COUNT: u64 = 30;
    let mut queues = Vec::new();
    for round in 0..ROUNDS {
        let bus = connect().await;
        let transport = event_manager::testing::transport(&bus).clone();
        let queue = unique(&format!("closing-{round}"));
        filled_queue(&transport, &queue, COUNT).await;
        let mut subscription = transport.subscribe(&queue, 100).await.expect("subscribed");
        let mut deliveries = Vec::new();
        for _ in 0..COUNT {
            deliveries.push(next(&mut subscription).await);
        }
        // Settled in reverse order (nothing leaves before the last one), then closed at once.
        while let Some(incoming) = deliveries.pop() {
            incoming.ack().await.expect("acknowledged");
        }
        if round % 2 == 0 {
            drop(subscription);
            bus.close().await;
        } else {
            bus.close().await;
            drop(subscription);
        }
        queues.push(queue);
    }
    // Deliveries put back are ready again once the connections are gone.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let fresh = connect().await;
    let transport = event_manager::testing::transport(&fresh);
    let mut came_back = Vec::new();
    for queue in &queues {
        let ready = transport.queue_len(queue).await.expect("queue exists");
        transport.delete_queue(queue).await.expect("deleted");
        if ready > 0 {
            came_back.push((queue.clone(), ready));
        }
    }
    fresh.close().await;
    assert!(
        came_back.is_empty(),
        "acknowledged messages came back after {} of {ROUNDS} closes: {came_back:?}",
        came_back.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_delivery_without_requeue_leaves_the_queue() {
    let bus = connect().await;
    let transport = event_manager::testing::transport(&bus).clone();
    let queue = unique("rejected");
    filled_queue(&transport, &queue, 10).await;
    let mut subscription = transport.subscribe(&queue, 10).await.expect("subscribed");
    let mut deliveries = Vec::new();
    for _ in 0..10 {
        deliveries.push(next(&mut subscription).await);
    }
    // Acks around rejects, in delivery order: `multiple` runs split by each reject.
    for (i, incoming) in deliveries.into_iter().enumerate() {
        if i % 3 == 1 {
            incoming.reject(false).await.expect("rejected");
        } else {
            incoming.ack().await.expect("acknowledged");
        }
    }
    assert_drained(bus, subscription, &queue).await;
}
