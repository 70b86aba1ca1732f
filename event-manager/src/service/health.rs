//! Is a running service alive: connected, consuming, its last error and last delivery.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use crate::transport::Transport;

/// A running service's health, as [`HealthProbe::health`] saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    /// The queue the service consumes.
    pub queue: String,
    /// The broker connection is up (false while it is down and being re-established, and once
    /// it was given up).
    pub connected: bool,
    /// The service has a consumer on its queue (false once its consume loop ended, and while
    /// it subscribes anew after the broker cancelled it).
    pub consuming: bool,
    /// The last error the service met: a failed callback, a subscription that ended, a
    /// topology that could not be declared again.
    pub last_error: Option<String>,
    /// When the service last took a delivery.
    pub last_delivery: Option<SystemTime>,
}

impl Health {
    /// Connected and consuming. A service without a consumer is unhealthy however long its
    /// process keeps running.
    pub fn is_healthy(&self) -> bool {
        self.connected && self.consuming
    }
}

/// What the consume loop records for [`Health`].
#[derive(Debug)]
pub(crate) struct Status {
    consuming: AtomicBool,
    /// The instant the delivery times count from.
    since: Instant,
    /// Microseconds from `since` to the last delivery, plus one; 0 before the first delivery.
    /// Monotonic: turned into wall-clock time when read, against the clock of that moment.
    last_delivery_us: AtomicU64,
    last_error: Mutex<Option<String>>,
}

impl Default for Status {
    fn default() -> Self {
        Self {
            consuming: AtomicBool::new(false),
            since: Instant::now(),
            last_delivery_us: AtomicU64::new(0),
            last_error: Mutex::new(None),
        }
    }
}

impl Status {
    pub(crate) fn set_consuming(&self, consuming: bool) {
        self.consuming.store(consuming, Ordering::Relaxed);
    }

    /// A delivery was taken `at` (the instant its handling started: no clock read here).
    pub(crate) fn delivered(&self, at: Instant) {
        let us = u64::try_from(at.saturating_duration_since(self.since).as_micros())
            .unwrap_or(u64::MAX - 1);
        self.last_delivery_us.store(us + 1, Ordering::Relaxed);
    }

    /// When the last delivery was taken, on the wall clock.
    fn last_delivery(&self) -> Option<SystemTime> {
        let us = self
            .last_delivery_us
            .load(Ordering::Relaxed)
            .checked_sub(1)?;
        let ago = (self.since + Duration::from_micros(us)).elapsed();
        SystemTime::now().checked_sub(ago)
    }

    pub(crate) fn error(&self, error: impl Into<String>) {
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(error.into());
    }
}

/// A cheap, cloneable handle on a running service's health, for a health endpoint or a
/// supervisor. Obtained from [`RunningService::health_probe`](super::RunningService::health_probe);
/// it stays valid after the service stopped (and then reports it unhealthy).
#[derive(Clone)]
pub struct HealthProbe {
    pub(crate) queue: String,
    pub(crate) status: Arc<Status>,
    pub(crate) transport: Arc<dyn Transport>,
}

impl std::fmt::Debug for HealthProbe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HealthProbe")
            .field("queue", &self.queue)
            .finish_non_exhaustive()
    }
}

impl HealthProbe {
    /// The service's health now.
    pub fn health(&self) -> Health {
        Health {
            queue: self.queue.clone(),
            connected: self.transport.is_connected(),
            consuming: self.status.consuming.load(Ordering::Relaxed),
            last_error: self
                .status
                .last_error
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
            last_delivery: self.status.last_delivery(),
        }
    }

    /// Shorthand for `health().is_healthy()`.
    pub fn is_healthy(&self) -> bool {
        self.health().is_healthy()
    }
}
