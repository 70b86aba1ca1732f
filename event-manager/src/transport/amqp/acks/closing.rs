//! The consumer channels of a transport, which closing the connection settles and closes
//! first.
//!
//! A settlement queued on a channel just before `connection.close` (lapin sends frames in
//! the order they were queued) does not always count: about one close in 200 on RabbitMQ
//! 3.10 put the acknowledged deliveries back in their queue, and they were delivered again
//! although they were handled. Closing each consumer channel with `channel.close`, and
//! waiting for `close-ok`, lets the broker apply everything sent on it first (none in ten runs
//! of the 100 closes of `tests/rabbitmq_acks.rs`). So a path that is dropped (the last of
//! its subscription and unsettled deliveries) closes its channel that way, and
//! [`Paths::close_all`], which [`crate::transport::Transport::close`] runs before closing the
//! connection, settles and closes the paths still open and waits for those being closed.

use std::sync::{Arc, Mutex, Weak};

use lapin::Channel;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::Shared;
use crate::transport::amqp::link::{CHANNEL_CLOSE_TIMEOUT, close_channel};

/// The consumer channels of one transport (see the module documentation).
#[derive(Clone, Default)]
pub(in crate::transport::amqp) struct Paths(Arc<Mutex<Inner>>);

#[derive(Default)]
struct Inner {
    /// Paths in use.
    open: Vec<Weak<Shared>>,
    /// Channels of dropped paths, being closed.
    closing: Vec<JoinHandle<()>>,
}

impl Paths {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Tracks the path `shared`, forgetting those that are gone.
    pub(super) fn add(&self, shared: &Arc<Shared>) {
        let mut inner = self.lock();
        inner.open.retain(|path| path.strong_count() > 0);
        inner.closing.retain(|task| !task.is_finished());
        inner.open.push(Arc::downgrade(shared));
    }

    /// Closes `channel` (its path was dropped, its settlements are queued on it) and
    /// remembers the closing, for [`Self::close_all`]. Without a runtime to close it on, the
    /// channel is left to lapin, which closes it once its last handle is dropped.
    pub(super) fn close(&self, channel: Channel) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let task = runtime.spawn(close_channel(channel, CHANNEL_CLOSE_TIMEOUT));
        self.lock().closing.push(task);
    }

    /// Settles what every open path has recorded, closes their channels and waits, until
    /// `deadline` at the latest, for every consumer channel of the transport to be closed.
    pub(in crate::transport::amqp) async fn close_all(&self, deadline: Instant) {
        let (open, closing) = {
            let mut inner = self.lock();
            (
                std::mem::take(&mut inner.open),
                std::mem::take(&mut inner.closing),
            )
        };
        let mut channels = Vec::new();
        for shared in open.iter().filter_map(Weak::upgrade) {
            let mut state = shared.lock();
            shared.flush(&mut state, true);
            drop(state);
            channels.push(shared.channel.clone());
        }
        let timeout = deadline.saturating_duration_since(Instant::now());
        let closes = channels
            .into_iter()
            .map(|channel| tokio::spawn(close_channel(channel, timeout)))
            .chain(closing);
        let _ = tokio::time::timeout_at(deadline, futures_util::future::join_all(closes)).await;
    }
}
