//! Metrics through the [`metrics`] facade: what a dashboard of the services shows.
//!
//! Install a recorder (for example `metrics-exporter-prometheus`) before the bus publishes and
//! before services start: handles are registered on first use and kept. Without a recorder
//! every metric is a no-op. The names follow the OpenTelemetry messaging conventions where
//! they define one; a Prometheus exporter turns the dots into underscores (and may add
//! `_total` to counters).
//!
//! | name | kind | labels | what |
//! |---|---|---|---|
//! | [`SENT`] | counter | `event` | publishes handed to the broker |
//! | [`CONFIRMED`] | counter | `event` | publishes the broker confirmed (routed or not) |
//! | [`UNROUTABLE`] | counter | `event` | confirmed publishes no queue was bound to receive |
//! | [`NACKED`] | counter | `event` | publishes that failed: negative confirm, timeout, lost connection |
//! | [`PUBLISH_DURATION`] | histogram (s) | `event` | from handing a publish to the broker to its confirm |
//! | [`CONSUMED`] | counter | `event`, `queue` | deliveries taken from a queue |
//! | [`HANDLED`] | counter | `event`, `queue` | deliveries whose callbacks succeeded |
//! | [`RETRIED`] | counter | `event`, `queue` | deliveries moved to a wait queue for another attempt |
//! | [`DEAD_LETTERED`] | counter | `event`, `queue`, `reason` | deliveries moved to the dead-letter queue |
//! | [`DUPLICATES_SKIPPED`] | counter | `event`, `queue` | deliveries an inbox acknowledged as already handled |
//! | [`PROCESS_DURATION`] | histogram (s) | `event`, `queue` | from taking a delivery to its outcome (callbacks and checks) |
//! | [`IN_FLIGHT`] | gauge | `queue` | deliveries taken and not settled yet |
//! | [`CONNECTIONS_UP`] | gauge | | broker connections of the process that are up (0 while the only one is down or given up) |
//!
//! `event` is the routing key (`order.v1.submit`); a delivery whose routing key no callback
//! of the service accepts is counted under the key it carried.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use metrics::{Counter, Gauge, Histogram};
use rustc_hash::FxHashMap;

use crate::error::PublishError;

/// Publishes handed to the broker (OpenTelemetry `messaging.client.sent.messages`).
pub const SENT: &str = "messaging.client.sent.messages";
/// Publishes the broker confirmed, routed or not.
pub const CONFIRMED: &str = "event_manager.publish.confirmed";
/// Confirmed publishes that no queue was bound to receive.
pub const UNROUTABLE: &str = "event_manager.publish.unroutable";
/// Publishes that failed: a negative confirm, a confirm timeout or a lost connection.
pub const NACKED: &str = "event_manager.publish.nacked";
/// Seconds from handing a publish to the broker to its confirm (OpenTelemetry
/// `messaging.client.operation.duration`).
pub const PUBLISH_DURATION: &str = "messaging.client.operation.duration";
/// Deliveries taken from a queue (OpenTelemetry `messaging.client.consumed.messages`).
pub const CONSUMED: &str = "messaging.client.consumed.messages";
/// Deliveries whose callbacks succeeded.
pub const HANDLED: &str = "event_manager.handled";
/// Deliveries moved to a wait queue for another attempt.
pub const RETRIED: &str = "event_manager.retried";
/// Deliveries moved to the dead-letter queue, labelled with the `reason` kind.
pub const DEAD_LETTERED: &str = "event_manager.dead_lettered";
/// Deliveries an inbox acknowledged without running the callback: handled before.
pub const DUPLICATES_SKIPPED: &str = "event_manager.duplicates_skipped";
/// Seconds from taking a delivery to its outcome (OpenTelemetry `messaging.process.duration`).
pub const PROCESS_DURATION: &str = "messaging.process.duration";
/// Deliveries taken and not settled yet, per queue.
pub const IN_FLIGHT: &str = "event_manager.deliveries.in_flight";
/// The broker connections of this process that are up: 0 while the only one is down,
/// being re-established or given up.
pub const CONNECTIONS_UP: &str = "event_manager.connections.up";

