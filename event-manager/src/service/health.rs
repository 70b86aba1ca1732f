//! Is a running service alive: connected, consuming, its last error and last delivery.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

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
#[derive(Debug, Default)]
pub(crate) struct Status {
    consuming: AtomicBool,
    /// Milliseconds since the Unix epoch; 0 before the first delivery.
    last_delivery_ms: AtomicU64,
    last_error: Mutex<Option<String>>,
}

impl Status {
    pub(crate) fn set_consuming(&self, consuming: bool) {
        self.consuming.store(consuming, Ordering::Relaxed);
    }

    pub(crate) fn delivered(&self) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(1, |d| d.as_millis().max(1) as u64);
        self.last_delivery_ms.store(now, Ordering::Relaxed);
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
        let ms = self.status.last_delivery_ms.load(Ordering::Relaxed);
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
            last_delivery: (ms > 0).then(|| UNIX_EPOCH + Duration::from_millis(ms)),
        }
    }

    /// Shorthand for `health().is_healthy()`.
    pub fn is_healthy(&self) -> bool {
        self.health().is_healthy()
    }
}
