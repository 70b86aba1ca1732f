//! RabbitMQ through `lapin`: confirmed `mandatory` publishes, manual acks, automatic recovery.
//!
//! One connection per transport, with lapin's automatic recovery: after a lost connection it
//! reconnects with backoff and re-declares exchanges, queues, bindings, QoS, confirm mode and
//! consumers. A publish whose confirm was lost in a reconnect is sent again once the channel
//! has recovered, with the same message id (at-least-once: a consumer may see it twice and can
//! tell by the id). Publishes share one confirm-mode channel and are pipelined: each caller
//! awaits only its own confirm.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use async_trait::async_trait;
use futures_util::Stream;
use futures_util::future::BoxFuture;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicGetOptions, BasicPublishOptions,
    BasicQosOptions, BasicRejectOptions, ConfirmSelectOptions, ExchangeDeclareOptions,
    ExchangeDeleteOptions, QueueBindOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel, Confirmation, Connection, ConnectionProperties};

use super::{Incoming, QueueKind, QueueSpec, Settler, Subscription, TlsOptions, Transport};
use crate::error::{ConnectError, ConsumeError, PublishError, TopologyError};
use crate::message::{HeaderValue, Headers, Message, Properties};
use crate::routing::BindingPattern;

/// How long an operation waits for a lost connection to come back before failing.
const RECOVERY_TIMEOUT: Duration = Duration::from_secs(60);
/// How many times one publish is re-sent after connection failures.
const MAX_RESENDS: u32 = 10;
/// How long the first connection may take, retries included.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// A RabbitMQ connection, through `lapin` on tokio.
pub struct AmqpTransport {
    connection: Arc<Connection>,
    publisher: std::sync::RwLock<Channel>,
    topology: tokio::sync::Mutex<Channel>,
    reopening: tokio::sync::Mutex<()>,
    url: String,
}

impl std::fmt::Debug for AmqpTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AmqpTransport")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

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

/// An AMQP short string: at most 255 bytes, cut at a character boundary when longer.
fn short(s: &str) -> ShortString {
    ShortString::try_new(s).unwrap_or_else(|_| {
        let mut end = 255.min(s.len());
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        ShortString::from(&s[..end])
    })
}

impl AmqpTransport {
    /// Connects to `url` (`amqp://user:pass@host:5672/vhost`; `amqps://...` with the `tls`
    /// feature, refused without it) with automatic recovery. Neither errors nor logs ever
    /// show the password.
    pub async fn connect(url: &str) -> Result<Self, ConnectError> {
        Self::connect_with_tls(url, &TlsOptions::default()).await
    }

    /// [`AmqpTransport::connect`] trusting, for `amqps://`, the extra CA certificates of
    /// `tls` besides the platform's roots.
    pub async fn connect_with_tls(url: &str, tls: &TlsOptions) -> Result<Self, ConnectError> {
        let secure = url.starts_with("amqps://");
        if secure && !cfg!(feature = "tls") {
            return Err(ConnectError::TlsNotEnabled);
        }
        if !secure && tls.has_extra_roots() {
            return Err(ConnectError::Tls {
                reason: format!(
                    "CA certificates were given but {} is not an amqps:// URL",
                    redact(url)
                ),
            });
        }
        let redacted = redact(url);
        let fail = |reason: String| ConnectError::Broker {
            url: redacted.clone(),
            reason,
        };
        let open = |properties: ConnectionProperties| async {
            let builder = lapin::DefaultConnectionBuilder::new()?
                .with_uri_str(url.to_owned())
                .with_properties(properties)
                .with_tls_config(tls.lapin_config());
            builder.connect().await
        };
        // Fail fast on a wrong URL or a broker that is down: automatic recovery would retry
        // the first connection for a long time.
        let probe = tokio::time::timeout(CONNECT_TIMEOUT, open(ConnectionProperties::default()))
            .await
            .map_err(|_| fail(format!("no answer within {CONNECT_TIMEOUT:?}")))?
            .map_err(|e| fail(scrub(&e.to_string(), url)))?;
        if let Err(e) = probe.close(200, "OK".into()).await {
            tracing::debug!(error = %e, "closing the probe connection failed");
        }
        let properties = ConnectionProperties::default()
            .with_connection_name(LongString::from("event-manager"))
            .enable_auto_recover()
            .configure_backoff(|b| {
                b.with_min_delay(Duration::from_millis(100))
                    .with_max_delay(Duration::from_secs(2))
                    .with_max_times(40)
            });
        let connection = tokio::time::timeout(CONNECT_TIMEOUT, open(properties))
            .await
            .map_err(|_| fail(format!("no answer within {CONNECT_TIMEOUT:?}")))?
            .map_err(|e| fail(scrub(&e.to_string(), url)))?;
        let connection = Arc::new(connection);
        let publisher = open_publisher(&connection)
            .await
            .map_err(|e| fail(e.to_string()))?;
        let topology = connection
            .create_channel()
            .await
            .map_err(|e| fail(e.to_string()))?;
        Ok(Self {
            connection,
            publisher: std::sync::RwLock::new(publisher),
            topology: tokio::sync::Mutex::new(topology),
            reopening: tokio::sync::Mutex::new(()),
            url: redacted,
        })
    }

