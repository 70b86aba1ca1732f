//! The [`Bus`]: a handle on one broker connection, used to publish events and to build
//! consuming [`Service`](crate::Service)s.

use std::borrow::Cow;
use std::sync::{Arc, LazyLock, RwLock};
use std::time::{Duration, Instant};

use tracing::Instrument;

use crate::contract::{Event, EventDef, Exchange};
use crate::envelope::{self, Origin};
use crate::error::{ConnectError, PublishError, TopologyError};
use crate::registry;
use crate::telemetry::trace;

mod unroutable;
mod versions;

#[cfg(feature = "amqp")]
use crate::transport::{AmqpOptions, AmqpTransport, TlsOptions};
use crate::transport::{InMemoryBroker, Transport};
pub use unroutable::Unroutable;
pub use versions::VersionedPublish;

/// The scheme of a broker URL: `amqp` for `amqp://…`.
fn scheme(url: &str) -> &str {
    url.split_once("://").map_or(url, |(s, _)| s)
}

/// The error for a URL scheme this build cannot connect to.
fn unsupported_scheme(scheme: &str) -> ConnectError {
    match scheme {
        "amqp" | "amqps" if !cfg!(feature = "amqp") => ConnectError::FeatureDisabled {
            scheme: scheme.to_owned(),
            feature: "amqp",
        },
        other => ConnectError::UnsupportedScheme {
            scheme: other.to_owned(),
        },
    }
}

/// The environment variable [`Bus::from_env`] reads the broker URL from.
pub const AMQP_URL_ENV: &str = "AMQP_URL";

/// The environment variable [`Bus::from_env`] reads the path of extra CA certificates (PEM)
/// from, for `amqps://` brokers with a private CA.
pub const AMQP_CA_FILE_ENV: &str = "AMQP_CA_FILE";

/// A connection to a broker (RabbitMQ or the in-memory one) shared by publishers and services.
/// Cheap to clone.
///
/// ```standalone_crate
/// use event_manager::{Bus, Event, Exchange};
/// use schemars::JsonSchema;
/// use serde::{Deserialize, Serialize};
///
/// pub const ORDER: Exchange = Exchange::topic("order");
///
/// /// An order as it travels between services.
/// #[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, Event)]
/// #[event(exchange = ORDER, version = "1.2.0", events(submit, chargeback))]
/// pub struct Order {
///     pub id: u64,
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let bus = Bus::in_memory().with_app_id("order");
/// let mut billing = bus.service("billing_order");
/// billing.bind(ORDER, "order.*.submit")?;
/// billing.on(Order::SUBMIT, |order: Order, _ctx| async move {
///     println!("charging order {}", order.id);
///     Ok(())
/// });
/// let running = billing.start().await?;
///
/// Order { id: 7 }.submit(&bus).await?; // order.v1.submit, confirmed
/// running.shutdown().await?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Bus {
    inner: Arc<BusInner>,
}

struct BusInner {
    transport: Arc<dyn Transport>,
    /// The same transport when it is the embedded broker, published to without a boxed
    /// future.
    memory: Option<InMemoryBroker>,
    app_id: Cow<'static, str>,
    namespace: Option<String>,
    /// Exchanges declared through this bus; a bus publishes to a handful, so a list is the
    /// fastest lookup.
    declared: RwLock<Vec<&'static str>>,
    /// The unroutable policy per routing key, where it is not [`Unroutable::Error`].
    unroutable: unroutable::Policies,
    /// The publish metrics, per event.
    metrics: crate::telemetry::metrics::PublishRegistry,
}

impl std::fmt::Debug for Bus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bus")
            .field("app_id", &self.inner.app_id)
            .finish_non_exhaustive()
    }
}

