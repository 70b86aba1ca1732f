//! Retry, dead-letter and replay copies of a message, and [`DeadLetterKind`].

use std::borrow::Cow;

use super::*;
use crate::message::Message;

/// A copy of `message` addressed to `queue` through the default exchange, remembering where it
/// was first published and how many attempts were made.
fn readdressed(message: &Message, queue: &str, attempts: u32) -> Message {
    let mut copy = message.clone();
    let headers = &mut copy.properties.headers;
    if our_header(headers, ORIGINAL_ROUTING_KEY_HEADER).is_none() {
        headers.insert(ORIGINAL_EXCHANGE_HEADER, message.exchange.clone());
        headers.insert(ORIGINAL_ROUTING_KEY_HEADER, message.routing_key.clone());
    }
    headers.insert(ATTEMPTS_HEADER, i64::from(attempts));
    // RabbitMQ's own dead-lettering history is not part of our contract.
    headers.remove("x-death");
    if let Some(expiration) = copy.properties.expiration.take() {
        copy.properties
            .headers
            .insert(ORIGINAL_EXPIRATION_HEADER, expiration);
    }
    copy.exchange = Cow::Borrowed("");
    copy.routing_key = Cow::Owned(queue.to_owned());
    copy
}

/// The headers a dead letter is given ([`to_dead_letter`]), which a retry or a replay does
/// not carry.
const DEAD_LETTER_HEADERS: [&str; 4] = [
    DEAD_LETTER_REASON_HEADER,
    DEAD_LETTER_KIND_HEADER,
    FAILED_AT_HEADER,
    SERVICE_HEADER,
];

/// The message to park in a retry wait queue after `attempts` failed attempts. Dead-letter
/// headers it arrived with (a replayed dead letter has none; a foreign message might) are
/// not kept: a retry is no dead letter.
pub(crate) fn to_retry(message: &Message, wait_queue: &str, attempts: u32) -> Message {
    let mut copy = readdressed(message, wait_queue, attempts);
    for name in DEAD_LETTER_HEADERS {
        remove_ours(&mut copy.properties.headers, name);
    }
    copy
}

/// Why a message was dead-lettered, as carried in its [`DEAD_LETTER_KIND_HEADER`]; the text
/// for people is in [`DEAD_LETTER_REASON_HEADER`].
///
/// ```
/// use event_manager::envelope::DeadLetterKind;
///
/// assert_eq!(DeadLetterKind::HandlerFailed.as_str(), "handler-failed");
/// assert_eq!("no-callback".parse(), Ok(DeadLetterKind::NoCallback));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DeadLetterKind {
    /// The body does not decode as the payload type (`undecodable`).
    Undecodable,
    /// The service has callbacks for other majors of the event, not this one
    /// (`unsupported-version`).
    UnsupportedVersion,
    /// The service has no callback for the routing key (`no-callback`).
    NoCallback,
    /// The callbacks kept failing until the retries were used up (`handler-failed`).
    HandlerFailed,
    /// A callback returned a permanent error (`permanent-error`).
    PermanentError,
    /// The body is larger than the service accepts (`too-large`).
    TooLarge,
    /// The envelope is unreadable, e.g. a version header that is not semver or names
    /// another major than the routing key (`bad-envelope`).
    BadEnvelope,
    /// Decoding or upcasting the payload panicked (`panicked`).
    Panicked,
    /// RabbitMQ dead-lettered it: it was handed back to the queue more times than the
    /// queue's delivery limit, e.g. because each delivery crashed or stopped the consumer
    /// before it settled the message (`delivery-limit`). Read from RabbitMQ's
    /// `x-first-death-reason` header (`delivery_limit`).
    DeliveryLimit,
}

impl DeadLetterKind {
    /// Every kind, in declaration order.
    pub const ALL: [Self; 9] = [
        Self::Undecodable,
        Self::UnsupportedVersion,
        Self::NoCallback,
        Self::HandlerFailed,
        Self::PermanentError,
        Self::TooLarge,
        Self::BadEnvelope,
        Self::Panicked,
        Self::DeliveryLimit,
    ];

