//! Waiting until nothing moves any more: [`Harness::idle`](super::Harness::idle), and
//! [`NotIdle`], what was still pending when it gave up.

use std::fmt;
use std::time::Duration;

use tokio::time::Instant;

use super::recorder::{Activity, State};
use crate::transport::InMemoryBroker;

/// How long the harness looks again after it found everything settled, to be sure nothing
/// was on its way between two queues.
const SETTLE: Duration = Duration::from_millis(1);
/// How often it looks while something is pending, at most (a publish, delivery or
/// settlement through the harness makes it look at once).
const POLL: Duration = Duration::from_millis(20);

/// What one queue still held or had handed out when [`Harness::idle`](super::Harness::idle)
/// gave up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingQueue {
    /// The queue, by its broker-side name.
    pub queue: String,
    /// Messages ready for delivery: waiting for a consumer, or, in a wait queue, for their
    /// retry delay.
    pub ready: u64,
    /// Deliveries the broker handed to a consumer that its service has not taken yet (at
    /// least this many): prefetched while the service is busy, or held back by
    /// [`Harness::delay_deliveries`](super::Harness::delay_deliveries).
    pub handed: usize,
    /// Deliveries taken and not settled yet: a callback running, or a move to a wait or
    /// dead-letter queue not confirmed yet.
    pub unsettled: usize,
}

/// The error of [`Harness::idle`](super::Harness::idle): the system did not settle in time.
/// Its text lists every queue with work pending.
///
/// ```text
/// not idle after 100ms: `billing_order`: 1 unsettled (callback running or message being moved); `billing_order.wait.30000ms`: 1 ready
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotIdle {
    /// How long it waited.
    pub waited: Duration,
    /// The queues with work pending, by name.
    pub pending: Vec<PendingQueue>,
}

impl NotIdle {
    /// The pending work of `queue`, if it has any.
    pub fn queue(&self, queue: &str) -> Option<&PendingQueue> {
        self.pending.iter().find(|p| p.queue == queue)
    }
}

impl fmt::Display for NotIdle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Whole milliseconds: the rest is noise.
        let waited =
            Duration::from_millis(u64::try_from(self.waited.as_millis()).unwrap_or(u64::MAX));
        write!(f, "not idle after {waited:?}: ")?;
        if self.pending.is_empty() {
            return f.write_str("messages kept moving");
        }
        for (i, p) in self.pending.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "`{}`:", p.queue)?;
            let mut parts = Vec::new();
            if p.ready > 0 {
                parts.push(format!("{} ready", p.ready));
            }
            if p.handed > 0 {
                parts.push(format!("{} handed to a consumer, not taken yet", p.handed));
            }
            if p.unsettled > 0 {
                parts.push(format!(
                    "{} unsettled (callback running or message being moved)",
                    p.unsettled
                ));
            }
            write!(f, " {}", parts.join(", "))?;
        }
        Ok(())
    }
}

impl std::error::Error for NotIdle {}

/// Waits until nothing is pending, twice in a row with nothing moving in between.
pub(super) async fn wait(
    state: &State,
    broker: &InMemoryBroker,
    timeout: Duration,
) -> Result<(), NotIdle> {
    let began = Instant::now();
    let deadline = began + timeout;
    let mut quiet_since: Option<u64> = None;
    loop {
        let notified = state.activity_notify().notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        // The harness looks at one queue after the other, so a message moving between two
        // of them may escape one look; it cannot escape two looks a moment apart without a
        // publish, delivery or settlement, each of which changes the epoch.
        let before = state.epoch();
        let activity = state.activity(broker).await;
        if activity.is_empty() {
            if quiet_since == Some(state.epoch()) {
                return Ok(());
            }
            quiet_since = Some(before);
        } else {
            quiet_since = None;
        }
        let now = Instant::now();
        if now >= deadline {
            if activity.is_empty() {
                // Found settled once at the deadline: one more look decides.
                tokio::task::yield_now().await;
                if state.activity(broker).await.is_empty() && state.epoch() == before {
                    return Ok(());
                }
            }
            let activity = state.activity(broker).await;
            return Err(not_idle(now - began, activity));
        }
        let pause = if quiet_since.is_some() { SETTLE } else { POLL };
        let pause = pause.min(deadline - now);
        tokio::select! {
            () = &mut notified => {}
            () = tokio::time::sleep(pause) => {}
        }
    }
}

fn not_idle(waited: Duration, activity: std::collections::BTreeMap<String, Activity>) -> NotIdle {
    NotIdle {
        waited,
        pending: activity
            .into_iter()
            .map(|(queue, a)| PendingQueue {
                queue,
                ready: a.ready,
                handed: a.handed,
                unsettled: a.unsettled,
            })
            .collect(),
    }
}
