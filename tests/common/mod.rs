//! Test environment shared by the in-memory and the RabbitMQ suites: a bus on a unique
//! namespace, uniquely named queues, and cleanup of everything a test declared.

#![allow(dead_code)]

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use event_manager::message::Message;
use event_manager::transport::{InMemoryBroker, Transport};
use event_manager::{Bus, RetryPolicy, Service};
use event_manager_examples::ORDER;
use tokio::sync::mpsc;

#[cfg(feature = "tls")]
pub mod tls;

/// The broker URL the RabbitMQ tests use.
pub fn amqp_url() -> String {
    std::env::var("AMQP_URL")
        .ok()
        .filter(|u| !u.trim().is_empty())
        .unwrap_or_else(|| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned())
}

/// A name no other test, run or process uses.
pub fn unique(base: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "t{}x{:x}x{}.{base}",
        std::process::id(),
        nanos,
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Retry delays used by test services: short, so retry tests finish fast.
pub const TEST_DELAYS: [Duration; 2] = [Duration::from_millis(50), Duration::from_millis(100)];

/// The retry policy of test services: 3 attempts, 50 ms then 100 ms apart.
pub fn test_policy() -> RetryPolicy {
    RetryPolicy::new(3, TEST_DELAYS.to_vec())
}

pub struct Env {
    pub bus: Bus,
    pub namespace: String,
    pub rabbitmq: bool,
    queues: Mutex<Vec<String>>,
    /// Buses of other namespaces on the same broker ([`Env::tenant`]), cleaned up too.
    tenants: Mutex<Vec<Bus>>,
}

impl Env {
    pub async fn memory() -> Self {
        let namespace = unique("ns");
        Self {
            bus: Bus::with_transport(InMemoryBroker::new()).with_namespace(&namespace),
            namespace,
            rabbitmq: false,
            queues: Mutex::new(Vec::new()),
            tenants: Mutex::new(Vec::new()),
        }
    }

    /// Fails the test (never skips it) when RabbitMQ cannot be reached.
    pub async fn rabbitmq() -> Self {
        let url = amqp_url();
        let bus = match Bus::connect(&url).await {
            Ok(bus) => bus,
            Err(e) => panic!(
                "RabbitMQ is required for this test and could not be reached: {e}. Run ./scripts/test, which starts one."
            ),
        };
        Self::over_rabbitmq(bus)
    }

    /// An environment on `bus`, a RabbitMQ connection the test opened itself.
    pub fn over_rabbitmq(bus: Bus) -> Self {
        let namespace = unique("ns");
        Self {
            bus: bus.with_namespace(&namespace),
            namespace,
            rabbitmq: true,
            queues: Mutex::new(Vec::new()),
            tenants: Mutex::new(Vec::new()),
        }
    }

    pub fn transport(&self) -> &std::sync::Arc<dyn Transport> {
        event_manager::testing::transport(&self.bus)
    }

    /// The service name `base`, deleted (with its retry and dead-letter queues) on cleanup. It
    /// is unique on the broker because the bus's namespace prefixes it
    /// ([`Env::broker_queue`]).
    pub fn queue(&self, base: &str) -> String {
        self.queues.lock().unwrap().push(base.to_owned());
        base.to_owned()
    }

    /// The name on the broker of the service queue `queue`, for the transport.
    pub fn broker_queue(&self, queue: &str) -> String {
        self.bus.topology().queue_name(queue)
    }

    /// A unique queue name on the broker, for use with the transport directly; deleted on
    /// cleanup.
    pub fn raw_queue(&self, base: &str) -> String {
        self.broker_queue(&self.queue(base))
    }

    /// The name on the broker of the dead-letter queue of service queue `queue`.
    pub fn dlq(&self, queue: &str) -> String {
        self.bus
            .service(queue)
            .queues()
            .dead_letter_queue()
            .to_owned()
    }

    /// A bus on the same broker in the namespace `<this test's namespace>.<name>`, as a
    /// tenant sharing the broker. The queues named with [`Env::queue`] and the order exchange
    /// are deleted in its namespace too on cleanup.
    pub fn tenant(&self, name: &str) -> Bus {
        let bus = self
            .bus
            .with_namespace(format!("{}.{name}", self.namespace));
        self.tenants.lock().unwrap().push(bus.clone());
        bus
    }

    /// A service on the queue `base` (made unique) with the fast test retry policy.
    pub fn service(&self, base: &str) -> Service {
        let mut service = self.bus.service(self.queue(base));
        service.retry(test_policy());
        service
    }

    /// The broker-side name of the order exchange in this test.
    pub fn order_exchange(&self) -> String {
        self.bus.topology().exchange_name(ORDER)
    }

    /// Publishes a raw message to the order exchange, as a non-Rust service would.
    pub async fn publish_raw(
        &self,
        routing_key: &str,
        body: &[u8],
        headers: &[(&'static str, &str)],
    ) -> Result<(), event_manager::PublishError> {
        self.bus.topology().declare_exchange(ORDER).await?;
        let mut message = Message {
            exchange: self.order_exchange().into(),
            routing_key: routing_key.to_owned().into(),
            body: body.to_vec().into(),
            properties: Default::default(),
        };
        for (name, value) in headers {
            message.properties.headers.insert(*name, value.to_string());
        }
        self.transport().publish(message).await
    }

    /// The next message of `queue` (basic.get, unsettled), waiting up to 10 s for it.
    pub async fn get_within(&self, queue: &str) -> event_manager::transport::Incoming {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(incoming) = self.transport().get(queue).await.expect("basic.get") {
                return incoming;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no message arrived in {queue} within 10 s"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until `queue` holds a message and takes it (acknowledged).
    pub async fn take(&self, queue: &str) -> Message {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(incoming) = self.transport().get(queue).await.expect("basic.get") {
                let message = (*incoming.message).clone();
                incoming.ack().await.expect("ack");
                return message;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no message arrived in {queue} within 10 s"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until `queue` (a name on the broker) holds `n` ready messages; a queue that does
    /// not exist (yet) holds none. Fails after 10 s.
    pub async fn wait_for_len(&self, queue: &str, n: u64) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let len = self.transport().queue_len(queue).await;
            if matches!(len, Ok(len) if len == n) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{queue} does not hold {n} messages within 10 s: {len:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn cleanup(&self) {
        let queues = std::mem::take(&mut *self.queues.lock().unwrap());
        let mut buses = std::mem::take(&mut *self.tenants.lock().unwrap());
        buses.push(self.bus.clone());
        for bus in &buses {
            for q in &queues {
                let mut service = bus.service(q.as_str());
                service.retry(test_policy());
                let _ = service.queues().delete().await;
            }
            let _ = self
                .transport()
                .delete_exchange(&bus.topology().exchange_name(ORDER))
                .await;
        }
        self.bus.close().await;
    }
}

/// Collects what callbacks saw.
#[derive(Clone)]
pub struct Recorder<T> {
    tx: mpsc::UnboundedSender<T>,
}

pub struct Records<T> {
    rx: mpsc::UnboundedReceiver<T>,
}

pub fn recorder<T>() -> (Recorder<T>, Records<T>) {
    let (tx, rx) = mpsc::unbounded_channel();
    (Recorder { tx }, Records { rx })
}

impl<T> Recorder<T> {
    pub fn record(&self, value: T) {
        let _ = self.tx.send(value);
    }
}

impl<T: std::fmt::Debug> Records<T> {
    /// The next `n` records; fails after 10 s.
    pub async fn take(&mut self, n: usize) -> Vec<T> {
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            match tokio::time::timeout(Duration::from_secs(10), self.rx.recv()).await {
                Ok(Some(v)) => out.push(v),
                _ => panic!(
                    "expected {n} records within 10 s, got {}: {out:?}",
                    out.len()
                ),
            }
        }
        out
    }

    /// Asserts nothing more arrives for `window`.
    pub async fn quiet(&mut self, window: Duration) {
        if let Ok(Some(v)) = tokio::time::timeout(window, self.rx.recv()).await {
            panic!("unexpected record: {v:?}");
        }
    }
}
