//! Opening a connection, and the settings of the transport: [`AmqpOptions`] and the
//! [`ReconnectPolicy`] that [`super::link`] follows when a connection is lost.

use std::sync::Arc;
use std::time::Duration;

use lapin::tcp::AMQPUriTcpExt;
use lapin::types::LongString;
use lapin::{Connection, ConnectionProperties};

use super::nodes::Nodes;
use crate::error::ConnectError;
use crate::transport::{TlsOptions, urls};

/// How long a connection may take, retries included, with one or two nodes.
pub(super) const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// How long a connection to one of `nodes` may take: [`CONNECT_TIMEOUT`], and the time a
/// node may take to accept for each node past the second, so that every node of a long
/// list is tried when the first ones do not answer.
fn connect_limit(nodes: usize) -> Duration {
    let past_second = u32::try_from(nodes.saturating_sub(2)).unwrap_or(u32::MAX);
    CONNECT_TIMEOUT.saturating_add(super::nodes::ATTEMPT_TIMEOUT.saturating_mul(past_second))
}

/// How a lost connection is re-established.
///
/// By default the transport reconnects for as long as it lives, waiting 100 ms before the
/// first attempt and doubling up to [`ReconnectPolicy::max_delay`] (5 s). With
/// [`ReconnectPolicy::give_up_after`], a connection down for longer than that fails every
/// running service with [`crate::ConsumeError::Connection`] and every publish, so that the
/// process exits and a supervisor restarts it.
///
/// ```
/// use std::time::Duration;
/// use event_manager::transport::ReconnectPolicy;
///
/// let policy = ReconnectPolicy::default()
///     .max_delay(Duration::from_secs(10))
///     .give_up_after(Duration::from_secs(300));
/// assert_eq!(policy.give_up(), Some(Duration::from_secs(300)));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReconnectPolicy {
    pub(super) min_delay: Duration,
    pub(super) max_delay: Duration,
    give_up_after: Option<Duration>,
}

impl Default for ReconnectPolicy {
    fn default() -> Self {
        Self {
            min_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(5),
            give_up_after: None,
        }
    }
}

impl ReconnectPolicy {
    /// The longest wait between two attempts (at least the first delay, 100 ms; at most a
    /// year).
    pub fn max_delay(mut self, delay: Duration) -> Self {
        self.max_delay = delay.clamp(self.min_delay, crate::LONGEST_WAIT);
        self
    }

    /// Give up once the connection has been down this long: the transport is then dead.
    /// Longer than a year is taken as a year.
    pub fn give_up_after(mut self, after: Duration) -> Self {
        self.give_up_after = Some(after.min(crate::LONGEST_WAIT));
        self
    }

    /// Reconnect for as long as the transport lives (the default).
    pub fn forever(mut self) -> Self {
        self.give_up_after = None;
        self
    }

    /// How long a connection may stay down before the transport gives up, if it ever does.
    pub fn give_up(&self) -> Option<Duration> {
        self.give_up_after
    }
}

/// Settings of a RabbitMQ connection.
///
/// ```
/// use std::time::Duration;
/// use event_manager::transport::{AmqpOptions, ReconnectPolicy};
///
/// let options = AmqpOptions::default()
///     .confirm_timeout(Duration::from_secs(10))
///     .reconnect(ReconnectPolicy::default().give_up_after(Duration::from_secs(120)));
/// # let _ = options;
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AmqpOptions {
    pub(super) tls: TlsOptions,
    pub(super) reconnect: ReconnectPolicy,
    pub(super) confirm_timeout: Duration,
    pub(super) publish_window: usize,
    pub(super) shuffle_urls: bool,
    pub(super) heartbeat: Duration,
}

impl Default for AmqpOptions {
    fn default() -> Self {
        Self {
            tls: TlsOptions::default(),
            reconnect: ReconnectPolicy::default(),
            confirm_timeout: Duration::from_secs(30),
            publish_window: 1024,
            shuffle_urls: false,
            heartbeat: DEFAULT_HEARTBEAT,
        }
    }
}