/// Optional settings of one publish.
#[derive(Debug, Clone, Default)]
pub struct PublishOptions {
    /// The AMQP `correlation_id`.
    pub correlation_id: Option<String>,
    /// Use this `message_id` instead of a fresh one (e.g. to re-send the same event).
    pub message_id: Option<String>,
    /// A W3C `traceparent` to carry in the headers.
    pub traceparent: Option<String>,
    /// What to do when no queue is bound to receive the event; when `None`, the policy
    /// of the bus for the event ([`Bus::with_unroutable`]), by default [`Unroutable::Error`].
    pub unroutable: Option<Unroutable>,
}

/// Whether a publish failed because its exchange does not exist (deleted from outside).
pub(super) fn exchange_missing(error: &PublishError) -> bool {
    matches!(
        error,
        PublishError::Topology(TopologyError::NotFound { .. })
    )
}

/// What the broker confirmed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    /// The message id of the published message.
    pub message_id: String,
    /// The routing key it was published with.
    pub routing_key: &'static str,
    /// Whether a queue received it; `false` only under [`Unroutable::Log`] or
    /// [`Unroutable::Ignore`], when no queue is bound for it.
    pub routed: bool,
}

/// The executable's name, looked up once per process.
fn default_app_id() -> Cow<'static, str> {
    static NAME: LazyLock<String> = LazyLock::new(|| {
        std::env::current_exe()
            .ok()
            .and_then(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
            .unwrap_or_else(|| "event-manager".to_owned())
    });
    Cow::Borrowed(NAME.as_str())
}

impl Bus {
    /// A bus over `transport`.
    pub fn with_transport(transport: impl Transport) -> Self {
        let memory = (&transport as &dyn std::any::Any)
            .downcast_ref::<InMemoryBroker>()
            .cloned();
        Self::from_arc(
            Arc::new(transport),
            memory,
            default_app_id(),
            None,
            unroutable::Policies::default(),
        )
    }

    fn from_arc(
        transport: Arc<dyn Transport>,
        memory: Option<InMemoryBroker>,
        app_id: Cow<'static, str>,
        namespace: Option<String>,
        unroutable: unroutable::Policies,
    ) -> Self {
        Self {
            inner: Arc::new(BusInner {
                transport,
                memory,
                app_id,
                namespace,
                declared: RwLock::new(Vec::new()),
                unroutable,
                metrics: Default::default(),
            }),
        }
    }

    /// A bus over a new, private [`InMemoryBroker`].
    pub fn in_memory() -> Self {
        Self::with_transport(InMemoryBroker::new())
    }

    /// Connects to the broker at `url`: `amqp://` or `amqps://` for RabbitMQ, `memory://` for a
    /// new in-memory broker. Checks the registered contracts first. Without the `amqp`
    /// feature, an `amqp://` or `amqps://` URL is [`ConnectError::FeatureDisabled`].
    pub async fn connect(url: &str) -> Result<Self, ConnectError> {
        #[cfg(feature = "amqp")]
        return Self::connect_with_tls(url, &TlsOptions::default()).await;
        #[cfg(not(feature = "amqp"))]
        {
            registry::validate()?;
            match scheme(url) {
                "memory" => Ok(Self::in_memory()),
                other => Err(unsupported_scheme(other)),
            }
        }
    }

    /// [`Bus::connect`] trusting, for `amqps://`, the extra CA certificates of `tls` (a
    /// private CA) besides the platform's roots.
    #[cfg(feature = "amqp")]
    pub async fn connect_with_tls(url: &str, tls: &TlsOptions) -> Result<Self, ConnectError> {
        Self::connect_with(url, &AmqpOptions::default().tls(tls.clone())).await
    }

