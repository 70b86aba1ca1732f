//! The wire format: the one place that knows how an event becomes an AMQP message and back.
//!
//! A published event is a [`Message`] with
//!
//! * body: the payload as JSON (serde), UTF-8, `content_type = application/json`;
//! * properties: `message_id` (unique per publish), `timestamp` (seconds), `type` = routing
//!   key, `app_id` = publishing service, `correlation_id` when given, `delivery_mode = 2`;
//! * headers: [`VERSION_HEADER`] with the full semver version, and the CloudEvents AMQP
//!   binary-mode attributes with the `cloudEvents_` prefix (`cloudEvents_specversion`, `_id`,
//!   `_type`, `_source`, `_time`, `_dataschema`), plus W3C `traceparent` and `tracestate`
//!   when given (with the `otel` feature, taken from the publishing span).
//!
//! A consumer needs none of these headers: a message that carries only a routing key and a
//! JSON body (as a Python service using kombu or pika sends it) is versioned by the `v<major>`
//! word of its routing key.
//!
//! Messages moved to a retry or dead-letter queue keep body, properties and headers, and carry
//! the original exchange and routing key in [`ORIGINAL_EXCHANGE_HEADER`] and
//! [`ORIGINAL_ROUTING_KEY_HEADER`], the number of attempts made in [`ATTEMPTS_HEADER`]; dead
//! letters add [`DEAD_LETTER_REASON_HEADER`] (text) and [`DEAD_LETTER_KIND_HEADER`] (a
//! [`DeadLetterKind`]), [`FAILED_AT_HEADER`] and [`SERVICE_HEADER`].
//! Copies of one event published in several majors at once share their message id and list
//! each other in [`PUBLISHED_AS_HEADER`].

use std::borrow::Cow;
use std::hash::{BuildHasher, RandomState};
use std::sync::LazyLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::contract::EventContract;
use crate::error::PublishError;
use crate::message::{Bytes, HeaderValue, Headers, Message, Properties};
use crate::routing::EventKey;

pub mod celery;
mod forward;

pub use forward::{DeadLetterKind, UnknownDeadLetterKind};
#[cfg_attr(not(feature = "runtime"), allow(unused_imports))]
pub(crate) use forward::{shrink_headers, to_dead_letter, to_replay, to_retry};

/// The prefix the headers of this crate had before 0.2: RabbitMQ treats `x-` headers as its
/// own (AMQP 1.0 and stream clients see them as message annotations, not application
/// properties), so they lost it. Readers still accept the old names (`x-event-version`,
/// `x-attempts`, …) for one major; writers use the new ones.
pub const LEGACY_HEADER_PREFIX: &str = "x-";

/// The header `name` of the wire contract, or its pre-0.2 `x-` form.
pub(crate) fn our_header<'h>(headers: &'h Headers, name: &str) -> Option<&'h HeaderValue> {
    headers.get(name).or_else(|| {
        headers
            .iter()
            .find(|(n, _)| n.strip_prefix(LEGACY_HEADER_PREFIX) == Some(name))
            .map(|(_, v)| v)
    })
}

/// The new name of a header of the wire contract written with its pre-0.2 `x-` prefix.
fn current_name(name: &str) -> &str {
    match name.strip_prefix(LEGACY_HEADER_PREFIX) {
        Some(stripped) if HEADER_NAMES.contains(&stripped) => stripped,
        _ => name,
    }
}

