//! A message as an outbox row: its properties and headers as JSON text, its body as bytes,
//! and the key an inbox deduplicates a message on.

use std::borrow::Cow;

use serde_json::{Value, json};

use crate::message::{Bytes, HeaderValue, Headers, Message, Properties};

/// An encoded event as an outbox stores it: everything the relay needs to publish it again,
/// byte for byte, with the same message id.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxMessage {
    /// The message id, kept by every publish of the row.
    pub message_id: String,
    /// The broker-side exchange name (with the namespace of the writing bus).
    pub exchange: String,
    /// Whether the exchange is durable (to declare it before publishing).
    pub durable: bool,
    /// The routing key.
    pub routing_key: String,
    /// The body bytes.
    pub body: Vec<u8>,
    /// The AMQP properties and headers, as JSON text (tagged header values).
    pub properties: String,
}

impl OutboxMessage {
    /// The row for `message`, published to the exchange `exchange` (broker-side name).
    pub(crate) fn from_message(message: &Message, exchange: String, durable: bool) -> Self {
        Self {
            message_id: message.properties.message_id.clone().unwrap_or_default(),
            exchange,
            durable,
            routing_key: message.routing_key.to_string(),
            body: message.body.to_vec(),
            properties: properties_to_json(&message.properties).to_string(),
        }
    }

    /// The message to publish again.
    pub(crate) fn to_message(&self) -> Result<Message, String> {
        let value: Value = serde_json::from_str(&self.properties).map_err(|e| e.to_string())?;
        let mut properties = properties_from_json(&value)?;
        properties.message_id = Some(self.message_id.clone());
        Ok(Message {
            exchange: Cow::Owned(self.exchange.clone()),
            routing_key: Cow::Owned(self.routing_key.clone()),
            body: Bytes::from(self.body.clone()),
            properties,
        })
    }
}

fn properties_to_json(p: &Properties) -> Value {
    let headers: Vec<Value> = p
        .headers
        .iter()
        .map(|(name, value)| json!([name, header_to_json(value)]))
        .collect();
    json!({
        "content_type": p.content_type,
        "content_encoding": p.content_encoding,
        "timestamp": p.timestamp,
        "type": p.kind,
        "app_id": p.app_id,
        "correlation_id": p.correlation_id,
        "persistent": p.persistent,
        "priority": p.priority,
        "expiration": p.expiration,
        "reply_to": p.reply_to,
        "headers": headers,
    })
}

fn text(value: &Value, name: &str) -> Option<String> {
    value.get(name)?.as_str().map(str::to_owned)
}

fn properties_from_json(v: &Value) -> Result<Properties, String> {
    let mut headers = Headers::new();
    for pair in v["headers"].as_array().into_iter().flatten() {
        let name = pair[0]
            .as_str()
            .ok_or_else(|| format!("a header name that is not text: {}", pair[0]))?;
        let value = header_from_json(&pair[1]).map_err(|e| format!("header `{name}`: {e}"))?;
        headers.insert(name.to_owned(), value);
    }
    Ok(Properties {
        content_type: text(v, "content_type").map(Cow::Owned),
        content_encoding: text(v, "content_encoding"),
        message_id: None,
        timestamp: v["timestamp"].as_u64(),
        kind: text(v, "type").map(Cow::Owned),
        app_id: text(v, "app_id").map(Cow::Owned),
        correlation_id: text(v, "correlation_id"),
        persistent: v["persistent"].as_bool().unwrap_or(true),
        priority: v["priority"].as_u64().and_then(|p| u8::try_from(p).ok()),
        expiration: text(v, "expiration"),
        reply_to: text(v, "reply_to"),
        headers,
    })
}

/// A header value as tagged JSON: `{"s": text}`, `{"i": int}`, … (`null` for void).
///
/// A float is written twice: as a JSON number (`null` for NaN and the infinities), which
/// relays of earlier releases read, and as text in Rust's shortest round-trip form
/// (`"fx": "1.5e0"`, `"NaN"`, `"-inf"`), which this one reads, so that every value comes
/// back as it was.
fn header_to_json(value: &HeaderValue) -> Value {
    match value {
        HeaderValue::Str(s) => json!({ "s": s }),
        HeaderValue::Int(i) => json!({ "i": i }),
        HeaderValue::Bool(b) => json!({ "b": b }),
        HeaderValue::Float(f) => json!({ "f": f, "fx": format!("{f:e}") }),
        HeaderValue::Decimal { scale, value } => json!({ "d": [scale, value] }),
        HeaderValue::Timestamp(t) => json!({ "t": t }),
        HeaderValue::Bytes(b) => json!({ "x": b.to_vec() }),
        HeaderValue::Array(items) => {
            json!({ "a": items.iter().map(header_to_json).collect::<Vec<_>>() })
        }
        HeaderValue::Table(entries) => json!({
            "m": entries.iter().map(|(n, v)| json!([n, header_to_json(v)])).collect::<Vec<_>>()
        }),
        HeaderValue::Void => Value::Null,
    }
}

