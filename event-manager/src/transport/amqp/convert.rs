//! Mapping between the crate's transport-neutral types and lapin's: properties, headers,
//! queue arguments and broker refusals.

use std::borrow::Cow;

use lapin::BasicProperties;
use lapin::types::{AMQPValue, DecimalValue, FieldTable, ShortString};

use crate::error::{Entity, TopologyError};
use crate::message::{HeaderValue, Headers, Properties};
use crate::transport::{QueueKind, QueueSpec};

/// An AMQP short string: at most 255 bytes, cut at a character boundary when longer.
pub(super) fn short(s: &str) -> ShortString {
    ShortString::try_new(s).unwrap_or_else(|_| {
        let mut end = 255.min(s.len());
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        ShortString::from(&s[..end])
    })
}

/// Deleting what does not exist is not an error.
pub(super) fn already_gone_is_fine(result: Result<(), TopologyError>) -> Result<(), TopologyError> {
    match result {
        Err(TopologyError::NotFound { .. }) => Ok(()),
        other => other,
    }
}

/// Maps a lapin error of an operation on `entity` to a topology error.
pub(super) fn topology_error(entity: Entity, error: &lapin::Error) -> TopologyError {
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
        source: Some(std::sync::Arc::new(error.clone())),
    }
}

/// Whether `error` is the channel-closing `404 NOT_FOUND - no exchange 'x' in vhost '/'`
/// for the exchange `exchange`. RabbitMQ cuts the text to 255 bytes, ending it with `...`:
/// a long name may come without its end, or without the quote after it.
pub(super) fn is_missing_exchange(error: &lapin::Error, exchange: &str) -> bool {
    let lapin::ErrorKind::ProtocolError(amqp) = error.kind() else {
        return false;
    };
    if amqp.get_id() != 404 {
        return false;
    }
    let text = amqp.get_message().as_str();
    let Some((_, rest)) = text.split_once("no exchange '") else {
        return false;
    };
    match rest.strip_prefix(exchange) {
        // The whole name, then its closing quote, or the cut.
        Some(after) => after.starts_with('\'') || after == "...",
        // Cut inside the name.
        None => rest
            .strip_suffix("...")
            .is_some_and(|shown| !shown.is_empty() && exchange.starts_with(shown)),
    }
}

pub(super) fn queue_arguments(spec: &QueueSpec) -> FieldTable {
    let mut args = FieldTable::default();
    if spec.kind == QueueKind::Quorum {
        args.insert(
            "x-queue-type".into(),
            AMQPValue::LongString("quorum".into()),
        );
        if let Some(limit) = spec.delivery_limit {
            args.insert(
                "x-delivery-limit".into(),
                AMQPValue::LongLongInt(i64::from(limit)),
            );
        }
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
        if dl.at_least_once && spec.kind == QueueKind::Quorum {
            // RabbitMQ 3.10+: the message stays in this queue until the target confirmed it.
            // It requires `reject-publish` overflow on the source queue.
            args.insert(
                "x-dead-letter-strategy".into(),
                AMQPValue::LongString("at-least-once".into()),
            );
            args.insert(
                "x-overflow".into(),
                AMQPValue::LongString("reject-publish".into()),
            );
        }
    }
    args
}

pub(super) fn to_amqp(properties: &Properties) -> BasicProperties {
    let mut p = BasicProperties::default();
    let text = |v: &str| short(v);
    if let Some(v) = &properties.content_type {
        p = p.with_content_type(text(v));
    }
    if let Some(v) = &properties.content_encoding {
        p = p.with_content_encoding(text(v));
    }
    if let Some(v) = &properties.message_id {
        p = p.with_message_id(text(v));
    }
    if let Some(v) = properties.timestamp {
        p = p.with_timestamp(v);
    }
    if let Some(v) = &properties.kind {
        p = p.with_type(text(v));
    }
    if let Some(v) = &properties.app_id {
        p = p.with_app_id(text(v));
    }
    if let Some(v) = &properties.correlation_id {
        p = p.with_correlation_id(text(v));
    }
    if let Some(v) = &properties.reply_to {
        p = p.with_reply_to(text(v));
    }
    if let Some(v) = &properties.expiration {
        p = p.with_expiration(text(v));
    }
    if let Some(v) = properties.priority {
        p = p.with_priority(v);
    }
    if properties.persistent {
        p = p.with_delivery_mode(2);
    }
    if !properties.headers.is_empty() {
        let mut table = FieldTable::default();
        for (name, value) in properties.headers.iter() {
            table.insert(short(name), amqp_value(value));
        }
        p = p.with_headers(table);
    }
    p
}