    /// [`Bus::connect`] with RabbitMQ settings: TLS, how a lost connection is re-established
    /// ([`ReconnectPolicy`](crate::transport::ReconnectPolicy)) and how long a publish waits
    /// for its confirm.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), event_manager::ConnectError> {
    /// use std::time::Duration;
    /// use event_manager::Bus;
    /// use event_manager::transport::{AmqpOptions, ReconnectPolicy};
    ///
    /// // Exit (and let the supervisor restart the process) after 2 minutes without broker.
    /// let options = AmqpOptions::default()
    ///     .reconnect(ReconnectPolicy::default().give_up_after(Duration::from_secs(120)))
    ///     .confirm_timeout(Duration::from_secs(10));
    /// let bus = Bus::connect_with("amqp://guest:guest@127.0.0.1:5672/%2f", &options).await?;
    /// # let _ = bus; Ok(()) }
    /// ```
    #[cfg(feature = "amqp")]
    pub async fn connect_with(url: &str, options: &AmqpOptions) -> Result<Self, ConnectError> {
        registry::validate()?;
        match scheme(url) {
            "memory" => Ok(Self::in_memory()),
            "amqp" | "amqps" => Ok(Self::with_transport(
                AmqpTransport::connect_with(url, options).await?,
            )),
            other => Err(unsupported_scheme(other)),
        }
    }

    /// Connects to the broker named by the `AMQP_URL` environment variable, or to a new
    /// in-memory broker when it is unset or empty. The other settings come from the
    /// environment too ([`AmqpOptions::from_env`]): `AMQP_CA_FILE` (extra CA certificates
    /// for `amqps://`), `AMQP_GIVE_UP_AFTER` and `AMQP_CONFIRM_TIMEOUT`.
    pub async fn from_env() -> Result<Self, ConnectError> {
        match std::env::var(AMQP_URL_ENV) {
            #[cfg(feature = "amqp")]
            Ok(url) if !url.trim().is_empty() => {
                Self::connect_with(url.trim(), &AmqpOptions::from_env()?).await
            }
            #[cfg(not(feature = "amqp"))]
            Ok(url) if !url.trim().is_empty() => Self::connect(url.trim()).await,
            _ => Self::connect("memory://").await,
        }
    }

    /// The same connection, publishing as `app_id` (the AMQP `app_id` and CloudEvents
    /// `source`). Defaults to the executable's name. A `&'static str` is used as it is; a
    /// `String` is copied into every message.
    pub fn with_app_id(&self, app_id: impl Into<Cow<'static, str>>) -> Self {
        Self::from_arc(
            self.inner.transport.clone(),
            self.inner.memory.clone(),
            app_id.into(),
            self.inner.namespace.clone(),
            self.inner.unroutable.clone(),
        )
    }

    /// The same connection, with every exchange and queue name prefixed by `namespace` and a
    /// dot: exchange `order` becomes `test42.order`, the queue of service `billing_order`
    /// becomes `test42.billing_order` (its wait queues `test42.billing_order.wait.<ms>ms`,
    /// retry queue `test42.billing_order.retried` and dead-letter queue
    /// `test42.billing_order.dlq`). Routing keys do not change. Lets
    /// tests, or tenants sharing one broker, run the same contracts and services side by side
    /// without seeing each other's events.
    ///
    /// Service names stay logical: [`Bus::service`](crate::Bus::service) and
    /// [`Service::queue`](crate::Service::queue) take the name without the namespace;
    /// [`Bus::topology`](crate::Bus::topology) gives the broker-side names.
    pub fn with_namespace(&self, namespace: impl Into<String>) -> Self {
        Self::from_arc(
            self.inner.transport.clone(),
            self.inner.memory.clone(),
            self.inner.app_id.clone(),
            Some(namespace.into()),
            self.inner.unroutable.clone(),
        )
    }

