//! OpenTelemetry trace context through a real RabbitMQ (`AMQP_URL`, default the local broker):
//! the publish span and its messaging attributes, the process spans of a delivery and of its
//! retry (children of the publish span, and linked to it), the trace context kept by a dead
//! letter, and the `traceparent` written by a dual-version publish and by the outbox. Fails,
//! never skips, when no broker answers. Feature `otel`.
//!
//! Spans are exported by the SDK's in-memory exporter, behind a `tracing-opentelemetry` layer
//! installed as the global subscriber once: the services handle deliveries on other tasks.
//! Every scenario runs in one test, one after the other, on its own trace.

mod common;

use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use common::{Env, recorder};
use event_manager::envelope::{TRACEPARENT_HEADER, TRACESTATE_HEADER};
use event_manager::message::Message;
use event_manager::outbox::{MemoryStore, Relay};
use event_manager::{Delivery, HandlerError, telemetry};
use event_manager_examples::{ORDER, Order, OrderSubmittedV2};
use opentelemetry::trace::{
    SpanContext, SpanId, SpanKind, TraceContextExt, TraceFlags, TraceId, TraceState,
    TracerProvider as _,
};
use opentelemetry::{Context, global};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;

/// The trace state the caller of the order service sent: carried through every message.
const TRACE_STATE: &str = "vendor=order-svc";

/// The exporter behind the global subscriber, installed by the first call.
fn exporter() -> &'static InMemorySpanExporter {
    static EXPORTER: OnceLock<InMemorySpanExporter> = OnceLock::new();
    EXPORTER.get_or_init(|| {
        let exporter = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(exporter.clone())
            .build();
        global::set_text_map_propagator(TraceContextPropagator::new());
        let layer = tracing_opentelemetry::layer().with_tracer(provider.tracer("otel_rabbitmq"));
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::set_global_default(subscriber).expect("no other global subscriber");
        exporter
    })
}

/// A span standing for the request the order service handles, continuing a trace its caller
/// started (`trace`), with a trace state.
fn request_span(name: &'static str, trace: u128) -> tracing::Span {
    let span = tracing::info_span!("request", otel.name = name);
    let caller = SpanContext::new(
        TraceId::from(trace),
        SpanId::from(0x00f0_67aa_0ba9_02b7_u64),
        TraceFlags::SAMPLED,
        true,
        TRACE_STATE.parse::<TraceState>().unwrap(),
    );
    span.set_parent(Context::new().with_remote_span_context(caller))
        .expect("the OpenTelemetry layer is installed");
    span
}

/// The trace id and span id of a tracing span.
fn ids(span: &tracing::Span) -> (TraceId, SpanId) {
    let context = span.context();
    let span_context = context.span().span_context().clone();
    (span_context.trace_id(), span_context.span_id())
}

/// The value of `key` on `span`, as text.
fn attr(span: &SpanData, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| kv.value.as_str().into_owned())
}

/// The trace id and parent span id a `traceparent` header names.
fn parse_traceparent(value: &str) -> (TraceId, SpanId) {
    let parts: Vec<&str> = value.split('-').collect();
    assert_eq!(parts.len(), 4, "not a traceparent: {value}");
    assert_eq!(parts[0], "00", "{value}");
    (
        TraceId::from_hex(parts[1]).unwrap(),
        SpanId::from_hex(parts[2]).unwrap(),
    )
}

fn header<'m>(message: &'m Message, name: &str) -> Option<&'m str> {
    message.properties.headers.get_str(name)
}