/// The content type of every event body.
pub const CONTENT_TYPE: &str = "application/json";
/// Header with the full semver version of the event contract (`1.2.0`).
pub const VERSION_HEADER: &str = "event-version";
/// Header with the number of delivery attempts already made (retries and dead letters).
pub const ATTEMPTS_HEADER: &str = "attempts";
/// Header with the exchange the event was first published to (retries and dead letters).
pub const ORIGINAL_EXCHANGE_HEADER: &str = "original-exchange";
/// Header with the routing key the event was first published with (retries and dead letters).
pub const ORIGINAL_ROUTING_KEY_HEADER: &str = "original-routing-key";
/// Header with why a message was dead-lettered, as text for people.
pub const DEAD_LETTER_REASON_HEADER: &str = "dead-letter-reason";
/// Header with why a message was dead-lettered, for programs: a [`DeadLetterKind`].
pub const DEAD_LETTER_KIND_HEADER: &str = "dead-letter-kind";
/// Header RabbitMQ sets on a message it dead-lettered itself, with why: `expired`,
/// `rejected`, `maxlen` or `delivery_limit`.
pub const BROKER_DEATH_REASON_HEADER: &str = "x-first-death-reason";
/// Header with when a message was dead-lettered (RFC 3339).
pub const FAILED_AT_HEADER: &str = "failed-at";
/// Header with the service (queue) that dead-lettered a message.
pub const SERVICE_HEADER: &str = "dead-letter-queue";
/// Header of a dead letter or retry with the per-message TTL (`expiration` property) the
/// original carried: a dead letter must not expire in its queue, so the property is moved
/// here, and put back on replay.
pub const ORIGINAL_EXPIRATION_HEADER: &str = "original-expiration";
/// Header of a dead letter or retry that had to leave out some of the original's headers to
/// fit in one AMQP frame: their names, comma-separated.
pub const DROPPED_HEADERS_HEADER: &str = "dropped-headers";
/// The longest dead-letter reason kept; a longer error text is cut.
pub const MAX_REASON_BYTES: usize = 2048;
/// W3C trace context header: the trace id and the id of the publishing span.
pub const TRACEPARENT_HEADER: &str = "traceparent";
/// W3C trace context header: vendor-specific trace state, carried next to
/// [`TRACEPARENT_HEADER`].
pub const TRACESTATE_HEADER: &str = "tracestate";
/// Header of an event published in several major versions at once (a migration): the
/// comma-separated routing keys of every copy. A service handles only the copy with the
/// highest major it has a callback for and acknowledges the others unhandled.
pub const PUBLISHED_AS_HEADER: &str = "published-as";

/// CloudEvents AMQP binding attribute headers (`cloudEvents_` prefix).
pub mod cloud_events {
    /// `cloudEvents_specversion`, always `1.0`.
    pub const SPECVERSION: &str = "cloudEvents_specversion";
    /// `cloudEvents_id`, equal to the AMQP `message_id`.
    pub const ID: &str = "cloudEvents_id";
    /// `cloudEvents_type`, the routing key.
    pub const TYPE: &str = "cloudEvents_type";
    /// `cloudEvents_source`, the publishing service.
    pub const SOURCE: &str = "cloudEvents_source";
    /// `cloudEvents_time`, RFC 3339.
    pub const TIME: &str = "cloudEvents_time";
    /// `cloudEvents_dataschema`, the `$id` of the payload's JSON Schema.
    pub const DATASCHEMA: &str = "cloudEvents_dataschema";
}

/// The CloudEvents spec version of [`cloud_events::SPECVERSION`].
const SPECVERSION: &str = "1.0";

/// The start of every schema id; the routing key follows.
pub const SCHEMA_ID_PREFIX: &str = "urn:event-manager:schema:";

/// The `$id` of the exported JSON Schema of the event published with `routing_key` (for a
/// contract, also [`EventContract::schema_id`](crate::EventContract::schema_id)).
pub fn schema_id(routing_key: &str) -> String {
    format!("{SCHEMA_ID_PREFIX}{routing_key}")
}

static ID_PREFIX: LazyLock<String> = LazyLock::new(|| {
    let random = RandomState::new().hash_one((std::process::id(), SystemTime::now()));
    format!("{random:016x}")
});
static ID_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A new message id, unique across processes: a random per-process prefix and a counter, in
/// hexadecimal (`3f9c0a6b1d2e4f50-1a`).
pub(crate) fn new_message_id() -> String {
    let n = ID_COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut id = String::with_capacity(ID_PREFIX.len() + 17);
    id.push_str(&ID_PREFIX);
    id.push('-');
    push_hex(&mut id, n);
    id
}

/// Appends `n` in lower-case hexadecimal without leading zeros. Written by hand: `format!`
/// costs more than the rest of the message id.
fn push_hex(out: &mut String, n: u64) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut digits = [0u8; 16];
    let mut at = digits.len();
    let mut rest = n;
    loop {
        at -= 1;
        digits[at] = HEX[(rest & 0xf) as usize];
        rest >>= 4;
        if rest == 0 {
            break;
        }
    }
    out.extend(digits[at..].iter().map(|&d| char::from(d)));
}

fn now() -> SystemTime {
    SystemTime::now()
}

fn rfc3339(time: SystemTime) -> String {
    humantime::format_rfc3339_millis(time).to_string()
}

