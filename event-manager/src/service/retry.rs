//! How often and how late a failed message is tried again.

use std::time::Duration;

/// The retry policy of a service: how many attempts a message gets in all, and how long it
/// waits before each retry.
///
/// Retries are delayed without any broker plugin: a failed message is parked in a wait queue
/// `<queue>.wait.<delay>ms` whose `x-message-ttl` is the delay and whose dead-letter exchange
/// hands it, when the delay is over, to the service's retry queue `<queue>.retried`, which the
/// service consumes beside its own queue. Retries never go back through the service queue, so
/// a length limit on it (`x-max-length` with `reject-publish`) cannot refuse them. One wait
/// queue exists per distinct delay, so changing the delays declares new wait queues instead
/// of clashing with the old ones.
///
/// ```
/// use std::time::Duration;
/// use event_manager::RetryPolicy;
///
/// let policy = RetryPolicy::exponential(4, Duration::from_millis(100), 2.0);
/// assert_eq!(policy.max_attempts(), 4);
/// assert_eq!(policy.delay_before(2), Some(Duration::from_millis(100)));
/// assert_eq!(policy.delay_before(4), Some(Duration::from_millis(400)));
/// assert_eq!(policy.delay_before(5), None); // no fifth attempt: dead letter
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    max_attempts: u32,
    delays: Vec<Duration>,
}

impl Default for RetryPolicy {
    /// 5 attempts, waiting 1 s, 5 s, 30 s and 2 min before the retries.
    fn default() -> Self {
        Self::new(
            5,
            [1, 5, 30, 120]
                .into_iter()
                .map(Duration::from_secs)
                .collect(),
        )
    }
}

impl RetryPolicy {
    /// `max_attempts` attempts in all (at least 1); before attempt `n + 1` the message waits
    /// `delays[n - 1]`, or the last delay when the list is shorter. An empty list means 1 s.
    pub fn new(max_attempts: u32, delays: Vec<Duration>) -> Self {
        let delays = if delays.is_empty() {
            vec![Duration::from_secs(1)]
        } else {
            delays
                .into_iter()
                .map(|d| d.max(Duration::from_millis(1)))
                .collect()
        };
        Self {
            max_attempts: max_attempts.max(1),
            delays,
        }
    }

    /// `max_attempts` attempts with delays `initial`, `initial * factor`, ... (factor at least 1).
    pub fn exponential(max_attempts: u32, initial: Duration, factor: f64) -> Self {
        let factor = if factor.is_finite() {
            factor.max(1.0)
        } else {
            1.0
        };
        let delays = (0..max_attempts.saturating_sub(1))
            .map(|i| initial.mul_f64(factor.powi(i32::try_from(i).unwrap_or(i32::MAX))))
            .collect();
        Self::new(max_attempts, delays)
    }

    /// No retries: a failing message is dead-lettered after its first attempt.
    pub fn no_retry() -> Self {
        Self::new(1, Vec::new())
    }

    /// The number of attempts a message gets in all.
    pub fn max_attempts(&self) -> u32 {
        self.max_attempts
    }

    /// How long the message waits before attempt `attempt` (2 for the first retry), or `None`
    /// when that attempt is not allowed.
    pub fn delay_before(&self, attempt: u32) -> Option<Duration> {
        if attempt < 2 || attempt > self.max_attempts {
            return None;
        }
        let index = usize::try_from(attempt - 2).unwrap_or(usize::MAX);
        self.delays.get(index).or(self.delays.last()).copied()
    }

    /// Every distinct delay used, in order.
    pub(crate) fn distinct_delays(&self) -> Vec<Duration> {
        let mut all: Vec<Duration> = (2..=self.max_attempts)
            .filter_map(|a| self.delay_before(a))
            .collect();
        all.sort();
        all.dedup();
        all
    }
}