    /// The broker URL without password.
    pub fn url(&self) -> &str {
        &self.url
    }

    async fn topology_channel(&self) -> Result<tokio::sync::MutexGuard<'_, Channel>, lapin::Error> {
        let mut channel = self.topology.lock().await;
        if !channel.status().connected() && !channel.status().reconnecting() {
            *channel = self.connection.create_channel().await?;
        }
        Ok(channel)
    }

    /// Runs a topology operation on the topology channel (one at a time; the channel is
    /// reopened when an earlier refusal closed it) and names `entity` in its error.
    async fn topology<T, Fut>(
        &self,
        entity: String,
        operation: impl FnOnce(Channel) -> Fut,
    ) -> Result<T, TopologyError>
    where
        Fut: std::future::Future<Output = Result<T, lapin::Error>>,
    {
        let channel = self
            .topology_channel()
            .await
            .map_err(|e| topology_error(entity.clone(), &e))?;
        operation(channel.clone())
            .await
            .map_err(|e| topology_error(entity, &e))
    }

    /// Replaces the publisher channel if it is still `broken` and closed for good.
    async fn reopen_publisher(&self, broken: &Channel) -> Result<(), lapin::Error> {
        let _one_at_a_time = self.reopening.lock().await;
        let current = self.publisher_channel();
        if current.id() == broken.id()
            && !current.status().connected()
            && !current.status().reconnecting()
        {
            let fresh = open_publisher(&self.connection).await?;
            *self
                .publisher
                .write()
                .unwrap_or_else(|poisoned| poisoned.into_inner()) = fresh;
        }
        Ok(())
    }

    fn publisher_channel(&self) -> Channel {
        self.publisher
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }
}

async fn open_publisher(connection: &Connection) -> Result<Channel, lapin::Error> {
    let channel = connection.create_channel().await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    Ok(channel)
}

/// Removes the URL (with its password) from a lapin error text.
fn scrub(text: &str, url: &str) -> String {
    text.replace(url, &redact(url))
}

/// Deleting what does not exist is not an error.
fn already_gone_is_fine(result: Result<(), TopologyError>) -> Result<(), TopologyError> {
    match result {
        Err(TopologyError::NotFound { .. }) => Ok(()),
        other => other,
    }
}

/// Maps a lapin error of an operation on `entity` to a topology error.
fn topology_error(entity: String, error: &lapin::Error) -> TopologyError {
    if let lapin::ErrorKind::ProtocolError(amqp) = error.kind() {
        let text = amqp.get_message().as_str().to_owned();
        match amqp.get_id() {
            406 => {
                let argument = text
                    .split_once("inequivalent arg '")
                    .and_then(|(_, rest)| rest.split_once('\''))
                    .map_or_else(|| "arguments".to_owned(), |(arg, _)| arg.to_owned());
                return TopologyError::Mismatch {
                    entity,
                    argument,
                    detail: text,
                };
            }
            404 => return TopologyError::NotFound { entity },
            _ => {
                return TopologyError::Refused {
                    entity,
                    detail: text,
                };
            }
        }
    }
    TopologyError::Connection {
        entity,
        detail: error.to_string(),
    }
}

fn queue_arguments(spec: &QueueSpec) -> FieldTable {
    let mut args = FieldTable::default();
    if spec.kind == QueueKind::Quorum {
        args.insert(
            "x-queue-type".into(),
            AMQPValue::LongString("quorum".into()),
        );
    }
    if let Some(ttl) = spec.message_ttl {
        let ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
        args.insert(
            "x-message-ttl".into(),
            i32::try_from(ms).map_or(AMQPValue::LongLongInt(ms), AMQPValue::LongInt),
        );
    }
    if let Some(dl) = &spec.dead_letter {
        args.insert(
            "x-dead-letter-exchange".into(),
            AMQPValue::LongString(dl.exchange.as_str().into()),
        );
        if let Some(key) = &dl.routing_key {
            args.insert(
                "x-dead-letter-routing-key".into(),
                AMQPValue::LongString(key.as_str().into()),
            );
        }
    }
    args
}