/// The header value `value` was written from by [`header_to_json`] (a float written as a
/// JSON number, by earlier releases, is read too); an error describing it when it is no
/// such form.
fn header_from_json(value: &Value) -> Result<HeaderValue, String> {
    let unreadable = || format!("not a header value this release writes: {value}");
    if value.is_null() {
        return Ok(HeaderValue::Void);
    }
    let object = value.as_object().ok_or_else(unreadable)?;
    if let (2, Some(Value::String(text)), true) =
        (object.len(), object.get("fx"), object.contains_key("f"))
    {
        return text
            .parse()
            .map(HeaderValue::Float)
            .map_err(|_| unreadable());
    }
    if object.len() != 1 {
        return Err(unreadable());
    }
    let (tag, v) = object.iter().next().ok_or_else(unreadable)?;
    let read = match tag.as_str() {
        "s" => v
            .as_str()
            .map(|s| HeaderValue::Str(Cow::Owned(s.to_owned()))),
        "i" => v.as_i64().map(HeaderValue::Int),
        "b" => v.as_bool().map(HeaderValue::Bool),
        "f" => match v {
            Value::String(text) => text.parse().ok().map(HeaderValue::Float),
            // Earlier releases wrote NaN and the infinities as `null`: the value is lost, the
            // header is kept, as void, rather than the row refused.
            Value::Null => {
                tracing::warn!(
                    "an outbox row holds a float header whose value an earlier release lost; relayed as void"
                );
                Some(HeaderValue::Void)
            }
            number => number.as_f64().map(HeaderValue::Float),
        },
        "d" => (|| {
            Some(HeaderValue::Decimal {
                scale: u8::try_from(v.get(0)?.as_u64()?).ok()?,
                value: u32::try_from(v.get(1)?.as_u64()?).ok()?,
            })
        })(),
        "t" => v.as_u64().map(HeaderValue::Timestamp),
        "x" => serde_json::from_value::<Vec<u8>>(v.clone())
            .ok()
            .map(|b| HeaderValue::Bytes(Bytes::from(b))),
        "a" => {
            let items = v.as_array().ok_or_else(unreadable)?;
            let items = items
                .iter()
                .map(header_from_json)
                .collect::<Result<_, _>>()?;
            Some(HeaderValue::Array(items))
        }
        "m" => Some(HeaderValue::Table(table_from_json(v)?)),
        _ => None,
    };
    read.ok_or_else(unreadable)
}

fn table_from_json(v: &Value) -> Result<Vec<(String, HeaderValue)>, String> {
    let pairs = v
        .as_array()
        .ok_or_else(|| format!("not a header table: {v}"))?;
    let mut out = Vec::with_capacity(pairs.len());
    for pair in pairs {
        let name = pair[0]
            .as_str()
            .ok_or_else(|| format!("a table entry name that is not text: {}", pair[0]))?;
        let value = header_from_json(&pair[1]).map_err(|e| format!("table entry `{name}`: {e}"))?;
        out.push((name.to_owned(), value));
    }
    Ok(out)
}

/// The prefix of a derived deduplication key.
pub const DERIVED_KEY_PREFIX: &str = "derived:";

/// The key an inbox deduplicates a delivery on: its message id
/// ([`Delivery::message_id`](crate::Delivery::message_id)), or, for a message without one,
/// `derived:` followed by the FNV-1a 128-bit hash (32 hex digits) of the routing key, a zero
/// byte and the body. Two messages without id, with the same routing key and body, are one
/// message to the inbox.
pub fn dedup_key(message_id: Option<&str>, routing_key: &str, body: &[u8]) -> String {
    match message_id {
        Some(id) if !id.is_empty() => id.to_owned(),
        _ => {
            let hash = fnv1a_128([routing_key.as_bytes(), &[0], body]);
            format!("{DERIVED_KEY_PREFIX}{hash:032x}")
        }
    }
}