    /// The same connection, publishing `event` under the `policy` for when no queue is bound
    /// to receive it; the default for every event is [`Unroutable::Error`]. Applies to every
    /// publish of `event` through the returned bus, the generated `order.submit(&bus)`
    /// included, unless a publish chooses its own ([`PublishOptions::unroutable`]).
    ///
    /// ```standalone_crate
    /// use event_manager::{Bus, Event, Exchange, Unroutable};
    /// use schemars::JsonSchema;
    /// use serde::{Deserialize, Serialize};
    ///
    /// pub const INVENTORY: Exchange = Exchange::topic("inventory");
    ///
    /// /// Stock reserved for an order: new, nobody consumes it yet.
    /// #[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, Event)]
    /// #[event(exchange = INVENTORY, version = "1.0.0", events(reserved))]
    /// pub struct Reservation { pub order: u64 }
    ///
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let bus = Bus::in_memory().with_unroutable(Reservation::RESERVED, Unroutable::Log);
    /// let published = Reservation { order: 7 }.reserved(&bus).await?;
    /// assert!(!published.routed);
    /// assert_eq!(bus.unroutable_count(), 1);
    /// # Ok(())
    /// # }
    /// ```
    pub fn with_unroutable<T>(&self, event: EventDef<T>, policy: Unroutable) -> Self {
        Self::from_arc(
            self.inner.transport.clone(),
            self.inner.memory.clone(),
            self.inner.app_id.clone(),
            self.inner.namespace.clone(),
            self.inner.unroutable.with(event.routing_key(), policy),
        )
    }

    /// How many publishes through this connection found no queue and were let through by
    /// [`Unroutable::Log`] or [`Unroutable::Ignore`].
    pub fn unroutable_count(&self) -> u64 {
        self.inner.unroutable.count()
    }

    /// Applies this bus's unroutable policy for events published with `routing_key` (else
    /// `fallback`) to the outcome of a publish: `Ok(true)` routed, `Ok(false)` unroutable and
    /// let through (counted), or the error.
    #[cfg(feature = "postgres")]
    pub(crate) fn unroutable_outcome(
        &self,
        routing_key: &str,
        fallback: Unroutable,
        result: Result<(), PublishError>,
    ) -> Result<bool, PublishError> {
        let policies = &self.inner.unroutable;
        policies.apply(policies.for_key(routing_key, fallback), result)
    }

    /// The broker-side name of `exchange` on this bus.
    pub(crate) fn exchange_name(&self, exchange: Exchange) -> String {
        self.namespaced(exchange.name())
    }

    /// The broker-side name of the service queue `queue` on this bus.
    pub(crate) fn queue_name(&self, queue: &str) -> String {
        self.namespaced(queue)
    }

    /// `name` with the namespace prefix and a dot, or `name` itself without a namespace: the
    /// one place that names things on the broker.
    fn namespaced(&self, name: &str) -> String {
        match &self.inner.namespace {
            Some(ns) => format!("{ns}.{name}"),
            None => name.to_owned(),
        }
    }

    /// Whether the connection to the broker is up now: false while it is being
    /// re-established, and once it was given up or closed. Always true in memory.
    pub fn is_connected(&self) -> bool {
        self.inner.transport.is_connected()
    }

    /// Why the transport gave up for good, once it has (its reconnect policy's
    /// `give_up_after` passed): every publish then fails, and a process that only publishes
    /// learns here, without publishing, that it should exit. `None` while it works or still
    /// reconnects ([`Bus::is_connected`] is false then too). Always `None` in memory.
    pub fn failure(&self) -> Option<String> {
        self.inner.transport.failure()
    }

    /// The name this bus publishes as.
    pub fn app_id(&self) -> &str {
        &self.inner.app_id
    }

    /// The transport underneath.
    pub(crate) fn transport(&self) -> &Arc<dyn Transport> {
        &self.inner.transport
    }

    /// Publishes a message the crate built (a retry, a dead letter, a replay), addressed
    /// through the default exchange, and returns once the broker confirmed it.
    pub(crate) async fn send(&self, message: crate::message::Message) -> Result<(), PublishError> {
        self.inner.transport.publish(message).await
    }