fn to_amqp(properties: &Properties) -> BasicProperties {
    let mut p = BasicProperties::default();
    if let Some(v) = &properties.content_type {
        p = p.with_content_type(short(v));
    }
    if let Some(v) = &properties.message_id {
        p = p.with_message_id(short(v));
    }
    if let Some(v) = properties.timestamp {
        p = p.with_timestamp(v);
    }
    if let Some(v) = &properties.kind {
        p = p.with_type(short(v));
    }
    if let Some(v) = &properties.app_id {
        p = p.with_app_id(short(v));
    }
    if let Some(v) = &properties.correlation_id {
        p = p.with_correlation_id(short(v));
    }
    if properties.persistent {
        p = p.with_delivery_mode(2);
    }
    if !properties.headers.is_empty() {
        let mut table = FieldTable::default();
        for (name, value) in properties.headers.iter() {
            let value = match value {
                HeaderValue::Str(s) => AMQPValue::LongString(s.as_ref().into()),
                HeaderValue::Int(i) => AMQPValue::LongLongInt(*i),
                HeaderValue::Bool(b) => AMQPValue::Boolean(*b),
            };
            table.insert(short(name), value);
        }
        p = p.with_headers(table);
    }
    p
}

fn header_value(value: &AMQPValue) -> Option<HeaderValue> {
    Some(match value {
        AMQPValue::LongString(s) => {
            HeaderValue::Str(String::from_utf8_lossy(s.as_bytes()).into_owned().into())
        }
        AMQPValue::ShortString(s) => HeaderValue::Str(s.as_str().to_owned().into()),
        AMQPValue::Boolean(b) => HeaderValue::Bool(*b),
        AMQPValue::ShortShortInt(i) => HeaderValue::Int(i64::from(*i)),
        AMQPValue::ShortShortUInt(i) => HeaderValue::Int(i64::from(*i)),
        AMQPValue::ShortInt(i) => HeaderValue::Int(i64::from(*i)),
        AMQPValue::ShortUInt(i) => HeaderValue::Int(i64::from(*i)),
        AMQPValue::LongInt(i) => HeaderValue::Int(i64::from(*i)),
        AMQPValue::LongUInt(i) => HeaderValue::Int(i64::from(*i)),
        AMQPValue::LongLongInt(i) => HeaderValue::Int(*i),
        AMQPValue::Timestamp(t) => HeaderValue::Int(i64::try_from(*t).ok()?),
        // Arrays and tables (such as RabbitMQ's own `x-death`) are not part of the contract.
        _ => return None,
    })
}

fn from_amqp(properties: &BasicProperties) -> Properties {
    let text = |v: &Option<ShortString>| v.as_ref().map(|s| s.as_str().to_owned());
    let mut headers = Headers::new();
    if let Some(table) = properties.headers() {
        for (name, value) in table.inner() {
            if let Some(v) = header_value(value) {
                headers.insert(crate::envelope::header_name(name.as_str()), v);
            }
        }
    }
    Properties {
        content_type: text(properties.content_type()).map(Into::into),
        message_id: text(properties.message_id()),
        timestamp: *properties.timestamp(),
        kind: text(properties.kind()).map(Into::into),
        app_id: text(properties.app_id()).map(Into::into),
        correlation_id: text(properties.correlation_id()),
        persistent: *properties.delivery_mode() == Some(2),
        headers,
    }
}

fn incoming(
    exchange: &ShortString,
    routing_key: &ShortString,
    redelivered: bool,
    properties: &BasicProperties,
    data: Vec<u8>,
    acker: lapin::Acker,
) -> Incoming {
    let message = Message {
        exchange: exchange.as_str().to_owned().into(),
        routing_key: routing_key.as_str().to_owned().into(),
        body: data.into(),
        properties: from_amqp(properties),
    };
    Incoming::with_settler(
        Arc::new(message),
        redelivered,
        Settler::Amqp(AmqpAcker { acker }),
    )
}

/// Settles one delivery on its channel.
pub(crate) struct AmqpAcker {
    acker: lapin::Acker,
}

fn settle_result(result: Result<bool, lapin::Error>) -> Result<(), ConsumeError> {
    match result {
        Ok(true) => Ok(()),
        Ok(false) => Err(ConsumeError::Connection {
            queue: String::new(),
            detail: "the channel recovered since this delivery; the broker delivers it again"
                .into(),
        }),
        Err(e) => Err(ConsumeError::Connection {
            queue: String::new(),
            detail: e.to_string(),
        }),
    }
}