/// Every metric name with its description, for [`describe`].
const DESCRIPTIONS: [(&str, &str); 13] = [
    (SENT, "publishes handed to the broker"),
    (CONFIRMED, "publishes the broker confirmed"),
    (
        UNROUTABLE,
        "confirmed publishes no queue was bound to receive",
    ),
    (
        NACKED,
        "publishes that failed (negative confirm, timeout, lost connection)",
    ),
    (
        PUBLISH_DURATION,
        "seconds from a publish to its broker confirm",
    ),
    (CONSUMED, "deliveries taken from a queue"),
    (HANDLED, "deliveries whose callbacks succeeded"),
    (
        RETRIED,
        "deliveries moved to a wait queue for another attempt",
    ),
    (DEAD_LETTERED, "deliveries moved to the dead-letter queue"),
    (
        DUPLICATES_SKIPPED,
        "deliveries acknowledged as handled before",
    ),
    (
        PROCESS_DURATION,
        "seconds from taking a delivery to its outcome",
    ),
    (IN_FLIGHT, "deliveries taken and not settled yet"),
    (
        CONNECTIONS_UP,
        "broker connections of the process that are up",
    ),
];

/// Describes every metric of the library to the installed recorder (units and help texts,
/// shown by a Prometheus exporter as `# HELP`). Optional; call it after installing the
/// recorder.
pub fn describe() {
    for (name, help) in DESCRIPTIONS {
        if name.ends_with("duration") {
            metrics::describe_histogram!(name, metrics::Unit::Seconds, help);
        } else if name == IN_FLIGHT || name == CONNECTIONS_UP {
            metrics::describe_gauge!(name, help);
        } else {
            metrics::describe_counter!(name, metrics::Unit::Count, help);
        }
    }
}

/// The handles of one event's publishes.
pub(crate) struct PublishMetrics {
    sent: Counter,
    confirmed: Counter,
    unroutable: Counter,
    nacked: Counter,
    duration: Histogram,
}

impl PublishMetrics {
    fn new(event: &str) -> Self {
        let labels = [("event", event.to_owned())];
        Self {
            sent: metrics::counter!(SENT, &labels),
            confirmed: metrics::counter!(CONFIRMED, &labels),
            unroutable: metrics::counter!(UNROUTABLE, &labels),
            nacked: metrics::counter!(NACKED, &labels),
            duration: metrics::histogram!(PUBLISH_DURATION, &labels),
        }
    }

    /// One publish handed to the broker.
    pub(crate) fn sent(&self) {
        self.sent.increment(1);
    }

    /// Its end, `elapsed` after it was handed over: confirmed, routed or not, or failed.
    pub(crate) fn settled(&self, result: &Result<(), PublishError>, elapsed: Duration) {
        match result {
            Ok(()) | Err(PublishError::Unroutable { .. }) => {
                self.confirmed.increment(1);
                if result.is_err() {
                    self.unroutable.increment(1);
                }
                self.duration.record(elapsed.as_secs_f64());
            }
            Err(_) => self.nacked.increment(1),
        }
    }
}

/// The publish handles of a bus, one set per event, registered on first use.
#[derive(Default)]
pub(crate) struct PublishRegistry {
    by_event: RwLock<FxHashMap<Box<str>, Arc<PublishMetrics>>>,
}

impl PublishRegistry {
    /// The handles of `event` (its routing key).
    pub(crate) fn of(&self, event: &str) -> Arc<PublishMetrics> {
        if let Some(found) = self
            .by_event
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(event)
        {
            return found.clone();
        }
        self.by_event
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .entry(event.into())
            .or_insert_with(|| Arc::new(PublishMetrics::new(event)))
            .clone()
    }
}

