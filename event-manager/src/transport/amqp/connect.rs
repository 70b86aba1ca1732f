//! Opening the connection, and keeping it: the reconnect policy and the watchdog that fails
//! everything waiting on a connection that will not come back.
//!
//! lapin's automatic recovery reconnects and replays exchanges, queues, bindings, QoS,
//! confirm mode and consumers. Its retry budget is finite by default and, once spent, its I/O
//! loop ends without failing the consumers or pending confirms: a consumer would then wait
//! forever. Here lapin retries without a limit, with the delays of the [`ReconnectPolicy`],
//! and a watchdog owns the outer decision: while the connection is down for longer than
//! [`ReconnectPolicy::give_up_after`], or once it is closed for good, the transport is
//! *dead*, and every subscription and publish fails with the reason.

use std::sync::Weak;
use std::time::{Duration, Instant};

use lapin::types::LongString;
use lapin::{Connection, ConnectionProperties};
use tokio::sync::watch;

use crate::error::ConnectError;
use crate::transport::TlsOptions;

/// How long the first connection may take, retries included.
pub(super) const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// How often the watchdog looks at the connection.
const WATCH_EVERY: Duration = Duration::from_millis(200);

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
    min_delay: Duration,
    max_delay: Duration,
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
    /// The longest wait between two attempts (at least the first delay, 100 ms).
    pub fn max_delay(mut self, delay: Duration) -> Self {
        self.max_delay = delay.max(self.min_delay);
        self
    }

    /// Give up once the connection has been down this long: the transport is then dead.
    pub fn give_up_after(mut self, after: Duration) -> Self {
        self.give_up_after = Some(after);
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
}

impl Default for AmqpOptions {
    fn default() -> Self {
        Self {
            tls: TlsOptions::default(),
            reconnect: ReconnectPolicy::default(),
            confirm_timeout: Duration::from_secs(30),
            publish_window: 1024,
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
    /// the deadline of each topology operation. A timed-out message may still reach the
    /// broker later: delivery stays at-least-once.
    pub fn confirm_timeout(mut self, timeout: Duration) -> Self {
        self.confirm_timeout = timeout.max(Duration::from_millis(1));
        self
    }

    /// How many publishes may await their confirm at once on the connection (default 1024).
    /// Further publishes wait for a free place.
    pub fn publish_window(mut self, window: usize) -> Self {
        self.publish_window = window.max(1);
        self
    }

    /// The environment's settings: `AMQP_CA_FILE` (extra CA certificates, PEM),
    /// `AMQP_GIVE_UP_AFTER` and `AMQP_CONFIRM_TIMEOUT` (durations such as `90s` or `5m`).
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
        Ok(options)
    }
}

/// The environment variable [`AmqpOptions::from_env`] reads [`ReconnectPolicy::give_up_after`]
/// from.
pub const GIVE_UP_AFTER_ENV: &str = "AMQP_GIVE_UP_AFTER";
/// The environment variable [`AmqpOptions::from_env`] reads
/// [`AmqpOptions::confirm_timeout`] from.
pub const CONFIRM_TIMEOUT_ENV: &str = "AMQP_CONFIRM_TIMEOUT";

/// `url` with its password replaced by `***`, safe for logs and errors.
pub(crate) fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "<unparsable broker URL>".to_owned();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => {
            let user = rest[..at].split(':').next().unwrap_or("");
            format!("{scheme}://{user}:***@{}", &rest[at + 1..])
        }
        None => url.to_owned(),
    }
}

/// Removes the URL (with its password) from a lapin error text.
pub(super) fn scrub(text: &str, url: &str) -> String {
    text.replace(url, &redact(url))
}

