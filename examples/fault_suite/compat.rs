//! The few library settings the suite depends on, in one place: connection options, the
//! broker-side names of a namespaced bus, the service's topology refresh.

use std::time::Duration;

use event_manager::transport::AmqpOptions;
use event_manager::{Bus, ConnectError, Service, TopologyError};

/// A RabbitMQ bus whose publishes fail after `confirm_timeout` without a confirm.
pub async fn connect(url: &str, confirm_timeout: Duration) -> Result<Bus, ConnectError> {
    let options = AmqpOptions::default().confirm_timeout(confirm_timeout);
    Bus::connect_with(url, &options).await
}

/// The broker-side name of service queue `queue` on `bus`.
pub fn queue_name(bus: &Bus, queue: &str) -> String {
    bus.topology().queue_name(queue)
}

/// Makes `service` re-declare its queues and bindings every `period`.
pub fn topology_refresh(service: &mut Service, period: Duration) {
    service.topology_refresh(period);
}

/// The broker-side name of the dead-letter queue of the service named `service` on `bus`.
pub fn dead_letter_queue(bus: &Bus, service: &str) -> String {
    bus.service(service).queues().dead_letter_queue().to_owned()
}

/// Deletes the queues of the service named `service` (default retry policy) on `bus`.
pub async fn delete_service(bus: &Bus, service: &str) -> Result<(), TopologyError> {
    bus.service(service).queues().delete().await
}