/// How a delivery ended, for its counters.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Settled {
    Handled,
    Retried,
    DeadLettered(&'static str),
}

/// The handles of one event's deliveries on one queue.
pub(crate) struct ProcessMetrics {
    event: String,
    queue: String,
    consumed: Counter,
    handled: Counter,
    retried: Counter,
    duration: Histogram,
}

impl ProcessMetrics {
    /// Registers the handles of `event` on `queue`.
    pub(crate) fn new(event: &str, queue: &str) -> Self {
        let labels = [("event", event.to_owned()), ("queue", queue.to_owned())];
        Self {
            event: event.to_owned(),
            queue: queue.to_owned(),
            consumed: metrics::counter!(CONSUMED, &labels),
            handled: metrics::counter!(HANDLED, &labels),
            retried: metrics::counter!(RETRIED, &labels),
            duration: metrics::histogram!(PROCESS_DURATION, &labels),
        }
    }

    /// A delivery was taken.
    pub(crate) fn consumed(&self) {
        self.consumed.increment(1);
    }

    /// It ended as `how`, `elapsed` after it was taken.
    pub(crate) fn settled(&self, how: Settled, elapsed: Duration) {
        match how {
            Settled::Handled => self.handled.increment(1),
            Settled::Retried => self.retried.increment(1),
            Settled::DeadLettered(reason) => metrics::counter!(
                DEAD_LETTERED,
                "event" => self.event.clone(),
                "queue" => self.queue.clone(),
                "reason" => reason
            )
            .increment(1),
        }
        self.duration.record(elapsed.as_secs_f64());
    }
}

/// The in-flight gauge of a queue: up while a delivery is taken and not settled.
pub(crate) struct InFlight(Gauge);

impl InFlight {
    pub(crate) fn new(queue: &str) -> Self {
        Self(metrics::gauge!(IN_FLIGHT, "queue" => queue.to_owned()))
    }

    /// Counts one delivery until the returned guard is dropped.
    pub(crate) fn enter(&self) -> InFlightGuard<'_> {
        self.0.increment(1.0);
        InFlightGuard(&self.0)
    }
}

/// Counts one delivery as in flight until dropped.
pub(crate) struct InFlightGuard<'a>(&'a Gauge);

impl Drop for InFlightGuard<'_> {
    fn drop(&mut self) {
        self.0.decrement(1.0);
    }
}

/// One connection's share of [`CONNECTIONS_UP`]: 1 while it is up.
#[cfg_attr(not(feature = "amqp"), allow(dead_code))]
pub(crate) struct ConnectionUp {
    gauge: Gauge,
    up: bool,
}

#[cfg_attr(not(feature = "amqp"), allow(dead_code))]
impl ConnectionUp {
    /// A connection that was just opened: counted as up.
    pub(crate) fn opened() -> Self {
        let gauge = metrics::gauge!(CONNECTIONS_UP);
        gauge.increment(1.0);
        Self { gauge, up: true }
    }

    /// The connection is up or down now.
    pub(crate) fn set(&mut self, up: bool) {
        if up != self.up {
            self.up = up;
            if up {
                self.gauge.increment(1.0);
            } else {
                self.gauge.decrement(1.0);
            }
        }
    }
}

impl Drop for ConnectionUp {
    fn drop(&mut self) {
        self.set(false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_is_described_once() {
        let mut names: Vec<&str> = DESCRIPTIONS.iter().map(|(n, _)| *n).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), DESCRIPTIONS.len());
    }

    #[test]
    fn the_registry_keeps_one_set_per_event() {
        let registry = PublishRegistry::default();
        let a = registry.of("order.v1.submit");
        let b = registry.of("order.v1.submit");
        assert!(Arc::ptr_eq(&a, &b));
        assert!(!Arc::ptr_eq(&a, &registry.of("order.v1.chargeback")));
    }
}
