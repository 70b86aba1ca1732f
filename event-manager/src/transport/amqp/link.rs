//! The connection a transport is on, and its replacement once it is lost.
//!
//! lapin's own connection recovery is not used. After the loss of a cluster node it could
//! stay "reconnecting" for good without trying another node, and after a graceful broker
//! stop it could come back on channels where every publish was nacked. Here a supervisor
//! task owns the decision:
//!
//! * it watches the connection; once the connection is lost (socket gone, missed heartbeats,
//!   closed by the broker), it opens a **new** connection through [`Nodes`] — the node after
//!   the lost one first — with the delays of the [`ReconnectPolicy`], for as long as the
//!   policy allows;
//! * the parts that use the connection (the publisher, each subscription, the topology
//!   channel) take the current connection from the [`Link`] and open their channels anew on
//!   it: the publisher re-sends what was not confirmed, a subscription consumes again, and a
//!   queue that is missing there makes the service declare its topology again;
//! * once the connection has been down longer than [`ReconnectPolicy::give_up_after`], the
//!   transport is *dead*: every subscription and publish fails with the reason, so that the
//!   process exits and its supervisor restarts it. Never a zombie.
//!
//! [`Nodes`]: super::nodes::Nodes

use std::sync::{Arc, Weak};
use std::time::Duration;

use futures_util::future::BoxFuture;
use lapin::{Channel, Connection};
use tokio::sync::watch;
use tokio::time::Instant;

use super::connect::ReconnectPolicy;

/// How often the supervisor looks at the connection, and a waiter at a connection that is
/// not up yet.
const WATCH_EVERY: Duration = Duration::from_millis(100);

/// How long opening a channel may take. A channel opened on a connection that is being lost
/// (its status still says connected) gets no answer; the next attempt uses the connection
/// that replaces it.
pub(super) const OPEN_TIMEOUT: Duration = Duration::from_secs(5);

/// Runs `open` (opening a channel and setting it up) within [`OPEN_TIMEOUT`].
pub(super) async fn open_within<T>(
    open: impl Future<Output = Result<T, lapin::Error>>,
) -> Result<T, String> {
    match tokio::time::timeout(OPEN_TIMEOUT, open).await {
        Ok(Ok(opened)) => Ok(opened),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {OPEN_TIMEOUT:?}")),
    }
}

/// How long closing a channel may take: it cannot while the connection is blocked (a
/// memory alarm), or lost without notice.
pub(super) const CHANNEL_CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// Closes `channel` and waits for the broker's `close-ok`, for `timeout` at most. The broker
/// handles the close after everything sent on the channel before it, and puts back what it
/// delivered there unsettled.
pub(super) async fn close_channel(channel: Channel, timeout: Duration) {
    if !channel.status().connected() {
        return;
    }
    match tokio::time::timeout(timeout, channel.close(200, "OK".into())).await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => tracing::debug!(%error, "closing a channel failed"),
        Err(_) => tracing::debug!("closing a channel got no answer in time"),
    }
}

/// What the transport knows about its connection.
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

/// The current connection of a transport, as its users see it.
#[derive(Clone)]
pub(super) struct Link {
    current: watch::Receiver<Arc<Connection>>,
    health: watch::Receiver<Health>,
}

impl Link {
    /// The connection as it is now, connected or not.
    pub(super) fn current(&self) -> Arc<Connection> {
        self.current.borrow().clone()
    }

    /// The connection if it is up now.
    pub(super) fn up_now(&self) -> Option<Arc<Connection>> {
        Some(self.current()).filter(|c| c.status().connected())
    }

    /// Why nothing can be done on the transport any more (closed, or given up), if so.
    pub(super) fn failure(&self) -> Option<String> {
        self.health.borrow().failure()
    }

    /// The transport's health, to wait on.
    pub(super) fn health(&self) -> watch::Receiver<Health> {
        self.health.clone()
    }