/// A header value as AMQP writes it.
fn amqp_value(value: &HeaderValue) -> AMQPValue {
    match value {
        HeaderValue::Str(s) => AMQPValue::LongString(s.as_ref().into()),
        HeaderValue::Int(i) => AMQPValue::LongLongInt(*i),
        HeaderValue::Bool(b) => AMQPValue::Boolean(*b),
        HeaderValue::Float(x) => AMQPValue::Double(*x),
        HeaderValue::Decimal { scale, value } => AMQPValue::DecimalValue(DecimalValue {
            scale: *scale,
            value: *value,
        }),
        HeaderValue::Timestamp(t) => AMQPValue::Timestamp(*t),
        HeaderValue::Bytes(b) => AMQPValue::ByteArray(b.to_vec().into()),
        HeaderValue::Array(items) => {
            AMQPValue::FieldArray(items.iter().map(amqp_value).collect::<Vec<_>>().into())
        }
        HeaderValue::Table(entries) => {
            let mut table = FieldTable::default();
            for (name, value) in entries {
                table.insert(short(name), amqp_value(value));
            }
            AMQPValue::FieldTable(table)
        }
        // `Void` and whatever a later version adds.
        _ => AMQPValue::Void,
    }
}

/// An AMQP value as a header value; nothing is dropped. A long string that is not UTF-8
/// (AMQP's long strings are bytes) is kept as bytes, not as text with replaced characters:
/// a retry or dead letter then carries the bytes it arrived with.
fn header_value(value: &AMQPValue) -> HeaderValue {
    match value {
        AMQPValue::LongString(s) => match std::str::from_utf8(s.as_bytes()) {
            Ok(text) => HeaderValue::Str(received_text(Cow::Borrowed(text))),
            Err(_) => HeaderValue::Bytes(s.as_bytes().to_vec().into()),
        },
        AMQPValue::ShortString(s) => HeaderValue::Str(s.as_str().to_owned().into()),
        AMQPValue::Boolean(b) => HeaderValue::Bool(*b),
        AMQPValue::ShortShortInt(i) => HeaderValue::Int(i64::from(*i)),
        AMQPValue::ShortShortUInt(i) => HeaderValue::Int(i64::from(*i)),
        AMQPValue::ShortInt(i) => HeaderValue::Int(i64::from(*i)),
        AMQPValue::ShortUInt(i) => HeaderValue::Int(i64::from(*i)),
        AMQPValue::LongInt(i) => HeaderValue::Int(i64::from(*i)),
        AMQPValue::LongUInt(i) => HeaderValue::Int(i64::from(*i)),
        AMQPValue::LongLongInt(i) => HeaderValue::Int(*i),
        AMQPValue::Float(x) => HeaderValue::Float(f64::from(*x)),
        AMQPValue::Double(x) => HeaderValue::Float(*x),
        AMQPValue::DecimalValue(d) => HeaderValue::Decimal {
            scale: d.scale,
            value: d.value,
        },
        AMQPValue::Timestamp(t) => HeaderValue::Timestamp(*t),
        AMQPValue::ByteArray(b) => HeaderValue::Bytes(b.as_slice().to_vec().into()),
        AMQPValue::FieldArray(items) => {
            HeaderValue::Array(items.as_slice().iter().map(header_value).collect())
        }
        AMQPValue::FieldTable(table) => HeaderValue::Table(
            table
                .inner()
                .iter()
                .map(|(name, value)| (name.as_str().to_owned(), header_value(value)))
                .collect(),
        ),
        AMQPValue::Void => HeaderValue::Void,
    }
}