/// Waits until the exported spans satisfy `done`, and returns them. Fails after 10 s.
async fn spans_until(what: &str, done: impl Fn(&[SpanData]) -> bool) -> Vec<SpanData> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let spans = exporter().get_finished_spans().unwrap();
        if done(&spans) {
            return spans;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what} not exported within 10 s: {:#?}",
            spans.iter().map(|s| &s.name).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The spans of `kind` carrying `message_id`.
fn with_message_id<'s>(
    spans: &'s [SpanData],
    kind: SpanKind,
    message_id: &str,
) -> Vec<&'s SpanData> {
    spans
        .iter()
        .filter(|s| {
            s.span_kind == kind && attr(s, "messaging.message.id").as_deref() == Some(message_id)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trace_context_goes_from_the_publisher_through_retries_and_dead_letters() {
    exporter();
    let env = Env::rabbitmq().await;
    a_retried_delivery_stays_in_the_trace_of_its_publish(&env).await;
    a_dead_letter_keeps_the_trace_context(&env).await;
    the_legacy_routing_key_is_recorded_when_opted_in(&env).await;
    a_dual_version_publish_carries_the_trace_of_the_current_span(&env).await;
    an_outbox_row_carries_the_trace_of_the_current_span(&env).await;
    env.cleanup().await;
}

async fn a_retried_delivery_stays_in_the_trace_of_its_publish(env: &Env) {
    let (rec, mut seen) = recorder();
    let calls = Arc::new(AtomicU32::new(0));
    let mut billing = env.service("billing");
    let c = calls.clone();
    billing.on(Order::SUBMIT, move |o: Order, ctx: Delivery| {
        let (rec, c) = (rec.clone(), c.clone());
        async move {
            let headers = ctx.headers();
            rec.record((
                o.id,
                ctx.attempt(),
                headers.get_str(TRACEPARENT_HEADER).map(str::to_owned),
                headers.get_str(TRACESTATE_HEADER).map(str::to_owned),
            ));
            if c.fetch_add(1, Ordering::SeqCst) == 0 {
                return Err(HandlerError::retry("payment provider unavailable"));
            }
            Ok(())
        }
    });
    let queue = env.broker_queue(billing.queue());
    let running = billing.start().await.unwrap();

    let request = request_span("POST /orders", 0x4bf9_2f35_77b3_4da6_a3ce_929d_0e0e_4736);
    let (trace_id, request_id) = ids(&request);
    let published = Order::sample(1)
        .submit(&env.bus)
        .instrument(request.clone())
        .await
        .unwrap();
    drop(request);

    // Attempt 1 fails with a retryable error, attempt 2 succeeds; both saw the same context.
    let deliveries = seen.take(2).await;
    assert_eq!(
        deliveries.iter().map(|d| (d.0, d.1)).collect::<Vec<_>>(),
        [(1, 1), (1, 2)]
    );
    let traceparent = deliveries[0].2.clone().expect("a traceparent header");
    assert_eq!(deliveries[1].2.as_deref(), Some(traceparent.as_str()));
    for delivery in &deliveries {
        assert_eq!(delivery.3.as_deref(), Some(TRACE_STATE));
    }

    let id = published.message_id.as_str();
    let spans = spans_until("the publish span and two process spans", |spans| {
        with_message_id(spans, SpanKind::Producer, id).len() == 1
            && with_message_id(spans, SpanKind::Consumer, id).len() == 2
    })
    .await;

    // The publish span: a child of the request, with the messaging attributes.
    let publish = with_message_id(&spans, SpanKind::Producer, id)[0];
    let exchange = env.order_exchange();
    assert_eq!(publish.name, format!("publish {exchange}"));
    assert_eq!(publish.span_context.trace_id(), trace_id);
    assert_eq!(publish.parent_span_id, request_id);
    assert_eq!(
        attr(publish, "messaging.system").as_deref(),
        Some("rabbitmq")
    );
    assert_eq!(
        attr(publish, "messaging.operation.type").as_deref(),
        Some("send")
    );
    assert_eq!(
        attr(publish, "messaging.destination.name").as_deref(),
        Some(exchange.as_str())
    );
    assert_eq!(
        attr(publish, "rabbitmq.destination.routing_key").as_deref(),
        Some("order.v1.submit")
    );
    assert_eq!(
        attr(publish, "messaging.rabbitmq.destination.routing_key"),
        None
    );
    assert_eq!(attr(publish, "messaging.message.id").as_deref(), Some(id));
    assert_eq!(
        attr(publish, "event_manager.event.version").as_deref(),
        Some("1.2.0")
    );
    // The header names the publish span, and carries the request's trace state.
    assert_eq!(
        parse_traceparent(&traceparent),
        (trace_id, publish.span_context.span_id())
    );
    assert_eq!(publish.span_context.trace_state().header(), TRACE_STATE);

    // Both process spans (attempt 1 and its retry): children of the publish span, in its
    // trace, and linked to it.
    let mut processes = with_message_id(&spans, SpanKind::Consumer, id);
    processes.sort_by_key(|s| attr(s, "event_manager.attempt"));
    for (attempt, process) in processes.iter().enumerate() {
        let attempt = (attempt + 1).to_string();
        assert_eq!(
            attr(process, "event_manager.attempt"),
            Some(attempt.clone())
        );
        assert_eq!(
            process.name,
            format!("process {queue}"),
            "attempt {attempt}"
        );
        assert_eq!(
            process.span_context.trace_id(),
            trace_id,
            "attempt {attempt}"
        );
        assert_eq!(
            process.parent_span_id,
            publish.span_context.span_id(),
            "attempt {attempt}: the parent is the publish span"
        );
        assert!(process.parent_span_is_remote, "attempt {attempt}");
        let links: Vec<(TraceId, SpanId)> = process
            .links
            .iter()
            .map(|l| (l.span_context.trace_id(), l.span_context.span_id()))
            .collect();
        assert_eq!(
            links,
            [(trace_id, publish.span_context.span_id())],
            "attempt {attempt}: one link, to the publish span"
        );
        // The first attempt failed (retried): its span says so; the retry succeeded.
        let failed = matches!(process.status, opentelemetry::trace::Status::Error { .. });
        assert_eq!(
            failed,
            attempt == "1",
            "attempt {attempt}: {:?}",
            process.status
        );
        assert_eq!(
            attr(process, "error.type").as_deref(),
            (attempt == "1").then_some("handler-failed"),
            "attempt {attempt}"
        );
        assert_eq!(
            attr(process, "messaging.system").as_deref(),
            Some("rabbitmq")
        );
        assert_eq!(
            attr(process, "messaging.operation.type").as_deref(),
            Some("process")
        );
        assert_eq!(
            attr(process, "messaging.destination.name").as_deref(),
            Some(exchange.as_str())
        );
        assert_eq!(
            attr(process, "messaging.destination.subscription.name").as_deref(),
            Some(queue.as_str())
        );
        assert_eq!(
            attr(process, "rabbitmq.destination.routing_key").as_deref(),
            Some("order.v1.submit")
        );
    }
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    running.shutdown().await.unwrap();
}

async fn a_dead_letter_keeps_the_trace_context(env: &Env) {
    let mut refunds = env.service("refunds");
    refunds.on(Order::CHARGEBACK, |_: Order, _| async {
        Err(HandlerError::permanent("no refunds for this order"))
    });
    let dlq = env.dlq(refunds.queue());
    let running = refunds.start().await.unwrap();
    let request = request_span(
        "POST /chargebacks",
        0x0af7_6519_16cd_43dd_8448_eb21_1c80_319c,
    );
    let (trace_id, _) = ids(&request);
    let published = Order::sample(2)
        .chargeback(&env.bus)
        .instrument(request)
        .await
        .unwrap();
    let dead = env.take(&dlq).await;
    assert_eq!(
        dead.properties.message_id.as_deref(),
        Some(published.message_id.as_str())
    );
    let traceparent = header(&dead, TRACEPARENT_HEADER).expect("the dead letter's traceparent");
    assert_eq!(parse_traceparent(traceparent).0, trace_id);
    assert_eq!(header(&dead, TRACESTATE_HEADER), Some(TRACE_STATE));
    running.shutdown().await.unwrap();
}

async fn the_legacy_routing_key_is_recorded_when_opted_in(env: &Env) {
    let mut audit = env.service("legacy");
    audit.on(Order::SUBMIT, |_: Order, _| async { Ok(()) });
    // The billing queue of the first scenario is bound too: declared, it keeps its copy.
    let running = audit.start().await.unwrap();
    telemetry::set_legacy_semconv(true);
    let published = Order::sample(3).submit(&env.bus).await;
    telemetry::set_legacy_semconv(false);
    let id = published.unwrap().message_id;
    let spans = spans_until("the legacy publish and process spans", |spans| {
        with_message_id(spans, SpanKind::Producer, &id).len() == 1
            && !with_message_id(spans, SpanKind::Consumer, &id).is_empty()
    })
    .await;
    let publish = with_message_id(&spans, SpanKind::Producer, &id)[0];
    for key in [
        "rabbitmq.destination.routing_key",
        "messaging.rabbitmq.destination.routing_key",
    ] {
        assert_eq!(
            attr(publish, key).as_deref(),
            Some("order.v1.submit"),
            "{key}"
        );
    }
    running.shutdown().await.unwrap();
}

async fn a_dual_version_publish_carries_the_trace_of_the_current_span(env: &Env) {
    // Declared, not started: the copies wait in its queue, to be read raw.
    let mut audit = env.service("audit");
    audit.bind(ORDER, "order.*.submit").unwrap();
    audit.declare().await.unwrap();
    let queue = env.broker_queue(audit.queue());
    let request = request_span("POST /orders/v2", 0x5d2a_0b5c_6a3f_4e2e_9a55_4a55_27f5_cc01);
    let (trace_id, _) = ids(&request);
    let v2 = OrderSubmittedV2::from(Order::sample(4));
    let v1 = Order::from(v2.clone());
    let published = async {
        env.bus
            .publish_versions()
            .version(Order::SUBMIT, &v1)?
            .version(OrderSubmittedV2::SUBMIT, &v2)?
            .send()
            .await
    }
    .instrument(request)
    .await
    .unwrap();
    assert_eq!(published.len(), 2);
    let mut copies = [env.take(&queue).await, env.take(&queue).await];
    copies.sort_by(|a, b| a.routing_key.cmp(&b.routing_key));
    let id = published[0].message_id.clone();
    let spans = spans_until("a publish span per copy", |spans| {
        with_message_id(spans, SpanKind::Producer, &id).len() == 2
    })
    .await;
    let publishes = with_message_id(&spans, SpanKind::Producer, &id);
    for (copy, key) in copies.iter().zip(["order.v1.submit", "order.v2.submit"]) {
        assert_eq!(copy.routing_key, key);
        let traceparent = header(copy, TRACEPARENT_HEADER).expect("a traceparent per copy");
        let (copy_trace, parent) = parse_traceparent(traceparent);
        assert_eq!(copy_trace, trace_id, "{key}");
        assert_eq!(header(copy, TRACESTATE_HEADER), Some(TRACE_STATE), "{key}");
        let publish = publishes
            .iter()
            .find(|s| s.span_context.span_id() == parent)
            .unwrap_or_else(|| panic!("{key}: the traceparent names no publish span"));
        assert_eq!(
            attr(publish, "rabbitmq.destination.routing_key").as_deref(),
            Some(key)
        );
        assert_eq!(publish.span_context.trace_id(), trace_id);
    }
}

async fn an_outbox_row_carries_the_trace_of_the_current_span(env: &Env) {
    // The audit queue of the previous scenario receives what the relay publishes.
    let queue = env.broker_queue("audit");
    let store = MemoryStore::new();
    let request = request_span(
        "POST /orders/outbox",
        0x7e1c_02d4_61b5_4a0f_8d6e_1f4b_d85a_c3e2,
    );
    let (trace_id, _) = ids(&request);
    let mut tx = store.begin();
    let message_id = env
        .bus
        .outbox(&mut tx)
        .publish(Order::SUBMIT, &Order::sample(5))
        .instrument(request)
        .await
        .unwrap();
    tx.commit();

    // The row stores the context of the `create` span, a child of the current span.
    let spans = spans_until("the outbox create span", |spans| {
        with_message_id(spans, SpanKind::Producer, &message_id).len() == 1
    })
    .await;
    let create = with_message_id(&spans, SpanKind::Producer, &message_id)[0];
    assert_eq!(create.name, format!("create {}", env.order_exchange()));
    assert_eq!(
        attr(create, "messaging.operation.type").as_deref(),
        Some("create")
    );
    assert_eq!(create.span_context.trace_id(), trace_id);

    // The relay publishes the stored headers unchanged.
    let relay = Relay::new(&env.bus, store.clone());
    assert_eq!(relay.drain().await.unwrap(), 1);
    let relayed = env.take(&queue).await;
    assert_eq!(
        relayed.properties.message_id.as_deref(),
        Some(message_id.as_str())
    );
    let traceparent = header(&relayed, TRACEPARENT_HEADER).expect("the relayed traceparent");
    assert_eq!(
        parse_traceparent(traceparent),
        (trace_id, create.span_context.span_id())
    );
    assert_eq!(header(&relayed, TRACESTATE_HEADER), Some(TRACE_STATE));
}
