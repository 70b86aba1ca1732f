//! What the crate's RabbitMQ tests share: the broker URL, namespaces of their own and the
//! event they publish.
#![allow(dead_code)]

use std::sync::atomic::{AtomicUsize, Ordering};

use event_manager::{Event, Exchange};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub const ORDER: Exchange = Exchange::topic("order");

/// The event the tests publish.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, Event)]
#[event(exchange = ORDER, version = "1.0.0", events(submit))]
pub struct Order {
    pub id: u64,
}

/// `AMQP_URL`, or the local broker.
pub fn amqp_url() -> String {
    std::env::var("AMQP_URL")
        .ok()
        .filter(|u| !u.trim().is_empty())
        .unwrap_or_else(|| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned())
}

/// A namespace starting with `prefix` that no other test, run or process uses.
pub fn unique_namespace(prefix: &str) -> String {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{prefix}{}x{nanos:x}x{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    )
}