/// A received text, borrowed when the wire contract knows it (every event carries the same
/// content type and CloudEvents spec version), copied otherwise.
fn received_text(value: Cow<'_, str>) -> Cow<'static, str> {
    match crate::envelope::known_value(&value) {
        Some(known) => known.into(),
        None => value.into_owned().into(),
    }
}

pub(super) fn from_amqp(properties: &BasicProperties) -> Properties {
    let text = |v: &Option<ShortString>| v.as_ref().map(|s| s.as_str().to_owned());
    let headers = match properties.headers() {
        Some(table) => {
            let table = table.inner();
            let mut headers = Headers::with_capacity(table.len());
            // A field table's names are unique, and so are the names they map to.
            for (name, value) in table {
                headers.push_unique(
                    crate::envelope::header_name(name.as_str()),
                    header_value(value),
                );
            }
            headers
        }
        None => Headers::new(),
    };
    Properties {
        content_type: properties
            .content_type()
            .as_ref()
            .map(|t| received_text(t.as_str().into())),
        content_encoding: text(properties.content_encoding()),
        message_id: text(properties.message_id()),
        timestamp: *properties.timestamp(),
        kind: text(properties.kind()).map(Into::into),
        app_id: text(properties.app_id()).map(Into::into),
        correlation_id: text(properties.correlation_id()),
        reply_to: text(properties.reply_to()),
        expiration: text(properties.expiration()),
        priority: *properties.priority(),
        persistent: *properties.delivery_mode() == Some(2),
        headers,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A long-string header that is not UTF-8 used to be read as text with U+FFFD in place of
    /// its bytes, and forwarded so: the retry or dead letter no longer carried what arrived.
    #[test]
    fn a_long_string_that_is_not_utf8_keeps_its_bytes() {
        let raw = vec![b'a', 0xff, 0xfe, b'z'];
        let value = AMQPValue::LongString(raw.clone().into());
        assert_eq!(header_value(&value), HeaderValue::Bytes(raw.into()));
        let text = AMQPValue::LongString(b"caf\xc3\xa9".to_vec().into());
        assert_eq!(header_value(&text).as_str(), Some("caf\u{e9}"));
    }

    /// The size lapin's encoder gives the header frame of `properties`.
    fn encoded_header_frame(properties: &Properties) -> usize {
        let amqp = to_amqp(properties);
        let (bytes, _) =
            cookie_factory::r#gen(lapin::protocol::basic::gen_properties(&amqp), Vec::new())
                .expect("encodes");
        // frame header 7, class 2, weight 2, body size 8, frame end 1
        7 + 2 + 2 + 8 + bytes.len() + 1
    }

    #[test]
    fn header_frame_size_is_the_encoded_size() {
        let mut properties = Properties {
            content_type: Some("application/json".into()),
            message_id: Some("m".repeat(40)),
            persistent: true,
            ..Properties::default()
        };
        properties.headers.insert("big", "x".repeat(100_000));
        properties.headers.insert(
            "t",
            HeaderValue::Table(vec![(
                "a".to_owned(),
                HeaderValue::Array(vec![HeaderValue::Int(1)]),
            )]),
        );
        properties
            .headers
            .insert("d", HeaderValue::Decimal { scale: 1, value: 5 });
        assert_eq!(
            properties.header_frame_size(),
            encoded_header_frame(&properties)
        );
        let bare = Properties::default();
        assert_eq!(bare.header_frame_size(), encoded_header_frame(&bare));
        let full = Properties {
            timestamp: Some(1),
            priority: Some(1),
            expiration: Some("1".into()),
            reply_to: Some("r".into()),
            ..properties
        };
        assert_eq!(full.header_frame_size(), encoded_header_frame(&full));
    }

    /// The texts every event carries the same are not copied on receipt; others are.
    #[test]
    fn received_texts_of_the_wire_contract_are_borrowed() {
        let message = crate::envelope::encode(
            crate::test_probe::PING,
            &crate::test_probe::Probe { id: 1 },
            "order",
        )
        .unwrap();
        let back = from_amqp(&to_amqp(&message.properties));
        let borrowed =
            |v: Option<&HeaderValue>| matches!(v, Some(HeaderValue::Str(Cow::Borrowed(_))));
        assert!(matches!(
            back.content_type,
            Some(Cow::Borrowed("application/json"))
        ));
        assert!(borrowed(
            back.headers.get(crate::envelope::cloud_events::SPECVERSION)
        ));
        assert!(!borrowed(
            back.headers.get(crate::envelope::cloud_events::ID)
        ));
        assert_eq!(back.headers.len(), message.properties.headers.len());
        for (name, value) in message.properties.headers.iter() {
            assert_eq!(back.headers.get(name), Some(value), "{name}");
        }
    }

    #[test]
    fn every_header_type_and_property_survives_a_round_trip() {
        let mut headers = Headers::new();
        headers.insert("s", "text");
        headers.insert("i", 42i64);
        headers.insert("b", true);
        headers.insert("f", HeaderValue::Float(1.5));
        headers.insert(
            "d",
            HeaderValue::Decimal {
                scale: 2,
                value: 1999,
            },
        );
        headers.insert("t", HeaderValue::Timestamp(1_700_000_000));
        headers.insert("bytes", HeaderValue::Bytes(vec![0u8, 255, 7].into()));
        headers.insert(
            "a",
            HeaderValue::Array(vec![HeaderValue::Int(1), HeaderValue::Str("x".into())]),
        );
        headers.insert(
            "x-death",
            HeaderValue::Table(vec![
                ("count".to_owned(), HeaderValue::Int(1)),
                ("queue".to_owned(), HeaderValue::Str("q".into())),
            ]),
        );
        headers.insert("v", HeaderValue::Void);
        let properties = Properties {
            content_type: Some("application/json".into()),
            content_encoding: Some("utf-8".into()),
            message_id: Some("m-1".into()),
            timestamp: Some(1_700_000_000),
            kind: Some("order.v1.submit".into()),
            app_id: Some("order".into()),
            correlation_id: Some("c-1".into()),
            reply_to: Some("replies".into()),
            expiration: Some("60000".into()),
            priority: Some(7),
            persistent: true,
            headers,
        };
        let back = from_amqp(&to_amqp(&properties));
        // Tables come back sorted by name, as AMQP field tables are.
        let mut want: Vec<_> = properties
            .headers
            .iter()
            .map(|(n, v)| (n.to_owned(), v.clone()))
            .collect();
        let mut got: Vec<_> = back
            .headers
            .iter()
            .map(|(n, v)| (n.to_owned(), v.clone()))
            .collect();
        want.sort_by(|a, b| a.0.cmp(&b.0));
        got.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(got, want);
        assert_eq!(
            Properties {
                headers: Headers::new(),
                ..back
            },
            Properties {
                headers: Headers::new(),
                ..properties
            }
        );
    }
}