    /// Publishes an event's message and returns once the broker confirmed it, counted in the
    /// publish metrics of its event: sent, then confirmed (and unroutable) or nacked, with the
    /// time to the confirm.
    pub(crate) async fn publish_event(
        &self,
        message: crate::message::Message,
    ) -> Result<(), PublishError> {
        let handles = self.inner.metrics.of(&message.routing_key);
        handles.sent();
        match &self.inner.memory {
            // The embedded broker confirms as it routes: no future to box, no time to take.
            Some(broker) => {
                // Take part in tokio's cooperative scheduling, as its `publish` does, so that
                // a tight publish loop lets consumers on the same thread run.
                tokio::task::consume_budget().await;
                let result = broker.publish_now(message);
                handles.settled(&result, Duration::ZERO);
                result
            }
            None => {
                let started = Instant::now();
                let result = self.inner.transport.publish(message).await;
                handles.settled(&result, started.elapsed());
                result
            }
        }
    }

    /// Declares `exchange` once per bus.
    pub(crate) async fn declare_exchange(&self, exchange: Exchange) -> Result<(), TopologyError> {
        let known = self
            .inner
            .declared
            .read()
            .map(|d| d.contains(&exchange.name()))
            .unwrap_or(false);
        if !known {
            self.declare_on_broker(exchange).await?;
        }
        Ok(())
    }

    /// Declares `exchange` on the broker even when this bus declared it before: after it was
    /// found missing (deleted from outside), or to check the topology of a running service.
    pub(crate) async fn redeclare_exchange(&self, exchange: Exchange) -> Result<(), TopologyError> {
        if let Ok(mut d) = self.inner.declared.write() {
            d.retain(|name| *name != exchange.name());
        }
        self.declare_on_broker(exchange).await
    }

    async fn declare_on_broker(&self, exchange: Exchange) -> Result<(), TopologyError> {
        self.inner
            .transport
            .declare_exchange(&self.exchange_name(exchange), exchange.is_durable())
            .await?;
        self.remember_exchange(exchange);
        Ok(())
    }

    fn remember_exchange(&self, exchange: Exchange) {
        if let Ok(mut d) = self.inner.declared.write()
            && !d.contains(&exchange.name())
        {
            d.push(exchange.name());
        }
    }

    /// Publishes `payload` as `event` and returns once the broker confirmed it.
    ///
    /// The exchange is declared on first use. When the broker says the exchange does not exist
    /// (it was deleted from outside since), it is declared again and the event re-published
    /// once, with the same message id. Fails with [`PublishError::Unroutable`] when no queue is
    /// bound to receive the event, unless the event's [`Unroutable`] policy on this bus says
    /// otherwise ([`Bus::with_unroutable`]).
    pub async fn publish<T: Event>(
        &self,
        event: EventDef<T>,
        payload: &T,
    ) -> Result<Published, PublishError> {
        self.publish_with(event, payload, &PublishOptions::default())
            .await
    }

    /// [`Bus::publish`] with a correlation id, a chosen message id or a trace parent.
    pub async fn publish_with<T: Event>(
        &self,
        event: EventDef<T>,
        payload: &T,
        options: &PublishOptions,
    ) -> Result<Published, PublishError> {
        let contract = event.contract();
        let span = trace::producer_span(
            trace::Produce::Send,
            trace::Destination {
                namespace: self.inner.namespace.as_deref(),
                name: contract.exchange().name(),
            },
            contract,
        );
        async move {
            self.declare_exchange(contract.exchange()).await?;
            let message = self.encode(contract, payload, options, None)?;
            let message_id = message.properties.message_id.clone().unwrap_or_default();
            let result = match self.publish_event(message).await {
                Err(error) if exchange_missing(&error) => {
                    tracing::warn!(%error, "the exchange is gone; declaring it again and re-publishing");
                    self.redeclare_exchange(contract.exchange()).await?;
                    let again = self.encode(contract, payload, options, Some(&message_id))?;
                    self.publish_event(again).await
                }
                result => result,
            };
            let policy = self.inner.unroutable.of(contract, options.unroutable);
            let routed = self.inner.unroutable.apply(policy, result)?;
            Ok(Published {
                message_id,
                routing_key: contract.routing_key(),
                routed,
            })
        }
        .instrument(span)
        .await
    }