/// FNV-1a, 128 bits, over the concatenation of `parts`.
pub(super) fn fnv1a_128<const N: usize>(parts: [&[u8]; N]) -> u128 {
    const OFFSET: u128 = 0x6c62_272e_07bb_0142_62b8_2175_6295_c58d;
    const PRIME: u128 = 0x0000_0000_0100_0000_0000_0000_0000_013b;
    let mut hash = OFFSET;
    for byte in parts.iter().flat_map(|p| p.iter()) {
        hash ^= u128::from(*byte);
        hash = hash.wrapping_mul(PRIME);
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_survives_its_row() {
        let app_id = Cow::Borrowed("order");
        let mut message = crate::envelope::encode_with(
            crate::__private::fallback_event_def::<()>().contract(),
            &(),
            &crate::envelope::Origin::new(&app_id),
        )
        .unwrap();
        message.properties.headers.insert("n", HeaderValue::Int(-3));
        message.properties.headers.insert(
            "t",
            HeaderValue::Table(vec![(
                "a".into(),
                HeaderValue::Array(vec![HeaderValue::Void]),
            )]),
        );
        let row = OutboxMessage::from_message(&message, "ns.invalid".into(), true);
        let back = row.to_message().unwrap();
        assert_eq!(back.exchange, "ns.invalid");
        assert_eq!(back.body, message.body);
        assert_eq!(back.properties, message.properties);
    }

    fn bare_message() -> Message {
        Message {
            exchange: Cow::Borrowed("x"),
            routing_key: Cow::Borrowed("a.v1.b"),
            body: Bytes::new(),
            properties: Properties::default(),
        }
    }

    #[test]
    fn every_float_survives_its_row_bit_for_bit() {
        let mut message = bare_message();
        let floats = [
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            -0.0,
            1.5,
            f64::MIN_POSITIVE,
        ];
        for (i, f) in floats.iter().enumerate() {
            message
                .properties
                .headers
                .insert(format!("f{i}"), HeaderValue::Float(*f));
        }
        message.properties.headers.insert(
            "nested",
            HeaderValue::Array(floats.iter().map(|f| HeaderValue::Float(*f)).collect()),
        );
        let back = OutboxMessage::from_message(&message, "x".into(), true)
            .to_message()
            .unwrap();
        let bits = |headers: &Headers| -> Vec<(String, Vec<u64>)> {
            headers
                .iter()
                .map(|(name, value)| {
                    let values = match value {
                        HeaderValue::Float(f) => vec![f.to_bits()],
                        HeaderValue::Array(items) => items
                            .iter()
                            .map(|item| match item {
                                HeaderValue::Float(f) => f.to_bits(),
                                other => panic!("{other:?}"),
                            })
                            .collect(),
                        other => panic!("{other:?}"),
                    };
                    (name.to_owned(), values)
                })
                .collect()
        };
        assert_eq!(
            bits(&back.properties.headers),
            bits(&message.properties.headers)
        );
    }

    #[test]
    fn a_row_with_a_header_it_cannot_read_is_corrupt_not_shortened() {
        let message = bare_message();
        let mut row = OutboxMessage::from_message(&message, "x".into(), true);
        let mut properties: Value = serde_json::from_str(&row.properties).unwrap();
        properties["headers"] = json!([["kept", {"i": 1}], ["odd", {"q": 1}]]);
        row.properties = properties.to_string();
        let error = row.to_message().unwrap_err();
        assert!(error.contains("odd"), "{error}");

        // A relay of an earlier release reads a float by its JSON number (`f`, the first
        // key), so rows stay readable while both releases run.
        let float = header_to_json(&HeaderValue::Float(1.5));
        assert_eq!(float.as_object().unwrap().iter().next().unwrap().1, 1.5);
        assert_eq!(
            header_from_json(&json!({"f": 2.5})),
            Ok(HeaderValue::Float(2.5))
        );

        // A row of an earlier release, which wrote a NaN as `null`, is still relayed.
        properties["headers"] = json!([["kept", {"i": 1}], ["nan", {"f": null}]]);
        row.properties = properties.to_string();
        let message = row.to_message().unwrap();
        assert_eq!(
            message.properties.headers.get("nan"),
            Some(&HeaderValue::Void)
        );
    }

    #[test]
    fn derived_keys_depend_on_routing_key_and_body() {
        assert_eq!(dedup_key(Some("m1"), "a.v1.b", b"{}"), "m1");
        let k = dedup_key(None, "a.v1.b", b"{}");
        assert!(
            k.starts_with(DERIVED_KEY_PREFIX) && k.len() == 8 + 32,
            "{k}"
        );
        assert_eq!(k, dedup_key(Some(""), "a.v1.b", b"{}"));
        assert_ne!(k, dedup_key(None, "a.v1.c", b"{}"));
        assert_ne!(k, dedup_key(None, "a.v1.b", b"{ }"));
    }
}