impl AmqpOptions {
    /// TLS settings for `amqps://` (extra CA certificates).
    pub fn tls(mut self, tls: TlsOptions) -> Self {
        self.tls = tls;
        self
    }

    /// How a lost connection is re-established (default: forever, delays up to 5 s).
    pub fn reconnect(mut self, policy: ReconnectPolicy) -> Self {
        self.reconnect = policy;
        self
    }

    /// How long a publish waits for the broker's confirm, re-sends after a reconnect
    /// included, before it fails with [`crate::PublishError::Timeout`] (default 30 s). Also
    /// the deadline of each topology operation, and twice it (at least 30 s) bounds how long
    /// a subscription keeps trying to consume again on a connection that is up before it ends
    /// (its service then subscribes anew, or fails). A timed-out message may still reach the broker later:
    /// delivery stays at-least-once. Between 1 ms and a year.
    pub fn confirm_timeout(mut self, timeout: Duration) -> Self {
        self.confirm_timeout = timeout.clamp(Duration::from_millis(1), crate::LONGEST_WAIT);
        self
    }

    /// How many publishes may await their confirm at once on the connection (default 1024).
    /// Further publishes wait for a free place.
    pub fn publish_window(mut self, window: usize) -> Self {
        self.publish_window = window.max(1);
        self
    }

    /// With a list of broker URLs (the nodes of a cluster), try them in a random order on the
    /// first connection instead of the order given, so that the services of a fleet spread
    /// over the nodes (default: in the order given). Either way a reconnect starts with the
    /// node after the one that was lost, and tries the lost one last.
    pub fn shuffle_urls(mut self, shuffle: bool) -> Self {
        self.shuffle_urls = shuffle;
        self
    }

    /// The heartbeat interval asked of the broker when the URL sets none (default
    /// [`DEFAULT_HEARTBEAT`], 10 s; in whole seconds, a fraction rounded up). The lower of it
    /// and the broker's is used; a broker that turned heartbeats off (0) takes this one.
    /// A connection that hears nothing, not even a heartbeat, for two intervals is taken for
    /// lost and replaced: a node gone silent with its socket open (a black-holed link, a
    /// frozen VM) is left within about 20 s, not the 2 minutes of the broker's own 60 s.
    /// `?heartbeat=N` on the URL wins; `Duration::ZERO` (or `?heartbeat=0`) takes the
    /// broker's interval.
    pub fn heartbeat(mut self, interval: Duration) -> Self {
        self.heartbeat = interval;
        self
    }

    /// The environment's settings: `AMQP_CA_FILE` (extra CA certificates, PEM),
    /// `AMQP_GIVE_UP_AFTER` and `AMQP_CONFIRM_TIMEOUT` (durations such as `90s` or `5m`),
    /// `AMQP_SHUFFLE_URLS` (`true` or `false`).
    pub fn from_env() -> Result<Self, ConnectError> {
        let mut options = Self::default();
        let var = |name: &str| {
            std::env::var(name)
                .ok()
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        if let Some(path) = var(crate::bus::AMQP_CA_FILE_ENV) {
            options.tls = TlsOptions::new().trust_ca_file(path)?;
        }
        let duration = |name: &str| -> Result<Option<Duration>, ConnectError> {
            var(name)
                .map(|text| {
                    humantime::parse_duration(&text).map_err(|e| ConnectError::Config {
                        reason: format!("{name}=`{text}` is not a duration such as `30s`: {e}"),
                    })
                })
                .transpose()
        };
        if let Some(after) = duration(GIVE_UP_AFTER_ENV)? {
            options.reconnect = options.reconnect.give_up_after(after);
        }
        if let Some(timeout) = duration(CONFIRM_TIMEOUT_ENV)? {
            options = options.confirm_timeout(timeout);
        }
        if let Some(text) = var(SHUFFLE_URLS_ENV) {
            let shuffle = match text.to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" => true,
                "false" | "0" | "no" => false,
                _ => {
                    return Err(ConnectError::Config {
                        reason: format!("{SHUFFLE_URLS_ENV}=`{text}` is not `true` or `false`"),
                    });
                }
            };
            options = options.shuffle_urls(shuffle);
        }
        Ok(options)
    }
}

