//! Spans of publishing and processing, named and attributed after the OpenTelemetry messaging
//! semantic conventions, and (feature `otel`) the W3C trace context carried in the message
//! headers.
//!
//! Every publish runs in an INFO span `publish` (`otel.name` = `publish <exchange>`, kind
//! producer), every write into an outbox in a span `create` (`create <exchange>`, kind
//! producer), and every delivery a service handles in a span `process` (`process <queue>`,
//! kind consumer). Their fields:
//!
//! | field | publish / create | process |
//! |---|---|---|
//! | `messaging.system` | `rabbitmq` | `rabbitmq` |
//! | `messaging.operation.type` | `send` / `create` | `process` |
//! | `messaging.operation.name` | `publish` / `create` | `process` |
//! | `messaging.destination.name` | the exchange (broker-side name) | the exchange the event was first published to |
//! | `messaging.destination.subscription.name` | | the queue |
//! | `rabbitmq.destination.routing_key` | the routing key | the routing key the event was first published with |
//! | `messaging.rabbitmq.destination.routing_key` | the same, when [`set_legacy_semconv`] is on | the same |
//! | `messaging.message.id` | the message id | the message id |
//! | `messaging.message.body.size` | | the body size in bytes |
//! | `event_manager.event.version` | the contract's version | the version header |
//! | `event_manager.attempt` | | the attempt number, 1 for the first delivery |
//!
//! With `otel`, a publish writes the `traceparent` and `tracestate` of its span into the
//! message headers through the global text-map propagator of `opentelemetry`, unless the
//! caller gave a `traceparent` of its own; a process span takes the context of those headers
//! as its parent and links to it, so that retries and dead letters, which keep the headers,
//! stay in the trace of the publish.
//!
//! Nothing is computed for a span no subscriber wants: field values, names and headers are
//! built only for an enabled span.

use std::sync::LazyLock;
use std::sync::atomic::{AtomicU8, Ordering};

use tracing::Span;
use tracing::field::Empty;

use crate::contract::EventContract;
use crate::envelope;
use crate::message::{HeaderValue, Headers, Message};

/// `messaging.system` of every span.
const SYSTEM: &str = "rabbitmq";
/// The field of the routing key in the messaging conventions up to 1.26 (now
/// `rabbitmq.destination.routing_key`).
const LEGACY_ROUTING_KEY_FIELD: &str = "messaging.rabbitmq.destination.routing_key";
/// The field of the message id.
const MESSAGE_ID_FIELD: &str = "messaging.message.id";

/// The environment variable OpenTelemetry instrumentations read convention opt-ins from.
const STABILITY_OPT_IN_ENV: &str = "OTEL_SEMCONV_STABILITY_OPT_IN";

/// [`set_legacy_semconv`] never called: the environment decides.
const LEGACY_UNSET: u8 = 0;
const LEGACY_OFF: u8 = 1;
const LEGACY_ON: u8 = 2;

static LEGACY: AtomicU8 = AtomicU8::new(LEGACY_UNSET);

/// Whether `OTEL_SEMCONV_STABILITY_OPT_IN` lists `messaging/dup`, read once.
static LEGACY_FROM_ENV: LazyLock<bool> = LazyLock::new(|| {
    std::env::var(STABILITY_OPT_IN_ENV).is_ok_and(|list| {
        list.split(',')
            .any(|value| value.trim().eq_ignore_ascii_case("messaging/dup"))
    })
});

/// Also records the routing key under the name of the messaging conventions up to 1.26,
/// `messaging.rabbitmq.destination.routing_key`, on every publish and process span of the
/// process, besides the current `rabbitmq.destination.routing_key`: for dashboards and
/// alerts written against the older name, while they move to the new one.
///
/// Off by default, unless the `OTEL_SEMCONV_STABILITY_OPT_IN` environment variable lists
/// `messaging/dup` (the OpenTelemetry way of asking for both conventions); a call to this
/// function overrides the environment. Takes effect for spans created after the call.
///
/// ```standalone_crate
/// use event_manager::telemetry;
///
/// telemetry::set_legacy_semconv(true);
/// assert!(telemetry::legacy_semconv());
/// ```
pub fn set_legacy_semconv(enabled: bool) {
    let value = if enabled { LEGACY_ON } else { LEGACY_OFF };
    LEGACY.store(value, Ordering::Relaxed);
}