    /// The header value, e.g. `handler-failed`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Undecodable => "undecodable",
            Self::UnsupportedVersion => "unsupported-version",
            Self::NoCallback => "no-callback",
            Self::HandlerFailed => "handler-failed",
            Self::PermanentError => "permanent-error",
            Self::TooLarge => "too-large",
            Self::BadEnvelope => "bad-envelope",
            Self::Panicked => "panicked",
            Self::DeliveryLimit => "delivery-limit",
        }
    }

    /// The kind a dead letter carries in its [`DEAD_LETTER_KIND_HEADER`], if it carries a
    /// known one; [`DeadLetterKind::DeliveryLimit`] for one RabbitMQ dead-lettered past the
    /// delivery limit.
    pub fn of(message: &Message) -> Option<Self> {
        let headers = &message.properties.headers;
        match our_header(headers, DEAD_LETTER_KIND_HEADER) {
            Some(kind) => kind.as_str()?.parse().ok(),
            None => (headers
                .get(BROKER_DEATH_REASON_HEADER)
                .and_then(HeaderValue::as_str)
                == Some("delivery_limit"))
            .then_some(Self::DeliveryLimit),
        }
    }
}

impl std::fmt::Display for DeadLetterKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A [`DEAD_LETTER_KIND_HEADER`] value that names no [`DeadLetterKind`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown dead-letter kind `{0}`")]
pub struct UnknownDeadLetterKind(pub String);

impl std::str::FromStr for DeadLetterKind {
    type Err = UnknownDeadLetterKind;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|kind| kind.as_str() == s)
            .ok_or_else(|| UnknownDeadLetterKind(s.to_owned()))
    }
}

/// The message to put in a dead-letter queue, with the reason.
pub(crate) fn to_dead_letter(
    message: &Message,
    dead_letter_queue: &str,
    service_queue: &str,
    attempts: u32,
    kind: DeadLetterKind,
    reason: &str,
) -> Message {
    let mut copy = readdressed(message, dead_letter_queue, attempts);
    let headers = &mut copy.properties.headers;
    headers.insert(
        DEAD_LETTER_REASON_HEADER,
        cut(reason, MAX_REASON_BYTES).to_owned(),
    );
    headers.insert(DEAD_LETTER_KIND_HEADER, kind.as_str().to_owned());
    headers.insert(FAILED_AT_HEADER, rfc3339(now()));
    headers.insert(SERVICE_HEADER, service_queue.to_owned());
    copy
}

