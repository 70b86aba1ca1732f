//! RabbitMQ through `lapin`: confirmed `mandatory` publishes, manual acks, recovery.
//!
//! One connection per transport at a time. The parts:
//!
//! * [`connect`](self::connect): opening a connection, [`AmqpOptions`] and the
//!   [`ReconnectPolicy`]; `nodes`: the URLs of a cluster and the order they are tried in;
//! * `link`: the current connection and its supervisor, which opens a new connection (on the
//!   next node) once it is lost, and fails everything once it gives up (no zombie consumer,
//!   no publish waiting forever);
//! * `publisher`: one task owning the confirm-mode channel; re-sends on a new channel with
//!   the same message id; `confirms` pairs each confirm with its own returned message;
//! * `subscription`: deliveries and the end of a subscription; `acks`: their settlement,
//!   coalesced into `basic.ack multiple` frames on one ordered path per channel;
//! * `convert`: properties, headers, queue arguments and broker refusals.

mod acks;
mod confirms;
pub(crate) mod connect;
mod convert;
mod link;
mod nodes;
mod publisher;
mod subscription;

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use lapin::Channel;
use lapin::options::{
    BasicGetOptions, ExchangeDeclareOptions, ExchangeDeleteOptions, QueueBindOptions,
    QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::FieldTable;
use tokio::sync::watch;

pub use connect::{
    AmqpOptions, CONFIRM_TIMEOUT_ENV, DEFAULT_HEARTBEAT, GIVE_UP_AFTER_ENV, ReconnectPolicy,
    SHUFFLE_URLS_ENV,
};
pub(crate) use subscription::AmqpAcker;

use super::{Incoming, QueueSpec, Subscription, TlsOptions, Transport};
use crate::error::{ConnectError, ConsumeError, Entity, PublishError, TopologyError};
use crate::message::Message;
use crate::routing::BindingPattern;
use convert::{already_gone_is_fine, queue_arguments, short, topology_error};
use link::{Health, Link};
use publisher::{Publisher, open_publisher};
use subscription::{AmqpSubscription, MIN_RESUME_LIMIT, NotConsuming};

/// How long closing the connection may take.
const CLOSE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

/// A RabbitMQ connection, through `lapin` on tokio.
pub struct AmqpTransport {
    link: Link,
    /// The supervisor of the connection ends once this is dropped.
    _owner: Arc<()>,
    publisher: Publisher,
    /// The channel of topology operations, and the connection it is on; none once an
    /// operation on it got no answer in time.
    topology: ChannelSlot,
    /// The channels of `basic.get`, one per queue read, apart from the topology channel: a
    /// channel closed by a refused declaration, or by a get of another queue that got no
    /// answer in time, must not put back the messages got and not yet settled. Deleting a
    /// queue through the transport closes its get channel: RabbitMQ (3.10) keeps a channel's
    /// state of a queue it read after another channel deleted it, and crashes that channel
    /// (`INTERNAL_ERROR`) on the next get once the name was declared again with another type
    /// (a migration to quorum).
    gets: std::sync::Mutex<HashMap<String, Arc<ChannelSlot>>>,
    closing: watch::Sender<Health>,
    /// The consumer channels, closed before the connection.
    paths: acks::Paths,
    options: AmqpOptions,
    url: String,
    nodes: Arc<nodes::Nodes>,
}

impl std::fmt::Debug for AmqpTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AmqpTransport")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl AmqpTransport {
    /// Connects to `url` (`amqp://user:pass@host:5672/vhost`; `amqps://...` with the `tls`
    /// feature, refused without it) with the default [`AmqpOptions`]. Neither errors nor
    /// logs ever show the password.
    pub async fn connect(url: &str) -> Result<Self, ConnectError> {
        Self::connect_with(url, &AmqpOptions::default()).await
    }

    /// [`AmqpTransport::connect`] trusting, for `amqps://`, the extra CA certificates of
    /// `tls` besides the platform's roots.
    pub async fn connect_with_tls(url: &str, tls: &TlsOptions) -> Result<Self, ConnectError> {
        Self::connect_with(url, &AmqpOptions::default().tls(tls.clone())).await
    }

    /// Connects to `url` with `options`: TLS, reconnection, confirm timeout, URL order.
    ///
    /// `url` may list the nodes of a cluster, comma-separated
    /// (`amqp://u:p@rabbit-1:5672/%2f,amqp://u:p@rabbit-2:5672/%2f`), sharing user, password
    /// and virtual host. The connection goes to the first node that answers, in the order
    /// given or shuffled ([`AmqpOptions::shuffle_urls`]). When it is lost, the reconnect
    /// starts with the next node and tries the lost one last; consumers consume again and
    /// unconfirmed publishes are re-sent on the node that answers.
    pub async fn connect_with(url: &str, options: &AmqpOptions) -> Result<Self, ConnectError> {
        let nodes = nodes::Nodes::parse(url, options.shuffle_urls)?;
        if nodes.any_secure() && !cfg!(feature = "tls") {
            return Err(ConnectError::TlsNotEnabled);
        }
        if nodes.any_plain() && options.tls.has_extra_roots() {
            return Err(ConnectError::Tls {
                reason: format!(
                    "CA certificates were given but {} is not an amqps:// URL",
                    nodes.shown()
                ),
            });
        }
        let redacted = nodes.shown();
        let fail = |e: lapin::Error| ConnectError::Broker {
            url: redacted.clone(),
            reason: e.to_string(),
            source: Some(Arc::new(e)),
        };
        let first = connect::open(url, &nodes, options, true).await?;
        let publisher_channel = open_publisher(&first).await.map_err(fail)?;
        let topology = first.create_channel().await.map_err(fail)?;
        let owner = Arc::new(());
        let (closing, _) = watch::channel(Health::Alive);
        let reconnect: link::Reconnect = {
            let (list, nodes, options) = (url.to_owned(), nodes.clone(), options.clone());
            Box::new(move || {
                let (list, nodes, options) = (list.clone(), nodes.clone(), options.clone());
                Box::pin(async move {
                    connect::open(&list, &nodes, &options, false)
                        .await
                        .map_err(|e| e.to_string())
                })
            })
        };
        let link = link::supervise(
            Arc::downgrade(&owner),
            first,
            closing.clone(),
            options.reconnect.clone(),
            reconnect,
        );
        let publisher = Publisher::start(
            link.clone(),
            publisher_channel,
            options.confirm_timeout,
            options.publish_window,
        );
        let on = link.current();
        Ok(Self {
            link,
            _owner: owner,
            publisher,
            topology: tokio::sync::Mutex::new((on, Some(topology))),
            gets: std::sync::Mutex::default(),
            closing,
            paths: acks::Paths::default(),
            options: options.clone(),
            url: redacted,
            nodes,
        })
    }

    /// The broker URL, or the comma-separated URLs of the nodes in the order they are tried,
    /// without passwords.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The URL (without password) of the node the connection is on, or was on last while it
    /// reconnects.
    pub fn node(&self) -> Option<String> {
        self.nodes.current().map(str::to_owned)
    }

    /// The heartbeat interval agreed with the broker on the connection in use (none when
    /// heartbeats are off). See [`AmqpOptions::heartbeat`].
    pub fn heartbeat(&self) -> Option<std::time::Duration> {
        match self.link.current().configuration().heartbeat() {
            0 => None,
            seconds => Some(std::time::Duration::from_secs(u64::from(seconds))),
        }
    }

    fn ensure_alive(&self, entity: &Entity) -> Result<(), TopologyError> {
        match self.link.failure() {
            Some(detail) => Err(TopologyError::Connection {
                entity: entity.clone(),
                detail,
                source: None,
            }),
            None => Ok(()),
        }
    }

    /// The channels of `basic.get` by queue (a plain map: a panic cannot leave it
    /// half-updated).
    fn gets(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<ChannelSlot>>> {
        self.gets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Runs a topology operation on the topology channel; see [`Self::on_channel`].
    async fn topology<T, Fut>(
        &self,
        entity: Entity,
        operation: impl FnOnce(Channel) -> Fut,
    ) -> Result<T, TopologyError>
    where
        Fut: std::future::Future<Output = Result<T, lapin::Error>>,
    {
        self.on_channel(&self.topology, entity, operation).await
    }

    /// Runs an operation on the channel of `slot` (one at a time; the channel is reopened
    /// when an earlier refusal closed it), within the confirm timeout, and names `entity` in
    /// its error.
    ///
    /// The broker acts on a request whose answer comes too late all the same: a `basic.get`
    /// answered then would leave its message unacknowledged on the channel, out of the
    /// queue for as long as the channel lives. So a channel whose operation got no answer
    /// in time is closed (the broker puts such a message back) and the next operation opens
    /// another. An operation that waited behind earlier ones until less than a tenth of the
    /// timeout is left is not sent at all: it would most likely time out, and close the
    /// channel for nothing.
    async fn on_channel<T, Fut>(
        &self,
        slot: &ChannelSlot,
        entity: Entity,
        operation: impl FnOnce(Channel) -> Fut,
    ) -> Result<T, TopologyError>
    where
        Fut: std::future::Future<Output = Result<T, lapin::Error>>,
    {
        entity.check_names()?;
        self.ensure_alive(&entity)?;
        let deadline = self.options.confirm_timeout;
        let until = tokio::time::Instant::now() + deadline;
        let queued = match tokio::time::timeout_at(until, slot.lock()).await {
            Ok(held)
                if until.saturating_duration_since(tokio::time::Instant::now())
                    >= deadline / 10 =>
            {
                Ok(held)
            }
            _ => Err(TopologyError::Connection {
                entity: entity.clone(),
                detail: format!(
                    "not sent: waited behind earlier operations on its channel for most of \
                     {deadline:?}"
                ),
                source: None,
            }),
        };
        let mut held = queued?;
        let run = async {
            let (on, slot) = &mut *held;
            let channel = match slot {
                Some(channel)
                    if channel.status().connected() && Arc::ptr_eq(on, &self.link.current()) =>
                {
                    channel.clone()
                }
                // Closed by a refusal or after no answer, or on a connection that was lost:
                // a new channel on the connection that is up.
                _ => {
                    let connection =
                        self.link
                            .up()
                            .await
                            .map_err(|detail| TopologyError::Connection {
                                entity: entity.clone(),
                                detail,
                                source: None,
                            })?;
                    *slot = None;
                    let channel = connection
                        .create_channel()
                        .await
                        .map_err(|e| topology_error(entity.clone(), &e))?;
                    *on = connection;
                    slot.insert(channel).clone()
                }
            };
            operation(channel)
                .await
                .map_err(|e| topology_error(entity.clone(), &e))
        };
        match tokio::time::timeout_at(until, run).await {
            Ok(result) => result,
            Err(_) => {
                // Not among the consumer channels `close` waits for: closing the connection
                // closes it too, and puts back what it holds.
                if let Some(channel) = held.1.take() {
                    tokio::spawn(link::close_channel(channel, link::CHANNEL_CLOSE_TIMEOUT));
                }
                Err(TopologyError::Connection {
                    entity,
                    detail: format!("no answer from the broker within {deadline:?}"),
                    source: None,
                })
            }
        }
    }
}

/// A channel for one kind of operation, and the connection it is on; none before its first
/// operation, once an operation on it got no answer in time, and once it was retired.
type ChannelSlot = tokio::sync::Mutex<(Arc<lapin::Connection>, Option<Channel>)>;

#[async_trait]
impl Transport for AmqpTransport {
    async fn declare_exchange(&self, name: &str, durable: bool) -> Result<(), TopologyError> {
        let entity = Entity::Exchange(name.to_owned());
        entity.check_declarable()?;
        let options = ExchangeDeclareOptions {
            durable,
            ..Default::default()
        };
        self.topology(entity, |channel| async move {
            channel
                .exchange_declare(
                    short(name),
                    lapin::ExchangeKind::Topic,
                    options,
                    FieldTable::default(),
                )
                .await
        })
        .await
    }

    async fn declare_queue(&self, spec: &QueueSpec) -> Result<(), TopologyError> {
        spec.check_declarable()?;
        let options = QueueDeclareOptions {
            durable: spec.durable,
            ..Default::default()
        };
        self.topology(Entity::Queue(spec.name.to_string()), |channel| async move {
            channel
                .queue_declare(short(&spec.name), options, queue_arguments(spec))
                .await
                .map(drop)
        })
        .await
    }

    async fn bind(
        &self,
        queue: &str,
        exchange: &str,
        pattern: &BindingPattern,
    ) -> Result<(), TopologyError> {
        let entity = Entity::binding(queue, exchange, pattern);
        entity.check_declarable()?;
        self.topology(entity, |channel| async move {
            channel
                .queue_bind(
                    short(queue),
                    short(exchange),
                    short(pattern.as_str()),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await
        })
        .await
    }

    async fn unbind(
        &self,
        queue: &str,
        exchange: &str,
        pattern: &BindingPattern,
    ) -> Result<(), TopologyError> {
        let entity = Entity::binding(queue, exchange, pattern);
        // RabbitMQ takes the unbinding of a missing binding; a missing queue or exchange
        // (404) means there is nothing bound either.
        let unbound = self
            .topology(entity, |channel| async move {
                channel
                    .queue_unbind(
                        short(queue),
                        short(exchange),
                        short(pattern.as_str()),
                        FieldTable::default(),
                    )
                    .await
            })
            .await;
        already_gone_is_fine(unbound)
    }

    async fn delete_queue(&self, queue: &str) -> Result<(), TopologyError> {
        let deleted = self
            .topology(Entity::Queue(queue.to_owned()), |channel| async move {
                channel
                    .queue_delete(short(queue), QueueDeleteOptions::default())
                    .await
                    .map(drop)
            })
            .await;
        // The next get of this name opens a new channel; the old one is closed once a get
        // running on it is done.
        let read = self.gets().remove(queue);
        if let Some(slot) = read {
            tokio::spawn(async move {
                let channel = slot.lock().await.1.take();
                if let Some(channel) = channel {
                    link::close_channel(channel, link::CHANNEL_CLOSE_TIMEOUT).await;
                }
            });
        }
        already_gone_is_fine(deleted)
    }

    async fn delete_exchange(&self, exchange: &str) -> Result<(), TopologyError> {
        let deleted = self
            .topology(
                Entity::Exchange(exchange.to_owned()),
                |channel| async move {
                    channel
                        .exchange_delete(short(exchange), ExchangeDeleteOptions::default())
                        .await
                },
            )
            .await;
        already_gone_is_fine(deleted)
    }

    async fn queue_len(&self, queue: &str) -> Result<u64, TopologyError> {
        let passive = QueueDeclareOptions {
            passive: true,
            ..Default::default()
        };
        self.topology(Entity::Queue(queue.to_owned()), |channel| async move {
            channel
                .queue_declare(short(queue), passive, FieldTable::default())
                .await
                .map(|q| u64::from(q.message_count()))
        })
        .await
    }

    async fn publish(&self, message: Message) -> Result<(), PublishError> {
        self.publisher.publish(message).await
    }

    async fn subscribe(
        &self,
        queue: &str,
        prefetch: u16,
    ) -> Result<Box<dyn Subscription>, ConsumeError> {
        let entity = Entity::Queue(queue.to_owned());
        entity.check_names()?;
        self.ensure_alive(&entity)?;
        let deadline = self.options.confirm_timeout;
        let no_answer = || ConsumeError::Connection {
            queue: queue.to_owned(),
            detail: format!("no answer from the broker within {deadline:?}"),
            source: None,
        };
        let started = tokio::time::Instant::now();
        let connection = tokio::time::timeout(deadline, self.link.up())
            .await
            .map_err(|_| no_answer())?
            .map_err(|detail| ConsumeError::Connection {
                queue: queue.to_owned(),
                detail,
                source: None,
            })?;
        let left = deadline.saturating_sub(started.elapsed());
        let (channel, consumer) = subscription::consume(&connection, queue, prefetch, left)
            .await
            .map_err(|e| match e {
                NotConsuming::NoAnswer => no_answer(),
                NotConsuming::Failed(e) => match e.kind() {
                    lapin::ErrorKind::ProtocolError(_) => {
                        ConsumeError::Topology(topology_error(entity.clone(), &e))
                    }
                    _ => ConsumeError::Connection {
                        queue: queue.to_owned(),
                        detail: e.to_string(),
                        source: Some(Arc::new(e)),
                    },
                },
            })?;
        Ok(Box::new(AmqpSubscription::new(
            self.link.clone(),
            self.paths.clone(),
            queue,
            prefetch,
            // Consuming again may fail a while on a connection that is up (a quorum queue
            // electing its leader), not for ever.
            deadline.saturating_mul(2).max(MIN_RESUME_LIMIT),
            (connection, channel, consumer),
        )))
    }

    async fn get(&self, queue: &str) -> Result<Option<Incoming>, ConsumeError> {
        let entity = Entity::Queue(queue.to_owned());
        let slot = {
            let mut gets = self.gets();
            let slot = gets
                .entry(queue.to_owned())
                .or_insert_with(|| Arc::new(tokio::sync::Mutex::new((self.link.current(), None))));
            slot.clone()
        };
        let got = self
            .on_channel(&slot, entity, |channel| async move {
                channel
                    .basic_get(short(queue), BasicGetOptions::default())
                    .await
            })
            .await;
        if let Err(TopologyError::NotFound { .. }) = &got {
            // The broker closed the channel over the missing queue: it holds nothing, and a
            // name that is never read again must not keep an entry.
            let mut gets = self.gets();
            if gets.get(queue).is_some_and(|kept| Arc::ptr_eq(kept, &slot)) {
                gets.remove(queue);
            }
        }
        Ok(got?.map(|m| subscription::incoming(m.delivery)))
    }

    async fn close(&self) {
        let _ = self.closing.send(Health::Closed);
        // A blocked connection (memory alarm) sends no close frame: do not wait long, the
        // broker notices the socket closing with the process.
        let timeout = self.options.confirm_timeout.min(CLOSE_TIMEOUT);
        // Consumer channels first, so that the broker applies every settlement before it
        // puts back what was not settled.
        let started = tokio::time::Instant::now();
        self.paths.close_all(started + timeout / 2).await;
        let connection = self.link.current();
        let close = connection.close(200, "OK".into());
        let left = timeout.saturating_sub(started.elapsed());
        match tokio::time::timeout(left, close).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::debug!(error = %e, "closing the connection failed"),
            Err(_) => tracing::warn!("closing the connection got no answer in time"),
        }
    }

    fn failure(&self) -> Option<String> {
        self.link.failure()
    }

    fn is_connected(&self) -> bool {
        self.link.failure().is_none() && self.link.up_now().is_some()
    }
}

#[cfg(test)]
mod tests;