impl AmqpAcker {
    /// Acknowledges the delivery.
    pub(crate) async fn ack(self) -> Result<(), ConsumeError> {
        settle_result(self.acker.ack(BasicAckOptions::default()).await)
    }

    /// Rejects the delivery, requeueing it or not.
    pub(crate) async fn reject(self, requeue: bool) -> Result<(), ConsumeError> {
        settle_result(self.acker.reject(BasicRejectOptions { requeue }).await)
    }
}

struct AmqpSubscription {
    channel: Channel,
    consumer: lapin::Consumer,
    /// Waiting for the channel to recover after the consumer was interrupted.
    recovering: Option<BoxFuture<'static, bool>>,
    cancelled: bool,
}

impl AmqpSubscription {
    fn new(channel: Channel, consumer: lapin::Consumer) -> Self {
        Self {
            channel,
            consumer,
            recovering: None,
            cancelled: false,
        }
    }

    /// Waits, within [`RECOVERY_TIMEOUT`], for the channel to recover from `error`; true when
    /// it did and consuming can go on.
    fn recover(&self, error: lapin::Error) -> BoxFuture<'static, bool> {
        let channel = self.channel.clone();
        Box::pin(async move {
            match tokio::time::timeout(RECOVERY_TIMEOUT, channel.wait_for_recovery(error)).await {
                Ok(Ok(())) => true,
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "consumer cannot recover");
                    false
                }
                Err(_) => {
                    tracing::error!("consumer did not recover in time");
                    false
                }
            }
        })
    }
}

#[async_trait]
impl Subscription for AmqpSubscription {
    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Incoming>> {
        loop {
            if self.cancelled {
                return Poll::Ready(None);
            }
            if let Some(recovering) = &mut self.recovering {
                let recovered = ready!(recovering.as_mut().poll(cx));
                self.recovering = None;
                if !recovered {
                    return Poll::Ready(None);
                }
            }
            match ready!(Pin::new(&mut self.consumer).poll_next(cx)) {
                None => return Poll::Ready(None),
                Some(Ok(d)) => {
                    return Poll::Ready(Some(incoming(
                        &d.exchange,
                        &d.routing_key,
                        d.redelivered,
                        &d.properties,
                        d.data,
                        d.acker,
                    )));
                }
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "consumer interrupted; waiting for recovery");
                    self.recovering = Some(self.recover(e));
                }
            }
        }
    }

    async fn cancel(&mut self) {
        if !self.cancelled {
            self.cancelled = true;
            let tag = self.consumer.tag();
            if let Err(e) = self
                .channel
                .basic_cancel(tag, BasicCancelOptions::default())
                .await
            {
                tracing::debug!(error = %e, "basic.cancel failed");
            }
        }
    }
}