/// `text` cut to at most `max` bytes, at a character boundary.
pub(super) fn cut(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// The headers a forward writes itself, each of bounded size, which it never leaves out:
/// the reason (cut to [`MAX_REASON_BYTES`]) and what identifies the failure. A retry has
/// none of them but the attempts (copies it arrived with are removed, [`to_retry`]); a dead
/// letter has its own values of them in place of any it arrived with. The list of headers
/// left out ([`DROPPED_HEADERS_HEADER`]) is not among them: one a message arrived with can
/// be left out too, and the new list then names it.
const FORWARD_HEADERS: [&str; 5] = [
    DEAD_LETTER_REASON_HEADER,
    DEAD_LETTER_KIND_HEADER,
    FAILED_AT_HEADER,
    SERVICE_HEADER,
    ATTEMPTS_HEADER,
];

/// Makes a forwarded `message` (a retry or dead letter) `excess` bytes smaller by leaving out
/// its largest headers, naming them in [`DROPPED_HEADERS_HEADER`]: those that are not part
/// of the wire contract first, then, only when that is not enough, the contract's own as the
/// message arrived with them (a foreign publisher may have sent a huge `cloudEvents_source`
/// or `tracestate`), never those the forward writes ([`FORWARD_HEADERS`]). For a message that
/// arrived with headers so close to the broker's frame limit that the forwarding headers no
/// longer fit: better a dead letter without some headers than none, or than a message held
/// and delivered again for ever. Returns whether it now fits.
pub(crate) fn shrink_headers(message: &mut Message, excess: usize) -> bool {
    let headers = &mut message.properties.headers;
    let mut candidates: Vec<(bool, String, usize)> = headers
        .iter()
        .filter(|(name, _)| !FORWARD_HEADERS.contains(name))
        .map(|(name, value)| {
            let ours = HEADER_NAMES.contains(&current_name(name));
            (ours, name.to_owned(), 1 + name.len() + value.encoded_len())
        })
        .collect();
    // Foreign before ours, the largest first in each.
    candidates.sort_by_key(|(ours, _, size)| (*ours, std::cmp::Reverse(*size)));
    let mut dropped = Vec::new();
    // The list of dropped names costs room too.
    let mut freed: usize = 0;
    let mut needed = excess + 32;
    for (_, name, size) in candidates {
        if freed >= needed {
            break;
        }
        headers.remove(&name);
        freed += size;
        needed += name.len() + 1;
        dropped.push(name);
    }
    if !dropped.is_empty() {
        if let Some(earlier) = headers.get_str(DROPPED_HEADERS_HEADER) {
            dropped.insert(0, earlier.to_owned());
        }
        headers.insert(DROPPED_HEADERS_HEADER, dropped.join(","));
    }
    freed >= needed
}

/// A dead letter sent back to its service queue for a fresh set of attempts.
pub(crate) fn to_replay(dead_letter: &Message, service_queue: &str) -> Message {
    let mut copy = readdressed(dead_letter, service_queue, 0);
    let headers = &mut copy.properties.headers;
    for name in DEAD_LETTER_HEADERS {
        remove_ours(headers, name);
    }
    if let Some(HeaderValue::Str(expiration)) = remove_ours(headers, ORIGINAL_EXPIRATION_HEADER) {
        copy.properties.expiration = Some(expiration.into_owned());
    }
    copy
}

/// Removes the header `name` of the wire contract and its pre-0.2 `x-` form; returns the
/// value, the current name's first.
fn remove_ours(headers: &mut Headers, name: &str) -> Option<HeaderValue> {
    let legacy = headers.remove(&format!("{LEGACY_HEADER_PREFIX}{name}"));
    headers.remove(name).or(legacy)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `m` dead-lettered by the `billing` service after `attempts` failed attempts.
    fn billing_dead_letter(m: &Message, attempts: u32, reason: &str) -> Message {
        to_dead_letter(
            m,
            "billing.dlq",
            "billing",
            attempts,
            DeadLetterKind::HandlerFailed,
            reason,
        )
    }

    fn bare(key: &str) -> Message {
        Message {
            exchange: "order".into(),
            routing_key: key.to_owned().into(),
            body: Vec::from(&b"{}"[..]).into(),
            properties: Properties::default(),
        }
    }

    #[test]
    fn retry_and_dead_letter_keep_origin() {
        let m = bare("order.v1.submit");
        let retry = to_retry(&m, "billing.retry.100ms", 1);
        assert_eq!(retry.exchange, "");
        assert_eq!(retry.routing_key, "billing.retry.100ms");
        let r = read(&retry).unwrap();
        assert_eq!((r.routing_key, r.attempts), ("order.v1.submit", 1));
        assert_eq!(original_exchange(&retry), "order");
        let dead = billing_dead_letter(&retry, 3, "boom");
        let h = &dead.properties.headers;
        assert_eq!(
            h.get_str(ORIGINAL_ROUTING_KEY_HEADER),
            Some("order.v1.submit")
        );
        assert_eq!(h.get(ATTEMPTS_HEADER), Some(&HeaderValue::Int(3)));
        assert_eq!(h.get_str(DEAD_LETTER_REASON_HEADER), Some("boom"));
        assert_eq!(
            DeadLetterKind::of(&dead),
            Some(DeadLetterKind::HandlerFailed)
        );
        let replay = to_replay(&dead, "billing");
        assert_eq!(replay.routing_key, "billing");
        assert_eq!(read(&replay).unwrap().attempts, 0);
        assert_eq!(DeadLetterKind::of(&replay), None);
        assert!(
            replay
                .properties
                .headers
                .get(DEAD_LETTER_REASON_HEADER)
                .is_none()
        );
    }

    #[test]
    fn dead_letters_keep_every_header_and_property() {
        let mut m = bare("order.v1.submit");
        let p = &mut m.properties;
        p.reply_to = Some("replies".into());
        p.content_encoding = Some("utf-8".into());
        p.priority = Some(5);
        p.expiration = Some("60000".into());
        p.headers.insert("weight", HeaderValue::Float(2.5));
        p.headers
            .insert("blob", HeaderValue::Bytes(vec![1u8, 2].into()));
        p.headers.insert(
            "tags",
            HeaderValue::Array(vec![HeaderValue::Str("a".into())]),
        );
        p.headers.insert(
            "meta",
            HeaderValue::Table(vec![("k".to_owned(), HeaderValue::Int(1))]),
        );
        let dead = billing_dead_letter(&m, 3, "boom");
        let d = &dead.properties;
        assert_eq!(d.reply_to.as_deref(), Some("replies"));
        assert_eq!(d.content_encoding.as_deref(), Some("utf-8"));
        assert_eq!(d.priority, Some(5));
        // A dead letter must not expire in its queue: the TTL moves to a header.
        assert_eq!(d.expiration, None);
        assert_eq!(d.headers.get_str(ORIGINAL_EXPIRATION_HEADER), Some("60000"));
        for name in ["weight", "blob", "tags", "meta"] {
            assert_eq!(
                d.headers.get(name),
                m.properties.headers.get(name),
                "{name}"
            );
        }
        let replay = to_replay(&dead, "billing");
        assert_eq!(replay.properties.expiration.as_deref(), Some("60000"));
        assert!(
            replay
                .properties
                .headers
                .get(ORIGINAL_EXPIRATION_HEADER)
                .is_none()
        );
    }

    #[test]
    fn oversized_forwards_leave_out_the_largest_foreign_headers() {
        let mut m = bare("order.v1.submit");
        m.properties.headers.insert("big", "x".repeat(100_000));
        m.properties.headers.insert("small", "y");
        let mut dead = billing_dead_letter(&m, 1, &"r".repeat(10_000));
        assert_eq!(
            dead.properties
                .headers
                .get_str(DEAD_LETTER_REASON_HEADER)
                .map(str::len),
            Some(MAX_REASON_BYTES)
        );
        assert!(shrink_headers(&mut dead, 50_000));
        let h = &dead.properties.headers;
        assert!(h.get("big").is_none());
        assert_eq!(h.get_str("small"), Some("y"));
        assert_eq!(h.get_str(DROPPED_HEADERS_HEADER), Some("big"));
        assert!(h.get_str(ORIGINAL_ROUTING_KEY_HEADER).is_some());
        assert!(
            !shrink_headers(&mut dead, 1_000_000),
            "more than every header can free"
        );
    }

    /// A header of the wire contract that arrived huge (from a foreign publisher) is left
    /// out too when leaving out the foreign ones is not enough; what the forward wrote stays.
    #[test]
    fn an_oversized_contract_header_is_left_out_after_the_foreign_ones() {
        let mut m = bare("order.v1.submit");
        m.properties
            .headers
            .insert(cloud_events::SOURCE, "s".repeat(120_000));
        m.properties.headers.insert("foreign", "f".repeat(1_000));
        let mut dead = billing_dead_letter(&m, 5, "boom");
        assert!(shrink_headers(&mut dead, 100_000));
        let h = &dead.properties.headers;
        assert!(h.get(cloud_events::SOURCE).is_none());
        assert!(h.get("foreign").is_none());
        assert_eq!(
            h.get_str(DROPPED_HEADERS_HEADER),
            Some(format!("foreign,{}", cloud_events::SOURCE).as_str())
        );
        assert_eq!(h.get_str(DEAD_LETTER_REASON_HEADER), Some("boom"));
        assert_eq!(
            h.get(ATTEMPTS_HEADER).and_then(HeaderValue::as_int),
            Some(5)
        );
        assert_eq!(h.get_str(SERVICE_HEADER), Some("billing"));
    }

    /// The headers a forward writes are kept because they are small; copies of them that a
    /// foreign message arrived with are not what the forward wrote, and can be huge. A retry
    /// (which writes none of the dead-letter headers) used to keep them and could never be
    /// made small enough: held and delivered again for ever.
    #[test]
    fn huge_copies_of_forward_headers_that_arrived_with_a_message_can_be_left_out() {
        let mut m = bare("order.v1.submit");
        m.properties
            .headers
            .insert(DEAD_LETTER_REASON_HEADER, "r".repeat(120_000));
        m.properties
            .headers
            .insert(FAILED_AT_HEADER, "f".repeat(120_000));
        let retry = to_retry(&m, "billing.wait.1s", 1);
        let h = &retry.properties.headers;
        assert!(h.get(DEAD_LETTER_REASON_HEADER).is_none());
        assert!(h.get(FAILED_AT_HEADER).is_none());
        assert!(
            retry
                .properties
                .headers
                .iter()
                .all(|(_, v)| v.encoded_len() < 100)
        );

        let mut m = bare("order.v1.submit");
        m.properties
            .headers
            .insert(DROPPED_HEADERS_HEADER, "d".repeat(120_000));
        let mut dead = billing_dead_letter(&m, 5, "boom");
        assert!(shrink_headers(&mut dead, 100_000));
        let h = &dead.properties.headers;
        assert_eq!(
            h.get_str(DROPPED_HEADERS_HEADER),
            Some(DROPPED_HEADERS_HEADER)
        );
        assert_eq!(h.get_str(DEAD_LETTER_REASON_HEADER), Some("boom"));
    }

    #[test]
    fn dead_letter_kinds_round_trip_through_their_header_values() {
        for kind in DeadLetterKind::ALL {
            assert_eq!(kind.as_str().parse(), Ok(kind));
            assert_eq!(kind.to_string(), kind.as_str());
        }
        assert_eq!(
            "exploded".parse::<DeadLetterKind>(),
            Err(UnknownDeadLetterKind("exploded".into()))
        );
    }
}