/// `secs` since the Unix epoch in RFC 3339, formatted once per second and thread.
fn rfc3339_seconds(secs: u64) -> String {
    thread_local! {
        static CACHE: std::cell::RefCell<(u64, String)> = const { std::cell::RefCell::new((u64::MAX, String::new())) };
    }
    CACHE.with(|cache| {
        let mut cache = cache.borrow_mut();
        if cache.0 != secs {
            *cache = (
                secs,
                humantime::format_rfc3339_seconds(
                    UNIX_EPOCH + std::time::Duration::from_secs(secs),
                )
                .to_string(),
            );
        }
        cache.1.clone()
    })
}

/// Every header name of the wire contract.
const HEADER_NAMES: [&str; 19] = [
    VERSION_HEADER,
    DROPPED_HEADERS_HEADER,
    ORIGINAL_EXPIRATION_HEADER,
    ATTEMPTS_HEADER,
    ORIGINAL_EXCHANGE_HEADER,
    ORIGINAL_ROUTING_KEY_HEADER,
    DEAD_LETTER_REASON_HEADER,
    DEAD_LETTER_KIND_HEADER,
    FAILED_AT_HEADER,
    SERVICE_HEADER,
    TRACEPARENT_HEADER,
    TRACESTATE_HEADER,
    PUBLISHED_AS_HEADER,
    cloud_events::SPECVERSION,
    cloud_events::ID,
    cloud_events::TYPE,
    cloud_events::SOURCE,
    cloud_events::TIME,
    cloud_events::DATASCHEMA,
];

/// The name of a received header: borrowed when the wire contract knows it, copied otherwise.
#[cfg_attr(not(feature = "amqp"), allow(dead_code))]
pub(crate) fn header_name(name: &str) -> Cow<'static, str> {
    HEADER_NAMES
        .iter()
        .find(|known| **known == name)
        .map_or_else(
            || Cow::Owned(name.to_owned()),
            |known| Cow::Borrowed(*known),
        )
}

/// A received text value that every event carries the same (the content type, the
/// CloudEvents spec version): borrowed, not copied.
#[cfg_attr(not(feature = "amqp"), allow(dead_code))]
pub(crate) fn known_value(value: &str) -> Option<&'static str> {
    match value {
        CONTENT_TYPE => Some(CONTENT_TYPE),
        SPECVERSION => Some(SPECVERSION),
        _ => None,
    }
}

/// The exchange a received message was first published to (also on retries).
pub(crate) fn original_exchange(message: &Message) -> &str {
    our_header(&message.properties.headers, ORIGINAL_EXCHANGE_HEADER)
        .and_then(HeaderValue::as_str)
        .unwrap_or(&message.exchange)
}

/// The routing key a received message was first published with (also on retries).
pub(crate) fn original_routing_key(message: &Message) -> &str {
    our_header(&message.properties.headers, ORIGINAL_ROUTING_KEY_HEADER)
        .and_then(HeaderValue::as_str)
        .unwrap_or(&message.routing_key)
}

/// What the publisher adds to an event besides the payload.
#[derive(Debug, Clone)]
pub(crate) struct Origin<'a> {
    pub app_id: &'a Cow<'static, str>,
    pub message_id: Option<&'a str>,
    pub correlation_id: Option<&'a str>,
    pub traceparent: Option<&'a str>,
    pub tracestate: Option<&'a str>,
}

impl<'a> Origin<'a> {
    /// A publish as `app_id` with nothing else given.
    #[expect(
        clippy::ptr_arg,
        reason = "the name is cloned into each message: a borrowed one must stay borrowed"
    )]
    pub fn new(app_id: &'a Cow<'static, str>) -> Self {
        Self {
            app_id,
            message_id: None,
            correlation_id: None,
            traceparent: None,
            tracestate: None,
        }
    }
}

/// Encodes `payload` as the message a bus publishing as `app_id` sends for `event` (for
/// outboxes, tests and benchmarks; [`crate::Bus::publish`] does this itself).
///
/// ```standalone_crate
/// # use event_manager::{Event, Exchange, envelope};
/// # use schemars::JsonSchema;
/// # use serde::{Deserialize, Serialize};
/// # pub const ORDER: Exchange = Exchange::topic("order");
/// # #[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema, Event)]
/// # #[event(exchange = ORDER, version = "1.2.0", events(submit))]
/// # pub struct Order { pub id: u64 }
/// let message = envelope::encode(Order::SUBMIT, &Order { id: 1 }, "order-service")?;
/// assert_eq!(message.routing_key, "order.v1.submit");
/// let (version, order): (_, Order) = envelope::decode(&message)?;
/// assert_eq!(version.major(), Some(1));
/// assert_eq!(order, Order { id: 1 });
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn encode<T: crate::Event>(
    event: crate::EventDef<T>,
    payload: &T,
    app_id: impl Into<Cow<'static, str>>,
) -> Result<Message, PublishError> {
    encode_with(event.contract(), payload, &Origin::new(&app_id.into()))
}