    /// Waits for a connection that is up: the current one, or the one that replaces it.
    /// Fails with the reason once the transport is closed or has given the connection up.
    pub(super) async fn up(&self) -> Result<Arc<Connection>, String> {
        let mut current = self.current.clone();
        let mut health = self.health.clone();
        loop {
            if let Some(reason) = health.borrow_and_update().failure() {
                return Err(reason);
            }
            let connection = current.borrow_and_update().clone();
            if connection.status().connected() {
                return Ok(connection);
            }
            // The supervisor sends the replacement; a connection still handshaking becomes
            // connected without a send, hence the periodic look.
            tokio::select! {
                changed = current.changed() => if changed.is_err() {
                    return Err("the transport was dropped".to_owned());
                },
                changed = health.changed() => if changed.is_err() {
                    return Err("the transport was dropped".to_owned());
                },
                () = tokio::time::sleep(WATCH_EVERY) => {}
            }
        }
    }
}

/// Opens a new connection (to the node after the lost one first), or says why it could not.
pub(super) type Reconnect =
    Box<dyn Fn() -> BoxFuture<'static, Result<Connection, String>> + Send + Sync>;

/// Starts the supervisor of `first`. It ends when `owner` (held by the transport) is
/// dropped, or when the transport is closed or dead.
pub(super) fn supervise(
    owner: Weak<()>,
    first: Connection,
    health: watch::Sender<Health>,
    policy: ReconnectPolicy,
    reconnect: Reconnect,
) -> Link {
    let (sender, current) = watch::channel(Arc::new(first));
    let link = Link {
        current,
        health: health.subscribe(),
    };
    tokio::spawn(
        Supervisor {
            owner,
            current: sender,
            health,
            policy,
            reconnect,
        }
        .run(),
    );
    link
}

struct Supervisor {
    owner: Weak<()>,
    current: watch::Sender<Arc<Connection>>,
    health: watch::Sender<Health>,
    policy: ReconnectPolicy,
    reconnect: Reconnect,
}

impl Supervisor {
    /// Whether the supervisor has nothing left to do.
    fn over(&self) -> bool {
        self.owner.strong_count() == 0 || *self.health.borrow() != Health::Alive
    }

    async fn run(self) {
        // Counted down when the supervisor ends: the connection is closed, dead or dropped.
        let mut up = crate::telemetry::metrics::ConnectionUp::opened();
        let mut interval = tokio::time::interval(WATCH_EVERY);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            interval.tick().await;
            if self.over() {
                return;
            }
            let lost = self.current.borrow().clone();
            if lost.status().connected() || lost.status().connecting() {
                continue;
            }
            up.set(false);
            tracing::warn!("broker connection lost; opening a new one");
            drop(lost);
            let Some(connection) = self.replace().await else {
                return;
            };
            self.current.send_replace(Arc::new(connection));
            up.set(true);
            tracing::info!("broker connection re-established");
        }
    }

    /// Opens connections until one is up, waiting more between attempts each time; `None`
    /// when the transport was closed or dropped meanwhile, or the policy gave up.
    async fn replace(&self) -> Option<Connection> {
        let since = Instant::now();
        let mut delay = self.policy.min_delay;
        loop {
            if self.over() {
                return None;
            }
            let attempt = (self.reconnect)();
            let failure = match self.bounded(attempt, since).await {
                Some(Ok(connection)) => return Some(connection),
                Some(Err(failure)) => failure,
                None => return None,
            };
            tracing::warn!(%failure, "reconnecting failed; trying again");
            if let Some(limit) = self.policy.give_up()
                && since.elapsed() >= limit
            {
                let reason = format!(
                    "the broker connection was down for more than {limit:?}; last attempt: \
                     {failure}"
                );
                tracing::error!(%reason, "giving up on the broker connection");
                let _ = self.health.send(Health::Dead(reason));
                return None;
            }
            // Jitter spreads the reconnects of a fleet that lost the same node.
            let pause = delay.mul_f64(0.5 + fastrand::f64() / 2.0);
            tokio::time::sleep(pause).await;
            delay = (delay * 2).min(self.policy.max_delay);
        }
    }

    /// Runs one attempt, but not past the give-up deadline, nor past the transport's close.
    async fn bounded(
        &self,
        attempt: BoxFuture<'static, Result<Connection, String>>,
        since: Instant,
    ) -> Option<Result<Connection, String>> {
        let mut health = self.health.subscribe();
        let deadline = self.policy.give_up().map(|limit| since + limit);
        let closed = async {
            let _ = health.wait_for(|h| *h != Health::Alive).await;
        };
        let timeout = async {
            match deadline {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            result = attempt => Some(result),
            () = closed => None,
            () = timeout => Some(Err("no node answered before the give-up deadline".to_owned())),
        }
    }
}