    /// Starts a publish of one logical event in several major versions at once, for a
    /// migration: every copy shares one message id, lists the others in the
    /// `published-as` header, and [`VersionedPublish::send`] returns once the broker
    /// confirmed all of them. A service bound to several copies handles only the highest
    /// major it has a callback for.
    ///
    /// ```standalone_crate
    /// # use event_manager::{Bus, Event, Exchange};
    /// # use schemars::JsonSchema;
    /// # use serde::{Deserialize, Serialize};
    /// # pub const ORDER: Exchange = Exchange::topic("order");
    /// # #[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, Event)]
    /// # #[event(exchange = ORDER, version = "1.4.0", events(submit))]
    /// # pub struct OrderV1 { pub id: u64 }
    /// # #[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, Event)]
    /// # #[event(exchange = ORDER, version = "2.0.0", events(submit))]
    /// # pub struct OrderV2 { pub id: u64, pub currency: String }
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let bus = Bus::in_memory();
    /// # let mut s = bus.service("audit");
    /// # s.bind(ORDER, "order.#")?;
    /// # s.on(OrderV1::SUBMIT, |_: OrderV1, _| async { Ok(()) });
    /// # s.declare().await?;
    /// let v2 = OrderV2 { id: 1, currency: "EUR".into() };
    /// let v1 = OrderV1 { id: v2.id };
    /// let published = bus
    ///     .publish_versions()
    ///     .version(OrderV1::SUBMIT, &v1)?
    ///     .version(OrderV2::SUBMIT, &v2)?
    ///     .send()
    ///     .await?;
    /// assert_eq!(published.len(), 2);
    /// assert_eq!(published[0].message_id, published[1].message_id);
    /// # Ok(())
    /// # }
    /// ```
    pub fn publish_versions(&self) -> VersionedPublish<'_> {
        VersionedPublish::new(self)
    }

    pub(crate) fn origin(&self) -> Origin<'_> {
        Origin::new(&self.inner.app_id)
    }

    /// `payload` as the message of `event` on this bus, with message id `message_id` when
    /// given (a re-publish), else the one of `options` or a fresh one.
    fn encode<T: Event>(
        &self,
        contract: &crate::contract::EventContract,
        payload: &T,
        options: &PublishOptions,
        message_id: Option<&str>,
    ) -> Result<crate::message::Message, PublishError> {
        // The publish span's context, unless the caller gave a trace parent of its own.
        let context = match options.traceparent {
            Some(_) => trace::TraceHeaders::default(),
            None => trace::TraceHeaders::current(),
        };
        let mut message = envelope::encode_with(
            contract,
            payload,
            &Origin {
                app_id: &self.inner.app_id,
                message_id: message_id.or(options.message_id.as_deref()),
                correlation_id: options.correlation_id.as_deref(),
                traceparent: options.traceparent.as_deref().or(context.traceparent()),
                tracestate: context.tracestate(),
            },
        )?;
        if self.inner.namespace.is_some() {
            message.exchange = Cow::Owned(self.exchange_name(contract.exchange()));
        }
        trace::record_publish_message_id(message.properties.message_id.as_deref());
        Ok(message)
    }

    /// Closes the connection.
    pub async fn close(&self) {
        self.inner.transport.close().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_unknown_scheme_is_a_named_error() {
        let err = Bus::connect("kafka://localhost").await.unwrap_err();
        assert!(
            matches!(&err, ConnectError::UnsupportedScheme { scheme } if scheme == "kafka"),
            "{err:?}"
        );
    }

    #[cfg(not(feature = "amqp"))]
    #[tokio::test]
    async fn an_amqp_url_without_the_amqp_feature_names_the_feature() {
        for url in ["amqp://guest:guest@127.0.0.1:5672/%2f", "amqps://broker"] {
            let err = Bus::connect(url).await.unwrap_err();
            assert!(
                matches!(
                    &err,
                    ConnectError::FeatureDisabled {
                        feature: "amqp",
                        ..
                    }
                ),
                "{err:?}"
            );
            assert!(err.to_string().contains("`amqp` feature"), "{err}");
        }
    }
}