/// Reads the version and payload of a received message.
pub fn decode<T: serde::de::DeserializeOwned>(
    message: &Message,
) -> Result<(ReceivedVersion, T), EnvelopeError> {
    let received = read(message)?;
    let payload = from_json(&message.body).map_err(|e| EnvelopeError::Body(e.to_string()))?;
    Ok((received.version, payload))
}

/// Encodes `payload` as the message for `contract`.
pub(crate) fn encode_with<T: Serialize + ?Sized>(
    contract: &EventContract,
    payload: &T,
    origin: &Origin<'_>,
) -> Result<Message, PublishError> {
    let body = to_json(payload).map_err(|source| PublishError::Encode {
        routing_key: contract.routing_key().to_owned(),
        source,
    })?;
    let celery = contract.exchange().is_celery();
    let message_id = match origin.message_id {
        Some(id) => id.to_owned(),
        None if celery => celery::uuid4(),
        None => new_message_id(),
    };
    let secs = now().duration_since(UNIX_EPOCH).ok().map(|d| d.as_secs());
    let key = contract.routing_key();
    let mut headers = Headers::with_capacity(8);
    headers.append_new(VERSION_HEADER, contract.version_str());
    headers.append_new(cloud_events::SPECVERSION, SPECVERSION);
    headers.append_new(cloud_events::ID, message_id.clone());
    headers.append_new(cloud_events::TYPE, key);
    headers.append_new(cloud_events::SOURCE, origin.app_id.clone());
    headers.append_new(cloud_events::TIME, rfc3339_seconds(secs.unwrap_or(0)));
    headers.append_new(cloud_events::DATASCHEMA, contract.schema_id());
    if let Some(tp) = origin.traceparent {
        headers.append_new(TRACEPARENT_HEADER, tp.to_owned());
    }
    if let Some(ts) = origin.tracestate.filter(|ts| !ts.is_empty()) {
        headers.append_new(TRACESTATE_HEADER, ts.to_owned());
    }
    let mut correlation_id = origin.correlation_id.map(str::to_owned);
    let mut content_encoding = None;
    let body = if celery {
        celery::task_headers(&mut headers, key, &message_id, origin.app_id, &body);
        // Celery pairs a task with its result by the correlation id: the task id.
        correlation_id = Some(message_id.clone());
        content_encoding = Some("utf-8".to_owned());
        celery::task_body(&body)
    } else {
        body
    };
    Ok(Message {
        exchange: Cow::Borrowed(contract.exchange().name()),
        routing_key: Cow::Borrowed(key),
        body,
        properties: Properties {
            content_type: Some(Cow::Borrowed(CONTENT_TYPE)),
            content_encoding,
            message_id: Some(message_id),
            timestamp: secs,
            kind: Some(Cow::Borrowed(key)),
            app_id: Some(origin.app_id.clone()),
            correlation_id,
            persistent: true,
            headers,
            ..Properties::default()
        },
    })
}

/// `payload` as JSON, in a body of exactly its size: serialized into a buffer kept per thread
/// and copied once, so a publish allocates one body and nothing else for it.
fn to_json<T: Serialize + ?Sized>(payload: &T) -> Result<Bytes, serde_json::Error> {
    /// A buffer grown beyond this by a large payload is not kept.
    const KEEP: usize = 64 * 1024;
    thread_local! {
        static BUFFER: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    BUFFER.with(|buffer| {
        // Serialization cannot publish, so the buffer is never borrowed twice; take a fresh
        // one if it ever were.
        let Ok(mut buffer) = buffer.try_borrow_mut() else {
            return serde_json::to_vec(payload).map(Bytes::from);
        };
        buffer.clear();
        let written = serde_json::to_writer(&mut *buffer, payload);
        let body = written.map(|()| Bytes::copy_from_slice(&buffer));
        if buffer.capacity() > KEEP {
            *buffer = Vec::new();
        }
        body
    })
}

/// A JSON body as a `T`. The body is checked to be UTF-8 once, as a whole, rather than
/// string by string while parsing.
pub(crate) fn from_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> serde_json::Result<T> {
    let text = std::str::from_utf8(body).map_err(|e| {
        <serde_json::Error as serde::de::Error>::custom(format_args!("the body is not UTF-8: {e}"))
    })?;
    serde_json::from_str(text)
}

/// The version a received message claims.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReceivedVersion {
    /// The full version from the [`VERSION_HEADER`].
    Full(semver::Version),
    /// Only the major, from the `v<major>` word of the routing key (no version header).
    Major(u64),
    /// Neither a header nor a `v<major>` word.
    Unknown,
}