/// Opens the connection: a probe first, which fails fast on a wrong URL or a broker that is
/// down (recovery would retry a first connection for a long time), then the connection with
/// automatic recovery.
pub(super) async fn open(url: &str, options: &AmqpOptions) -> Result<Connection, ConnectError> {
    let redacted = redact(url);
    // The first connection's errors can name the URL with its password: only their
    // scrubbed text is kept, not the error itself.
    let fail = |reason: String| ConnectError::Broker {
        url: redacted.clone(),
        reason,
        source: None,
    };
    let open = |properties: ConnectionProperties| async {
        let builder = lapin::DefaultConnectionBuilder::new()?
            .with_uri_str(url.to_owned())
            .with_properties(properties)
            .with_tls_config(options.tls.lapin_config());
        builder.connect().await
    };
    let probe = tokio::time::timeout(CONNECT_TIMEOUT, open(ConnectionProperties::default()))
        .await
        .map_err(|_| fail(format!("no answer within {CONNECT_TIMEOUT:?}")))?
        .map_err(|e| fail(scrub(&e.to_string(), url)))?;
    if let Err(e) = probe.close(200, "OK".into()).await {
        tracing::debug!(error = %e, "closing the probe connection failed");
    }
    let policy = &options.reconnect;
    let properties = ConnectionProperties::default()
        .with_connection_name(LongString::from("event-manager"))
        .enable_auto_recover()
        .configure_backoff(|b| {
            b.with_min_delay(policy.min_delay)
                .with_max_delay(policy.max_delay)
                .with_jitter()
                .without_max_times()
        });
    tokio::time::timeout(CONNECT_TIMEOUT, open(properties))
        .await
        .map_err(|_| fail(format!("no answer within {CONNECT_TIMEOUT:?}")))?
        .map_err(|e| fail(scrub(&e.to_string(), url)))
}

/// What the watchdog knows about the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Health {
    /// Connected, or reconnecting within the policy.
    Alive,
    /// Closed on purpose by [`crate::transport::Transport::close`].
    Closed,
    /// Lost for good, with the reason.
    Dead(String),
}

impl Health {
    /// Why nothing can be done on the connection any more, if so.
    pub(super) fn failure(&self) -> Option<String> {
        match self {
            Self::Alive => None,
            Self::Closed => Some("the connection was closed".to_owned()),
            Self::Dead(reason) => Some(reason.clone()),
        }
    }
}

/// Watches `connection` until it is dead or closed, publishing its health in `health`.
/// Ends when the transport is dropped.
pub(super) async fn watchdog(
    connection: Weak<Connection>,
    give_up_after: Option<Duration>,
    health: watch::Sender<Health>,
) {
    let mut down_since: Option<Instant> = None;
    // Counted down when the watchdog ends: the connection is closed, dead or dropped.
    let mut up = crate::telemetry::metrics::ConnectionUp::opened();
    let mut interval = tokio::time::interval(WATCH_EVERY);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        if *health.borrow() != Health::Alive {
            return;
        }
        let Some(connection) = connection.upgrade() else {
            return;
        };
        let status = connection.status();
        up.set(status.connected());
        if status.connected() {
            if down_since.take().is_some() {
                tracing::info!("broker connection re-established");
            }
            continue;
        }
        if status.closed() || status.errored() {
            let reason = "the broker connection ended and cannot be recovered".to_owned();
            tracing::error!(%reason, "broker connection lost for good");
            let _ = health.send(Health::Dead(reason));
            return;
        }
        let since = *down_since.get_or_insert_with(|| {
            tracing::warn!("broker connection lost; reconnecting");
            Instant::now()
        });
        if let Some(limit) = give_up_after
            && since.elapsed() >= limit
        {
            let reason = format!("the broker connection was down for more than {limit:?}");
            tracing::error!(%reason, "giving up on the broker connection");
            let _ = health.send(Health::Dead(reason));
            // Stop lapin's reconnect loop: nothing uses the connection any more.
            let _ = tokio::time::timeout(
                Duration::from_secs(1),
                connection.close(320, "giving up".into()),
            )
            .await;
            return;
        }
    }
}