/// Whether spans also carry the routing key under its older name
/// (`messaging.rabbitmq.destination.routing_key`): see [`set_legacy_semconv`].
pub fn legacy_semconv() -> bool {
    match LEGACY.load(Ordering::Relaxed) {
        LEGACY_ON => true,
        LEGACY_OFF => false,
        _ => *LEGACY_FROM_ENV,
    }
}

/// What a producer span does with its message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Produce {
    /// Publishes it to the broker now (`send`).
    Send,
    /// Stores it for a later publish: an outbox row (`create`).
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    Create,
}

impl Produce {
    /// `messaging.operation.type`.
    const fn operation_type(self) -> &'static str {
        match self {
            Self::Send => "send",
            Self::Create => "create",
        }
    }

    /// `messaging.operation.name`, which starts the span name.
    const fn operation_name(self) -> &'static str {
        match self {
            Self::Send => "publish",
            Self::Create => "create",
        }
    }
}

/// An exchange as the broker names it: with the namespace of the bus and a dot before its
/// name (as [`Bus`](crate::Bus) names it), written out only when a span is recorded.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Destination<'a> {
    /// The namespace of the bus, if any.
    pub namespace: Option<&'a str>,
    /// The name of the exchange in the contract, or the full broker-side name.
    pub name: &'a str,
}

impl std::fmt::Display for Destination<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.namespace {
            Some(namespace) => write!(f, "{namespace}.{}", self.name),
            None => f.write_str(self.name),
        }
    }
}

/// Whether any subscriber may want the INFO spans of this module: one load of the global
/// level filter. When not, the spans are [`Span::none`], which costs nothing to enter and
/// carries no metadata (so it is not logged through `tracing`'s `log` feature either).
fn spans_wanted() -> bool {
    tracing::level_enabled!(tracing::Level::INFO)
}

/// The span of a publish of `contract` to `exchange` (`publish <exchange>`), or of a write into
/// an outbox (`create <exchange>`). Its message id is recorded once known
/// ([`record_message_id`]).
pub(crate) fn producer_span(
    produce: Produce,
    exchange: Destination<'_>,
    contract: &EventContract,
) -> Span {
    if !spans_wanted() {
        return Span::none();
    }
    let span = match produce {
        Produce::Send => tracing::info_span!(
            "publish",
            otel.name = format_args!("{} {exchange}", produce.operation_name()),
            otel.kind = "producer",
            messaging.system = SYSTEM,
            messaging.operation.type = produce.operation_type(),
            messaging.operation.name = produce.operation_name(),
            messaging.destination.name = %exchange,
            rabbitmq.destination.routing_key = contract.routing_key(),
            messaging.rabbitmq.destination.routing_key = Empty,
            messaging.message.id = Empty,
            event_manager.event.version = contract.version_str(),
        ),
        Produce::Create => tracing::info_span!(
            "create",
            otel.name = format_args!("{} {exchange}", produce.operation_name()),
            otel.kind = "producer",
            messaging.system = SYSTEM,
            messaging.operation.type = produce.operation_type(),
            messaging.operation.name = produce.operation_name(),
            messaging.destination.name = %exchange,
            rabbitmq.destination.routing_key = contract.routing_key(),
            messaging.rabbitmq.destination.routing_key = Empty,
            messaging.message.id = Empty,
            event_manager.event.version = contract.version_str(),
        ),
    };
    if !span.is_disabled() && legacy_semconv() {
        span.record(LEGACY_ROUTING_KEY_FIELD, contract.routing_key());
    }
    span
}