impl ReceivedVersion {
    /// The major version, when known.
    pub fn major(&self) -> Option<u64> {
        match self {
            Self::Full(v) => Some(v.major),
            Self::Major(m) => Some(*m),
            Self::Unknown => None,
        }
    }
}

impl std::fmt::Display for ReceivedVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Full(v) => write!(f, "{v}"),
            Self::Major(m) => write!(f, "{m}.x (from the routing key)"),
            Self::Unknown => f.write_str("unknown"),
        }
    }
}

/// What the consumer reads from a received message before decoding its body.
#[derive(Debug, Clone)]
pub(crate) struct Received<'a> {
    /// The routing key the event was first published with.
    pub routing_key: &'a str,
    /// The version claimed by the message.
    pub version: ReceivedVersion,
    /// Attempts already made before this delivery.
    pub attempts: u32,
    /// The [`PUBLISHED_AS_HEADER`], for an event published in several majors at once.
    pub published_as: Option<&'a str>,
    /// The payload as JSON: the body, or the `instance` argument of a Celery task message.
    pub payload: Cow<'a, [u8]>,
}

/// Why a received message cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EnvelopeError {
    /// The version header is not a semver version.
    #[error("the {VERSION_HEADER} header `{0}` is not a semver version")]
    BadVersion(String),
    /// The version header and the routing key name different majors.
    #[error(
        "the {VERSION_HEADER} header says major {header} but the routing key `{key}` says v{key_major}"
    )]
    VersionMismatch {
        /// The major of the header.
        header: u64,
        /// The routing key.
        key: String,
        /// The major of the routing key.
        key_major: u64,
    },
    /// The body does not decode as the payload type.
    #[error("the body does not decode: {0}")]
    Body(String),
    /// A header of the wire contract carries a value of the wrong type (an
    /// [`VERSION_HEADER`] that is not a string, an [`ATTEMPTS_HEADER`] that is not an
    /// integer…).
    #[error("the {header} header is {found}, not {expected}")]
    HeaderType {
        /// The header's name.
        header: String,
        /// The type the contract gives it.
        expected: &'static str,
        /// The type it has.
        found: &'static str,
    },
}

/// Marks `copies` (one event encoded in several majors) as copies of each other: one message
/// id, and the [`PUBLISHED_AS_HEADER`] listing every copy's routing key.
pub(crate) fn link_copies(copies: &mut [Message]) {
    let keys: Vec<&str> = copies.iter().map(|m| m.routing_key.as_ref()).collect();
    let published_as = keys.join(",");
    let Some(id) = copies.first().and_then(|m| m.properties.message_id.clone()) else {
        return;
    };
    for copy in copies.iter_mut() {
        copy.properties.message_id = Some(id.clone());
        copy.properties.headers.insert(cloud_events::ID, id.clone());
        copy.properties
            .headers
            .insert(PUBLISHED_AS_HEADER, published_as.clone());
    }
}

/// The routing keys listed in a [`PUBLISHED_AS_HEADER`]: the copies of one event published
/// in several majors.
pub(crate) fn copies(published_as: &str) -> impl Iterator<Item = &str> {
    published_as
        .split(',')
        .map(str::trim)
        .filter(|k| !k.is_empty())
}