#[async_trait]
impl Transport for AmqpTransport {
    async fn declare_exchange(&self, name: &str, durable: bool) -> Result<(), TopologyError> {
        let options = ExchangeDeclareOptions {
            durable,
            ..Default::default()
        };
        self.topology(format!("exchange `{name}`"), |channel| async move {
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
        let options = QueueDeclareOptions {
            durable: spec.durable,
            ..Default::default()
        };
        self.topology(format!("queue `{}`", spec.name), |channel| async move {
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
        let entity =
            format!("binding of queue `{queue}` to exchange `{exchange}` with `{pattern}`");
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

    async fn delete_queue(&self, queue: &str) -> Result<(), TopologyError> {
        let deleted = self
            .topology(format!("queue `{queue}`"), |channel| async move {
                channel
                    .queue_delete(short(queue), QueueDeleteOptions::default())
                    .await
                    .map(drop)
            })
            .await;
        already_gone_is_fine(deleted)
    }

    async fn delete_exchange(&self, exchange: &str) -> Result<(), TopologyError> {
        let deleted = self
            .topology(format!("exchange `{exchange}`"), |channel| async move {
                channel
                    .exchange_delete(short(exchange), ExchangeDeleteOptions::default())
                    .await
            })
            .await;
        already_gone_is_fine(deleted)
    }

    async fn queue_len(&self, queue: &str) -> Result<u64, TopologyError> {
        let passive = QueueDeclareOptions {
            passive: true,
            ..Default::default()
        };
        self.topology(format!("queue `{queue}`"), |channel| async move {
            channel
                .queue_declare(short(queue), passive, FieldTable::default())
                .await
                .map(|q| u64::from(q.message_count()))
        })
        .await
    }

    async fn publish(&self, message: Message) -> Result<(), PublishError> {
        let failure = |detail: String| PublishError::Connection {
            exchange: message.exchange.to_string(),
            routing_key: message.routing_key.to_string(),
            detail,
        };
        let mut resends = 0;
        loop {
            let channel = self.publisher_channel();
            // Built per attempt, not cloned: a re-send is rare, a copy per publish is not.
            let sent = async {
                channel
                    .basic_publish(
                        short(&message.exchange),
                        short(&message.routing_key),
                        BasicPublishOptions {
                            mandatory: true,
                            immediate: false,
                        },
                        &message.body,
                        to_amqp(&message.properties),
                    )
                    .await?
                    .await
            }
            .await;
            let error = match sent {
                Ok(Confirmation::Ack(None) | Confirmation::NotRequested) => return Ok(()),
                Ok(Confirmation::Ack(Some(_returned))) => {
                    return Err(PublishError::Unroutable {
                        exchange: message.exchange.to_string(),
                        routing_key: message.routing_key.to_string(),
                    });
                }
                Ok(Confirmation::Nack(_)) => {
                    return Err(PublishError::Nacked {
                        exchange: message.exchange.to_string(),
                        routing_key: message.routing_key.to_string(),
                    });
                }
                Err(e) => e,
            };
            if let lapin::ErrorKind::ProtocolError(_) = error.kind() {
                // A channel-level refusal (e.g. 404: no such exchange) closes the channel.
                let mapped = topology_error(format!("exchange `{}`", message.exchange), &error);
                if !error.is_amqp_hard_error() {
                    self.reopen_publisher(&channel)
                        .await
                        .map_err(|e| failure(e.to_string()))?;
                    return Err(PublishError::Topology(mapped));
                }
            }
            resends += 1;
            if resends > MAX_RESENDS {
                return Err(failure(format!(
                    "gave up after {MAX_RESENDS} re-sends: {error}"
                )));
            }
            tracing::warn!(%error, resends, "publish interrupted; waiting for recovery to re-send");
            match tokio::time::timeout(RECOVERY_TIMEOUT, channel.wait_for_recovery(error)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    if self.connection.status().errored() || self.connection.status().closed() {
                        return Err(failure(e.to_string()));
                    }
                    self.reopen_publisher(&channel)
                        .await
                        .map_err(|e| failure(e.to_string()))?;
                }
                Err(_) => {
                    return Err(failure(format!(
                        "the connection did not recover within {RECOVERY_TIMEOUT:?}"
                    )));
                }
            }
        }
    }

    async fn subscribe(
        &self,
        queue: &str,
        prefetch: u16,
    ) -> Result<Box<dyn Subscription>, ConsumeError> {
        let fail = |e: lapin::Error| ConsumeError::Connection {
            queue: queue.to_owned(),
            detail: e.to_string(),
        };
        let channel = self.connection.create_channel().await.map_err(fail)?;
        channel
            .basic_qos(prefetch, BasicQosOptions::default())
            .await
            .map_err(fail)?;
        let consumer = channel
            .basic_consume(
                short(queue),
                "".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(|e| match e.kind() {
                lapin::ErrorKind::ProtocolError(_) => {
                    ConsumeError::Topology(topology_error(format!("queue `{queue}`"), &e))
                }
                _ => fail(e),
            })?;
        Ok(Box::new(AmqpSubscription::new(channel, consumer)))
    }

    async fn get(&self, queue: &str) -> Result<Option<Incoming>, ConsumeError> {
        let entity = || format!("queue `{queue}`");
        let channel = self
            .topology_channel()
            .await
            .map_err(|e| ConsumeError::Topology(topology_error(entity(), &e)))?;
        let got = channel
            .basic_get(short(queue), BasicGetOptions::default())
            .await
            .map_err(|e| ConsumeError::Topology(topology_error(entity(), &e)))?;
        Ok(got.map(|m| {
            let d = m.delivery;
            incoming(
                &d.exchange,
                &d.routing_key,
                d.redelivered,
                &d.properties,
                d.data,
                d.acker,
            )
        }))
    }

    async fn close(&self) {
        if let Err(e) = self.connection.close(200, "OK".into()).await {
            tracing::debug!(error = %e, "closing the connection failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn passwords_never_reach_logs() {
        assert_eq!(
            redact("amqp://guest:secret@127.0.0.1:5672/%2f"),
            "amqp://guest:***@127.0.0.1:5672/%2f"
        );
        assert_eq!(redact("amqp://127.0.0.1"), "amqp://127.0.0.1");
        assert_eq!(redact("guest:secret@host"), "<unparsable broker URL>");
    }
}