/// The heartbeat interval a connection asks for when its URL sets none
/// ([`AmqpOptions::heartbeat`]).
pub const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(10);

/// The environment variable [`AmqpOptions::from_env`] reads [`ReconnectPolicy::give_up_after`]
/// from.
pub const GIVE_UP_AFTER_ENV: &str = "AMQP_GIVE_UP_AFTER";
/// The environment variable [`AmqpOptions::from_env`] reads
/// [`AmqpOptions::confirm_timeout`] from.
pub const CONFIRM_TIMEOUT_ENV: &str = "AMQP_CONFIRM_TIMEOUT";
/// The environment variable [`AmqpOptions::from_env`] reads [`AmqpOptions::shuffle_urls`]
/// from.
pub const SHUFFLE_URLS_ENV: &str = "AMQP_SHUFFLE_URLS";

/// Opens a connection to the first node of `nodes` that answers: from the first URL when
/// `fresh` (the transport's first connection), else from the node after the one that was
/// lost. lapin's own recovery is off: [`super::link`] replaces a lost connection.
pub(super) async fn open(
    list: &str,
    nodes: &Arc<Nodes>,
    options: &AmqpOptions,
    fresh: bool,
) -> Result<Connection, ConnectError> {
    // The errors can name a URL with its password: only their scrubbed text is kept, not the
    // error itself.
    let fail = |reason: String| ConnectError::Broker {
        url: nodes.shown(),
        reason,
        source: None,
    };
    let properties =
        ConnectionProperties::default().with_connection_name(LongString::from("event-manager"));
    let tls = options.tls.lapin_config();
    let runtime = lapin::runtime::default_runtime().map_err(|e| fail(e.to_string()))?;
    let mut first = nodes.first();
    if first.query.heartbeat.is_none() {
        // Whole seconds, rounded up: half a second must not become 0, the broker's interval.
        let interval = options.heartbeat;
        let seconds = interval.as_secs() + u64::from(interval.subsec_nanos() > 0);
        let seconds = u16::try_from(seconds).unwrap_or(u16::MAX);
        first.query.heartbeat = Some(seconds);
    }
    let stream_nodes = nodes.clone();
    let connect = Connection::connector(
        first,
        runtime,
        async move |_uri, runtime| {
            stream_nodes
                .connect(fresh, |uri| {
                    let (tls, runtime) = (&tls, &runtime);
                    async move { uri.connect_with_config_async(tls.as_ref(), runtime).await }
                })
                .await
                .map_err(lapin::Error::from)
        },
        properties,
    );
    let limit = connect_limit(nodes.len());
    tokio::time::timeout(limit, connect)
        .await
        .map_err(|_| fail(format!("no answer within {limit:?}")))?
        .map_err(|e| fail(urls::scrub(&e.to_string(), list)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_node_of_a_long_list_gets_its_time_to_accept() {
        assert_eq!(connect_limit(1), CONNECT_TIMEOUT);
        assert_eq!(connect_limit(2), CONNECT_TIMEOUT);
        // Four nodes that do not answer take 4 × 5 s before the last one is tried.
        let attempt = super::super::nodes::ATTEMPT_TIMEOUT;
        assert!(connect_limit(4) > attempt * 4);
        assert_eq!(connect_limit(5), CONNECT_TIMEOUT + attempt * 3);
    }

    /// A deadline is now plus the duration: one too far ahead overflowed the clock and
    /// panicked (`AMQP_CONFIRM_TIMEOUT=300000000000y` parses).
    #[test]
    fn durations_too_long_for_a_deadline_are_taken_as_a_year() {
        let options = AmqpOptions::default().confirm_timeout(Duration::MAX);
        assert_eq!(options.confirm_timeout, crate::LONGEST_WAIT);
        let policy = ReconnectPolicy::default()
            .give_up_after(Duration::MAX)
            .max_delay(Duration::MAX);
        assert_eq!(policy.give_up(), Some(crate::LONGEST_WAIT));
        assert_eq!(policy.max_delay, crate::LONGEST_WAIT);
        let _ = tokio::time::Instant::now() + options.confirm_timeout + crate::LONGEST_WAIT;
    }
}