/// Reads the envelope of a received message, in one pass over its headers.
pub(crate) fn read(message: &Message) -> Result<Received<'_>, EnvelopeError> {
    let mut version_text = None;
    let mut original_key = None;
    let mut attempts = None;
    let mut published_as = None;
    let mut task = None;
    // The current names win over the legacy `x-` ones: a legacy message that went through a
    // retry here carries both.
    for (name, value) in message.properties.headers.iter() {
        let legacy = name.starts_with(LEGACY_HEADER_PREFIX);
        let name = current_name(name);
        let keep = |seen: bool| !(legacy && seen);
        // A header of the contract with a value of another type is an error, not a header
        // left out: the version check or the original routing key must not be skipped. (A
        // legacy copy of the wrong type is left out: the current one decides.)
        let text = || match value.as_str() {
            Some(text) => Ok(Some(text)),
            None => wrong_type(legacy, name, "a string", value),
        };
        match name {
            VERSION_HEADER if keep(version_text.is_some()) => version_text = text()?,
            ORIGINAL_ROUTING_KEY_HEADER if keep(original_key.is_some()) => {
                original_key = text()?;
            }
            ATTEMPTS_HEADER if keep(attempts.is_some()) => {
                attempts = match value.as_int() {
                    Some(n) => Some(n),
                    None => wrong_type(legacy, name, "an integer", value)?,
                };
            }
            PUBLISHED_AS_HEADER if keep(published_as.is_some()) => published_as = text()?,
            // Celery's own header: a message whose `task` is not text is not a task of ours.
            celery::TASK_HEADER => task = value.as_str(),
            _ => {}
        }
    }
    // A Celery task message names its event in its `task` header, and carries the payload
    // in its `instance` keyword argument.
    let task = task.filter(|task| EventKey::parse(task).is_some());
    let payload = match task {
        Some(_) => Cow::Owned(celery::payload(&message.body).map_err(EnvelopeError::Body)?),
        None => Cow::Borrowed(message.body.as_ref()),
    };
    // A task sent straight to a queue (default exchange) has the queue's name as its
    // routing key, and keeps it as its original one on retries: its task names the event.
    let original_key = match (original_key, task) {
        (Some(key), Some(_)) if EventKey::parse(key).is_none() => None,
        (key, _) => key,
    };
    let routing_key = original_key.or(task).unwrap_or(&message.routing_key);
    let key_major = EventKey::parse(routing_key).map(|k| k.major());
    let version = match version_text {
        Some(text) => {
            let v =
                parse_version(text).ok_or_else(|| EnvelopeError::BadVersion(text.to_owned()))?;
            if let Some(key_major) = key_major.filter(|m| *m != v.major) {
                return Err(EnvelopeError::VersionMismatch {
                    header: v.major,
                    key: routing_key.to_owned(),
                    key_major,
                });
            }
            ReceivedVersion::Full(v)
        }
        None => key_major.map_or(ReceivedVersion::Unknown, ReceivedVersion::Major),
    };
    Ok(Received {
        routing_key,
        version,
        attempts: attempts.map_or(0, saturating_attempts),
        published_as,
        payload,
    })
}

/// `text` as a semver version. The last version read on this thread is kept with its text:
/// the messages of one queue mostly carry one version, and parsing it was a fifth of reading
/// an envelope.
fn parse_version(text: &str) -> Option<semver::Version> {
    /// A longer text is parsed every time rather than kept.
    const KEEP: usize = 64;
    thread_local! {
        static LAST: std::cell::RefCell<(String, Option<semver::Version>)> =
            const { std::cell::RefCell::new((String::new(), None)) };
    }
    LAST.with(|last| {
        let Ok(mut last) = last.try_borrow_mut() else {
            return semver::Version::parse(text).ok();
        };
        let (last_text, last_version) = &mut *last;
        if let Some(version) = last_version.as_ref().filter(|_| last_text == text) {
            return Some(version.clone());
        }
        let version = semver::Version::parse(text).ok()?;
        if text.len() <= KEEP {
            last_text.clear();
            last_text.push_str(text);
            *last_version = Some(version.clone());
        }
        Some(version)
    })
}

/// A header of the contract whose `value` is not of the `expected` type: an error, or, for
/// a `legacy` copy, a header left out.
fn wrong_type<T>(
    legacy: bool,
    name: &str,
    expected: &'static str,
    value: &HeaderValue,
) -> Result<Option<T>, EnvelopeError> {
    if legacy {
        return Ok(None);
    }
    Err(EnvelopeError::HeaderType {
        header: name.to_owned(),
        expected,
        found: value.kind(),
    })
}

/// An `attempts` value as a count: negative is none, too large to count is `u32::MAX` (the
/// attempts are used up).
fn saturating_attempts(attempts: i64) -> u32 {
    u32::try_from(attempts.max(0)).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests;