/// Records `message_id` on a producer span.
pub(crate) fn record_message_id(span: &Span, message_id: Option<&str>) {
    if let Some(id) = message_id
        && !span.is_disabled()
    {
        span.record(MESSAGE_ID_FIELD, id);
    }
}

/// Records `message_id` on the current span when it is a publish span of [`producer_span`]
/// (not, say, the process span of a callback that publishes while the publish span is
/// filtered out).
pub(crate) fn record_publish_message_id(message_id: Option<&str>) {
    if !spans_wanted() {
        return;
    }
    let span = Span::current();
    if span
        .metadata()
        .is_some_and(|meta| meta.name() == "publish" && meta.target() == module_path!())
    {
        record_message_id(&span, message_id);
    }
}

/// The span of one delivery of `message` from `queue` (`process <queue>`). With `otel`, its
/// parent is the trace context of the message headers (the publish span), and it links to it.
pub(crate) fn process_span(queue: &str, message: &Message) -> Span {
    if !spans_wanted() {
        return Span::none();
    }
    let headers = &message.properties.headers;
    let span = tracing::info_span!(
        "process",
        otel.name = format_args!("process {queue}"),
        otel.kind = "consumer",
        messaging.system = SYSTEM,
        messaging.operation.type = "process",
        messaging.operation.name = "process",
        messaging.destination.name = envelope::original_exchange(message),
        messaging.destination.subscription.name = queue,
        rabbitmq.destination.routing_key = envelope::original_routing_key(message),
        messaging.rabbitmq.destination.routing_key = Empty,
        messaging.message.id = message.properties.message_id.as_deref(),
        messaging.message.body.size = message.body.len(),
        event_manager.event.version = envelope::our_header(headers, envelope::VERSION_HEADER)
            .and_then(HeaderValue::as_str),
        event_manager.attempt = attempt(headers),
        otel.status_code = Empty,
        error.type = Empty,
    );
    if span.is_disabled() {
        return span;
    }
    if legacy_semconv() {
        span.record(
            LEGACY_ROUTING_KEY_FIELD,
            envelope::original_routing_key(message),
        );
    }
    #[cfg(feature = "otel")]
    otel::adopt(&span, headers);
    span
}

/// Marks the current process span as failed: the delivery is retried or dead-lettered, for
/// the reason `error_type` (a dead-letter reason kind such as `permanent-error`).
pub(crate) fn record_failure(error_type: &'static str) {
    if !spans_wanted() {
        return;
    }
    let span = Span::current();
    if !span.is_disabled() {
        span.record("otel.status_code", "ERROR");
        span.record("error.type", error_type);
    }
}

/// The attempt a delivery is: one more than the attempts its headers count.
fn attempt(headers: &Headers) -> i64 {
    envelope::our_header(headers, envelope::ATTEMPTS_HEADER)
        .and_then(HeaderValue::as_int)
        .map_or(1, |made| made.max(0).saturating_add(1))
}

/// The W3C trace context a publish carries in its headers: the `traceparent` and `tracestate`
/// of the producer span. Empty without the `otel` feature, for a disabled span, or without an
/// OpenTelemetry layer.
#[derive(Debug, Default)]
pub(crate) struct TraceHeaders {
    #[cfg(feature = "otel")]
    traceparent: Option<String>,
    #[cfg(feature = "otel")]
    tracestate: Option<String>,
}

impl TraceHeaders {
    /// The trace context of the current span.
    pub(crate) fn current() -> Self {
        #[cfg(feature = "otel")]
        return Self::of(&Span::current());
        #[cfg(not(feature = "otel"))]
        Self::default()
    }

    /// The trace context of `span` (of the current span when `span` is disabled).
    #[cfg_attr(not(feature = "otel"), allow(unused_variables))]
    pub(crate) fn of(span: &Span) -> Self {
        #[cfg(feature = "otel")]
        return otel::inject(span);
        #[cfg(not(feature = "otel"))]
        Self::default()
    }

