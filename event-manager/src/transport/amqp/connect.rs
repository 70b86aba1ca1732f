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

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use lapin::tcp::AMQPUriTcpExt;
use lapin::types::LongString;
use lapin::{Connection, ConnectionProperties};
use tokio::sync::watch;

use super::nodes::Nodes;
use crate::error::ConnectError;
use crate::transport::{TlsOptions, urls};

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
    pub(super) shuffle_urls: bool,
}

impl Default for AmqpOptions {
    fn default() -> Self {
        Self {
            tls: TlsOptions::default(),
            reconnect: ReconnectPolicy::default(),
            confirm_timeout: Duration::from_secs(30),
            publish_window: 1024,
            shuffle_urls: false,
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

    /// With a list of broker URLs (the nodes of a cluster), try them in a random order on the
    /// first connection instead of the order given, so that the services of a fleet spread
    /// over the nodes (default: in the order given). Either way a reconnect starts with the
    /// node after the one that was lost, and tries the lost one last.
    pub fn shuffle_urls(mut self, shuffle: bool) -> Self {
        self.shuffle_urls = shuffle;
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

/// The environment variable [`AmqpOptions::from_env`] reads [`ReconnectPolicy::give_up_after`]
/// from.
pub const GIVE_UP_AFTER_ENV: &str = "AMQP_GIVE_UP_AFTER";
/// The environment variable [`AmqpOptions::from_env`] reads
/// [`AmqpOptions::confirm_timeout`] from.
pub const CONFIRM_TIMEOUT_ENV: &str = "AMQP_CONFIRM_TIMEOUT";
/// The environment variable [`AmqpOptions::from_env`] reads [`AmqpOptions::shuffle_urls`]
/// from.
pub const SHUFFLE_URLS_ENV: &str = "AMQP_SHUFFLE_URLS";

/// Opens the connection to the first node of `nodes` that answers: a probe first, which
/// fails fast on a wrong URL or a cluster that is down (recovery would retry a first
/// connection for a long time), then the connection with automatic recovery, whose
/// reconnects go through [`Nodes::connect`] too.
pub(super) async fn open(
    list: &str,
    nodes: &Arc<Nodes>,
    options: &AmqpOptions,
) -> Result<Connection, ConnectError> {
    // The first connection's errors can name a URL with its password: only their scrubbed
    // text is kept, not the error itself.
    let fail = |reason: String| ConnectError::Broker {
        url: nodes.shown(),
        reason,
        source: None,
    };
    let open = |properties: ConnectionProperties| {
        let nodes = nodes.clone();
        let tls = options.tls.lapin_config();
        async move {
            let runtime = lapin::runtime::default_runtime()?;
            let first = nodes.first();
            // The first attempt of a new connection starts at the first URL; reconnects start
            // after the node that was lost.
            let fresh = std::sync::atomic::AtomicBool::new(true);
            Connection::connector(
                first,
                runtime,
                async move |_uri, runtime| {
                    let fresh = fresh.swap(false, std::sync::atomic::Ordering::Relaxed);
                    nodes
                        .connect(fresh, |uri| {
                            let (tls, runtime) = (&tls, &runtime);
                            async move { uri.connect_with_config_async(tls.as_ref(), runtime).await }
                        })
                        .await
                        .map_err(lapin::Error::from)
                },
                properties,
            )
            .await
        }
    };
    let probe = tokio::time::timeout(CONNECT_TIMEOUT, open(ConnectionProperties::default()))
        .await
        .map_err(|_| fail(format!("no answer within {CONNECT_TIMEOUT:?}")))?
        .map_err(|e| fail(urls::scrub(&e.to_string(), list)))?;
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
        .map_err(|e| fail(urls::scrub(&e.to_string(), list)))
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