    /// The `traceparent` header value.
    pub(crate) fn traceparent(&self) -> Option<&str> {
        #[cfg(feature = "otel")]
        return self.traceparent.as_deref();
        #[cfg(not(feature = "otel"))]
        None
    }

    /// The `tracestate` header value, when the trace has a state.
    pub(crate) fn tracestate(&self) -> Option<&str> {
        #[cfg(feature = "otel")]
        return self.tracestate.as_deref();
        #[cfg(not(feature = "otel"))]
        None
    }

    /// Writes the trace context into `headers` of an encoded message that carries none yet
    /// (a `traceparent` given by the caller wins).
    #[cfg_attr(not(feature = "otel"), allow(unused_variables))]
    pub(crate) fn insert_into(self, headers: &mut Headers) {
        #[cfg(feature = "otel")]
        if let Some(traceparent) = self.traceparent
            && headers.get(envelope::TRACEPARENT_HEADER).is_none()
        {
            headers.insert(envelope::TRACEPARENT_HEADER, traceparent);
            if let Some(tracestate) = self.tracestate {
                headers.insert(envelope::TRACESTATE_HEADER, tracestate);
            }
        }
    }
}

/// Propagation through `opentelemetry` and `tracing-opentelemetry`.
#[cfg(feature = "otel")]
mod otel {
    use opentelemetry::propagation::{Extractor, Injector};
    use opentelemetry::trace::TraceContextExt;
    use opentelemetry::{Context, global};
    use tracing::Span;
    use tracing_opentelemetry::OpenTelemetrySpanExt;

    use super::TraceHeaders;
    use crate::envelope::{TRACEPARENT_HEADER, TRACESTATE_HEADER};
    use crate::message::Headers;

    /// The trace context of `span`, written by the global propagator; of the current span when
    /// `span` is filtered out, so that the trace goes on through the message.
    pub(super) fn inject(span: &Span) -> TraceHeaders {
        if span.is_disabled() {
            let current = Span::current();
            return if current.is_disabled() {
                TraceHeaders::default()
            } else {
                inject_enabled(&current)
            };
        }
        inject_enabled(span)
    }

    fn inject_enabled(span: &Span) -> TraceHeaders {
        let mut headers = TraceHeaders::default();
        // Without an OpenTelemetry layer the context has no valid span: nothing to carry.
        let context = span.context();
        if context.span().span_context().is_valid() {
            global::get_text_map_propagator(|propagator| {
                propagator.inject_context(&context, &mut headers);
            });
        }
        headers
    }

    impl Injector for TraceHeaders {
        /// Keeps the W3C trace context; an empty `tracestate` is not sent.
        fn set(&mut self, key: &str, value: String) {
            if key.eq_ignore_ascii_case(TRACEPARENT_HEADER) {
                self.traceparent = Some(value);
            } else if key.eq_ignore_ascii_case(TRACESTATE_HEADER) && !value.is_empty() {
                self.tracestate = Some(value);
            }
        }
    }

    /// The headers of a received message, read by a propagator.
    struct HeaderExtractor<'h>(&'h Headers);

    impl Extractor for HeaderExtractor<'_> {
        fn get(&self, key: &str) -> Option<&str> {
            self.0.get_str(key)
        }

        fn keys(&self) -> Vec<&str> {
            self.0.iter().map(|(name, _)| name).collect()
        }
    }

    /// Makes the trace context of `headers` the parent of the (not yet entered) `span`, and
    /// links `span` to it: the publish span, for the first delivery and every retry.
    pub(super) fn adopt(span: &Span, headers: &Headers) {
        if headers.get(TRACEPARENT_HEADER).is_none() {
            return;
        }
        let parent = global::get_text_map_propagator(|propagator| {
            propagator.extract_with_context(&Context::new(), &HeaderExtractor(headers))
        });
        let publish = parent.span().span_context().clone();
        if !publish.is_valid() {
            return;
        }
        // Fails only without an OpenTelemetry layer, where there is nothing to parent.
        let _ = span.set_parent(parent);
        span.add_link(publish);
    }
}
