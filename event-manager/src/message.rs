//! The transport-neutral message: bytes plus AMQP-style properties and headers.
//!
//! Transports move [`Message`]s and never see a Rust event type. What the properties and
//! headers *mean* for events is decided in one place, [`crate::envelope`].

use std::borrow::Cow;
use std::fmt;

pub use bytes::Bytes;

/// A message as a broker carries it.
///
/// Names known at compile time (exchanges, routing keys, header names, static header values)
/// are borrowed, not copied: an event published through a contract allocates only its body,
/// its message id and the few headers that differ per message.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// The exchange it is published to; the empty string is the default exchange, which
    /// routes to the queue named by the routing key.
    pub exchange: Cow<'static, str>,
    /// The routing key.
    pub routing_key: Cow<'static, str>,
    /// The body bytes (JSON for events); a `Vec<u8>` converts without a copy.
    pub body: Bytes,
    /// AMQP basic properties and headers.
    pub properties: Properties,
}

/// The longest text AMQP 0-9-1 carries as a short string, in bytes: exchange and queue
/// names, routing keys, header names, and the message id, correlation id and the other
/// text properties. Longer ones are refused ([`crate::PublishError::TooLong`],
/// [`crate::TopologyError::NameTooLong`]), never cut: a cut id or name would be another one.
pub const SHORT_STRING_MAX: usize = 255;

/// RabbitMQ's default `frame_max`, 128 KiB: the largest content header frame (properties
/// and headers) a connection takes unless the broker is configured otherwise. The in-memory
/// broker refuses a message whose headers do not fit in it, as RabbitMQ's transport does
/// ([`crate::PublishError::HeadersTooLarge`]).
pub const DEFAULT_FRAME_MAX: usize = 131_072;

impl Message {
    /// Fails with [`crate::PublishError::TooLong`] when one of the message's short strings
    /// is longer than [`SHORT_STRING_MAX`], with [`crate::PublishError::DuplicateHeader`]
    /// when a header table names an entry twice, and with
    /// [`crate::PublishError::InvalidExpiration`] when its `expiration` is not a number of
    /// milliseconds: every transport refuses such a message alike, before sending it.
    #[cfg_attr(not(feature = "runtime"), allow(dead_code))]
    pub(crate) fn check_short_strings(&self) -> Result<(), crate::PublishError> {
        if let Some(expiration) = &self.properties.expiration
            && self.expiration().is_none()
        {
            return Err(crate::PublishError::InvalidExpiration {
                exchange: self.exchange.to_string(),
                routing_key: self.routing_key.to_string(),
                expiration: expiration.clone(),
            });
        }
        if self.short_strings_fit() {
            return Ok(());
        }
        if let Some(name) = self
            .properties
            .headers
            .0
            .iter()
            .find_map(|(_, value)| duplicate_in(value))
        {
            return Err(crate::PublishError::DuplicateHeader {
                exchange: self.exchange.to_string(),
                routing_key: self.routing_key.to_string(),
                name: name.to_owned(),
            });
        }
        match self.over_long_field() {
            None => Ok(()),
            Some((field, len)) => Err(crate::PublishError::TooLong {
                exchange: self.exchange.to_string(),
                routing_key: self.routing_key.to_string(),
                field,
                len,
            }),
        }
    }

    /// The message's own time to live, from its `expiration` property: milliseconds in
    /// ASCII digits, at most `u32::MAX` (about 49 days) as RabbitMQ takes; `None` without
    /// one, or when it is not such a number.
    #[cfg_attr(not(feature = "runtime"), allow(dead_code))]
    pub(crate) fn expiration(&self) -> Option<std::time::Duration> {
        let text = self.properties.expiration.as_deref()?;
        if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let ms = text.parse::<u32>().ok()?;
        Some(std::time::Duration::from_millis(u64::from(ms)))
    }

    /// Whether every short string of the message fits: the test of every publish, kept to
    /// length comparisons (which one is too long is looked for only when one is).
    #[inline]
    fn short_strings_fit(&self) -> bool {
        let p = &self.properties;
        let len = |text: Option<&str>| text.map_or(0, str::len);
        let longest = [
            self.exchange.len(),
            self.routing_key.len(),
            len(p.message_id.as_deref()),
            len(p.correlation_id.as_deref()),
            len(p.content_type.as_deref()),
            len(p.content_encoding.as_deref()),
            len(p.kind.as_deref()),
            len(p.app_id.as_deref()),
            len(p.expiration.as_deref()),
            len(p.reply_to.as_deref()),
        ]
        .into_iter()
        .fold(0, usize::max);
        longest <= SHORT_STRING_MAX
            && p.headers.0.iter().all(|(name, value)| {
                name.len() <= SHORT_STRING_MAX
                    && !matches!(value, HeaderValue::Table(_) | HeaderValue::Array(_))
            })
    }

    /// The first of the message's short strings longer than [`SHORT_STRING_MAX`]: what it
    /// is and its length in bytes.
    fn over_long_field(&self) -> Option<(String, usize)> {
        let p = &self.properties;
        let fields = [
            ("exchange", Some(self.exchange.as_ref())),
            ("routing key", Some(self.routing_key.as_ref())),
            ("message id", p.message_id.as_deref()),
            ("correlation id", p.correlation_id.as_deref()),
            ("content type", p.content_type.as_deref()),
            ("content encoding", p.content_encoding.as_deref()),
            ("type", p.kind.as_deref()),
            ("app id", p.app_id.as_deref()),
            ("expiration", p.expiration.as_deref()),
            ("reply-to", p.reply_to.as_deref()),
        ];
        fields
            .into_iter()
            .find_map(|(field, text)| {
                text.filter(|t| t.len() > SHORT_STRING_MAX)
                    .map(|t| (field.to_owned(), t.len()))
            })
            .or_else(|| p.headers.0.iter().find_map(|(n, v)| over_long_entry(n, v)))
    }
}

/// `name` when it is longer than [`SHORT_STRING_MAX`], else the first such name among the
/// tables nested in `value`.
fn over_long_entry(name: &str, value: &HeaderValue) -> Option<(String, usize)> {
    if name.len() > SHORT_STRING_MAX {
        let start: String = name.chars().take(32).collect();
        return Some((format!("header name `{start}…`"), name.len()));
    }
    over_long_nested(value)
}

/// A name that a table nested in `value` holds twice.
fn duplicate_in(value: &HeaderValue) -> Option<&str> {
    match value {
        HeaderValue::Table(entries) => {
            let mut seen = std::collections::HashSet::with_capacity(entries.len());
            entries
                .iter()
                .find_map(|(name, _)| (!seen.insert(name.as_str())).then_some(name.as_str()))
                .or_else(|| entries.iter().find_map(|(_, v)| duplicate_in(v)))
        }
        HeaderValue::Array(items) => items.iter().find_map(duplicate_in),
        _ => None,
    }
}

/// The first name longer than [`SHORT_STRING_MAX`] in the tables nested in `value`.
fn over_long_nested(value: &HeaderValue) -> Option<(String, usize)> {
    match value {
        HeaderValue::Table(entries) => entries.iter().find_map(|(n, v)| over_long_entry(n, v)),
        HeaderValue::Array(items) => items.iter().find_map(over_long_nested),
        _ => None,
    }
}

/// AMQP basic properties, the subset the wire contract uses.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Properties {
    /// `content_type`, `application/json` for events.
    pub content_type: Option<Cow<'static, str>>,
    /// `message_id`, unique per publish; kept on retries and dead letters.
    pub message_id: Option<String>,
    /// `timestamp`, seconds since the Unix epoch.
    pub timestamp: Option<u64>,
    /// `type`: the routing key of the event.
    pub kind: Option<Cow<'static, str>>,
    /// `app_id`: the publishing service.
    pub app_id: Option<Cow<'static, str>>,
    /// `correlation_id`, when the publisher gave one.
    pub correlation_id: Option<String>,
    /// `delivery_mode = 2` when true.
    pub persistent: bool,
    /// `content_encoding`, e.g. `utf-8` (set by Celery and some other publishers).
    pub content_encoding: Option<String>,
    /// `priority`, 0 to 9, for priority queues.
    pub priority: Option<u8>,
    /// `expiration`: a per-message TTL in milliseconds, as text.
    pub expiration: Option<String>,
    /// `reply_to`: where the publisher expects an answer.
    pub reply_to: Option<String>,
    /// Application headers.
    pub headers: Headers,
}

/// A header value: every type an AMQP 0-9-1 field table can carry. Integers of every width
/// are read as [`HeaderValue::Int`] and written as 64-bit integers. Two nested tables are
/// equal when they hold the same names with equal values, in any order, as [`Headers`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum HeaderValue {
    /// A string (AMQP long string); static text is not copied.
    Str(Cow<'static, str>),
    /// A signed integer (AMQP long-long).
    Int(i64),
    /// A boolean.
    Bool(bool),
    /// A floating-point number (AMQP float or double).
    Float(f64),
    /// A decimal: `value / 10^scale`.
    Decimal {
        /// The number of decimal places.
        scale: u8,
        /// The unscaled value.
        value: u32,
    },
    /// A timestamp, seconds since the Unix epoch.
    Timestamp(u64),
    /// Raw bytes (AMQP byte array).
    Bytes(Bytes),
    /// An array of values.
    Array(Vec<HeaderValue>),
    /// A nested table, in order (e.g. RabbitMQ's `x-death` entries).
    Table(Vec<(String, HeaderValue)>),
    /// No value (AMQP void).
    Void,
}

impl HeaderValue {
    /// The text of a string value.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Self::Str(s) => Some(s.as_ref()),
            _ => None,
        }
    }

    /// The size of the value in an AMQP field table, its type byte included.
    pub(crate) fn encoded_len(&self) -> usize {
        1 + match self {
            Self::Str(s) => 4 + s.len(),
            Self::Int(_) | Self::Float(_) | Self::Timestamp(_) => 8,
            Self::Bool(_) => 1,
            Self::Decimal { .. } => 5,
            Self::Bytes(b) => 4 + b.len(),
            Self::Array(items) => 4 + items.iter().map(Self::encoded_len).sum::<usize>(),
            Self::Table(entries) => {
                4 + entries
                    .iter()
                    .map(|(n, v)| 1 + n.len().min(255) + v.encoded_len())
                    .sum::<usize>()
            }
            Self::Void => 0,
        }
    }

    /// What kind of value this is, for errors: `a string`, `an integer`…
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Self::Str(_) => "a string",
            Self::Int(_) => "an integer",
            Self::Bool(_) => "a boolean",
            Self::Float(_) => "a floating-point number",
            Self::Decimal { .. } => "a decimal",
            Self::Timestamp(_) => "a timestamp",
            Self::Bytes(_) => "a byte array",
            Self::Array(_) => "an array",
            Self::Table(_) => "a table",
            Self::Void => "void",
        }
    }

    /// An integer value, or a string holding one.
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Self::Int(i) => Some(*i),
            Self::Str(s) => s.parse().ok(),
            Self::Timestamp(t) => i64::try_from(*t).ok(),
            _ => None,
        }
    }
}

impl fmt::Display for HeaderValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Str(s) => f.write_str(s),
            Self::Int(i) => write!(f, "{i}"),
            Self::Bool(b) => write!(f, "{b}"),
            Self::Float(x) => write!(f, "{x}"),
            Self::Decimal { scale, value } => {
                let divisor = 10f64.powi(i32::from(*scale));
                write!(f, "{}", f64::from(*value) / divisor)
            }
            Self::Timestamp(t) => write!(f, "{t}"),
            Self::Bytes(b) => write!(f, "<{} bytes>", b.len()),
            Self::Array(items) => {
                f.write_str("[")?;
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{item}")?;
                }
                f.write_str("]")
            }
            Self::Table(entries) => {
                f.write_str("{")?;
                for (i, (name, value)) in entries.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{name}: {value}")?;
                }
                f.write_str("}")
            }
            Self::Void => f.write_str("void"),
        }
    }
}

impl From<String> for HeaderValue {
    fn from(v: String) -> Self {
        Self::Str(Cow::Owned(v))
    }
}

impl From<&'static str> for HeaderValue {
    fn from(v: &'static str) -> Self {
        Self::Str(Cow::Borrowed(v))
    }
}

impl From<Cow<'static, str>> for HeaderValue {
    fn from(v: Cow<'static, str>) -> Self {
        Self::Str(v)
    }
}

impl From<i64> for HeaderValue {
    fn from(v: i64) -> Self {
        Self::Int(v)
    }
}

impl From<bool> for HeaderValue {
    fn from(v: bool) -> Self {
        Self::Bool(v)
    }
}

impl Properties {
    /// The size of the content header frame that carries these properties: a message whose
    /// header frame exceeds the connection's `frame_max` cannot be sent (the broker would
    /// close the whole connection with a frame error), and the in-memory broker refuses one
    /// over [`DEFAULT_FRAME_MAX`] alike.
    #[cfg_attr(not(feature = "runtime"), allow(dead_code))]
    pub(crate) fn header_frame_size(&self) -> usize {
        let short_len = |v: &str| 1 + v.len().min(255);
        let texts = [
            self.content_type.as_deref(),
            self.content_encoding.as_deref(),
            self.message_id.as_deref(),
            self.kind.as_deref(),
            self.app_id.as_deref(),
            self.correlation_id.as_deref(),
            self.reply_to.as_deref(),
            self.expiration.as_deref(),
        ];
        // Frame header, class, weight, body size, property flags, frame end.
        let mut size = 7 + 2 + 2 + 8 + 2 + 1;
        size += texts.into_iter().flatten().map(short_len).sum::<usize>();
        size += self.timestamp.map_or(0, |_| 8);
        size += usize::from(self.persistent) + self.priority.map_or(0, |_| 1);
        if !self.headers.is_empty() {
            size += 4;
            for (name, value) in self.headers.iter() {
                size += short_len(name) + value.encoded_len();
            }
        }
        size
    }
}

/// Application headers, in insertion order; names are unique.
///
/// Two header tables are equal when they hold the same names with equal values, in any
/// order: RabbitMQ hands a message's headers (and nested tables) back sorted by name, the
/// in-memory broker in the order they were inserted, and a test comparing what it sent with
/// what it got must pass on both.
#[derive(Debug, Clone, Default)]
pub struct Headers(Vec<(Cow<'static, str>, HeaderValue)>);

impl PartialEq for Headers {
    fn eq(&self, other: &Self) -> bool {
        same_entries(&self.0, &other.0)
    }
}

/// Whether two tables hold the same names with equal values (a table built by hand may name
/// an entry twice: each side is looked up in the other).
fn same_entries<N: AsRef<str>>(a: &[(N, HeaderValue)], b: &[(N, HeaderValue)]) -> bool {
    a.len() == b.len() && contains_all(a, b) && contains_all(b, a)
}

/// Whether every entry of `a` is in `b` with an equal value.
fn contains_all<N: AsRef<str>>(a: &[(N, HeaderValue)], b: &[(N, HeaderValue)]) -> bool {
    a.iter().enumerate().all(|(i, (name, value))| {
        // Most often in the same order: look at the same place first.
        let found = match b.get(i) {
            Some((n, v)) if n.as_ref() == name.as_ref() => Some(v),
            _ => b
                .iter()
                .find(|(n, _)| n.as_ref() == name.as_ref())
                .map(|(_, v)| v),
        };
        found == Some(value)
    })
}

impl PartialEq for HeaderValue {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Str(a), Self::Str(b)) => a == b,
            (Self::Int(a), Self::Int(b)) => a == b,
            (Self::Bool(a), Self::Bool(b)) => a == b,
            (Self::Float(a), Self::Float(b)) => a == b,
            (
                Self::Decimal { scale, value },
                Self::Decimal {
                    scale: other_scale,
                    value: other_value,
                },
            ) => scale == other_scale && value == other_value,
            (Self::Timestamp(a), Self::Timestamp(b)) => a == b,
            (Self::Bytes(a), Self::Bytes(b)) => a == b,
            (Self::Array(a), Self::Array(b)) => a == b,
            (Self::Table(a), Self::Table(b)) => same_entries(a, b),
            (Self::Void, Self::Void) => true,
            _ => false,
        }
    }
}

impl Headers {
    /// No headers.
    pub const fn new() -> Self {
        Self(Vec::new())
    }

    /// No headers, with room for `capacity` of them.
    pub fn with_capacity(capacity: usize) -> Self {
        Self(Vec::with_capacity(capacity))
    }

    /// Sets `name` to `value`, replacing an earlier value.
    pub fn insert(&mut self, name: impl Into<Cow<'static, str>>, value: impl Into<HeaderValue>) {
        let name = name.into();
        let value = value.into();
        match self.0.iter_mut().find(|(n, _)| *n == name) {
            Some(slot) => slot.1 = value,
            None => self.0.push((name, value)),
        }
    }

    /// Adds a header the caller knows is not there yet (the envelope's own, on a new message),
    /// without looking for an earlier value.
    pub(crate) fn append_new(&mut self, name: &'static str, value: impl Into<HeaderValue>) {
        debug_assert!(self.get(name).is_none(), "header {name} set twice");
        self.0.push((Cow::Borrowed(name), value.into()));
    }

    /// Adds a header read from a table whose names are unique (an AMQP field table), without
    /// looking for an earlier value.
    #[cfg_attr(not(feature = "amqp"), allow(dead_code))]
    pub(crate) fn push_unique(&mut self, name: Cow<'static, str>, value: HeaderValue) {
        debug_assert!(self.get(&name).is_none(), "header {name} read twice");
        self.0.push((name, value));
    }

    /// The value of `name`.
    pub fn get(&self, name: &str) -> Option<&HeaderValue> {
        self.0.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }

    /// The value of `name` when it is a string.
    pub fn get_str(&self, name: &str) -> Option<&str> {
        self.get(name)?.as_str()
    }

    /// The value of `name` when it is an integer (or a string holding one).
    pub fn get_int(&self, name: &str) -> Option<i64> {
        self.get(name)?.as_int()
    }

    /// Removes `name`, returning its value.
    pub fn remove(&mut self, name: &str) -> Option<HeaderValue> {
        let at = self.0.iter().position(|(n, _)| n == name)?;
        Some(self.0.remove(at).1)
    }

    /// Every header, in insertion order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &HeaderValue)> {
        self.0.iter().map(|(n, v)| (n.as_ref(), v))
    }

    /// The number of headers.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are no headers.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::PublishError;

    #[test]
    fn an_expiration_is_milliseconds_up_to_u32_max() {
        let mut message = message_with("h", HeaderValue::Int(1));
        for (expiration, ok) in [
            ("0", true),
            ("4294967295", true),
            ("4294967296", false),
            ("", false),
            ("-1", false),
            ("1.5", false),
            ("abc", false),
        ] {
            message.properties.expiration = Some(expiration.to_owned());
            let checked = message.check_short_strings();
            assert_eq!(checked.is_ok(), ok, "{expiration:?}: {checked:?}");
            if !ok {
                assert!(
                    matches!(checked, Err(PublishError::InvalidExpiration { .. })),
                    "{expiration:?}"
                );
            }
        }
        message.properties.expiration = Some("9".repeat(SHORT_STRING_MAX + 1));
        assert!(matches!(
            message.check_short_strings(),
            Err(PublishError::InvalidExpiration { .. })
        ));
    }

    #[test]
    fn headers_are_equal_in_any_order_but_not_with_other_values() {
        let table = |entries: &[(&str, i64)]| {
            HeaderValue::Table(
                entries
                    .iter()
                    .map(|(n, v)| ((*n).to_owned(), HeaderValue::Int(*v)))
                    .collect(),
            )
        };
        let mut a = Headers::new();
        a.insert("z", "last");
        a.insert("a", table(&[("y", 1), ("b", 2)]));
        let mut b = Headers::new();
        b.insert("a", table(&[("b", 2), ("y", 1)]));
        b.insert("z", "last");
        assert_eq!(a, b);
        let mut c = b.clone();
        c.insert("a", table(&[("b", 2), ("y", 3)]));
        assert_ne!(a, c);
        let mut d = b.clone();
        d.insert("extra", true);
        assert_ne!(a, d);
        assert_ne!(d, a);
        // A table naming an entry twice (built by hand) is compared both ways.
        let twice = HeaderValue::Table(vec![
            ("x".into(), HeaderValue::Int(1)),
            ("x".into(), HeaderValue::Int(1)),
        ]);
        let other = HeaderValue::Table(vec![
            ("x".into(), HeaderValue::Int(1)),
            ("y".into(), HeaderValue::Int(2)),
        ]);
        assert_ne!(twice, other);
        assert_ne!(other, twice);
        // Arrays keep their order.
        let array = |items: &[i64]| {
            HeaderValue::Array(items.iter().copied().map(HeaderValue::Int).collect())
        };
        assert_ne!(array(&[1, 2]), array(&[2, 1]));
    }

    fn message_with(name: &str, value: HeaderValue) -> Message {
        let mut message = Message {
            exchange: Cow::Borrowed("x"),
            routing_key: Cow::Borrowed("a.v1.b"),
            body: Bytes::new(),
            properties: Properties::default(),
        };
        message.properties.headers.insert(name.to_owned(), value);
        message
    }

    fn too_long(message: &Message) -> Option<(String, usize)> {
        match message.check_short_strings() {
            Ok(()) => None,
            Err(PublishError::TooLong { field, len, .. }) => Some((field, len)),
            Err(other) => panic!("{other:?}"),
        }
    }

    #[test]
    fn names_nested_in_tables_and_arrays_are_short_strings_too() {
        let long = "n".repeat(SHORT_STRING_MAX + 1);
        let fits = "n".repeat(SHORT_STRING_MAX);
        let nested = |name: &str| {
            HeaderValue::Array(vec![
                HeaderValue::Int(1),
                HeaderValue::Table(vec![(
                    "outer".to_owned(),
                    HeaderValue::Table(vec![(name.to_owned(), HeaderValue::Void)]),
                )]),
            ])
        };
        let (field, len) = too_long(&message_with("h", nested(&long))).unwrap();
        assert!(field.starts_with("header name `nnn"), "{field}");
        assert_eq!(len, SHORT_STRING_MAX + 1);
        assert_eq!(too_long(&message_with("h", nested(&fits))), None);
        assert_eq!(
            too_long(&message_with(&long, HeaderValue::Int(1))).map(|(_, len)| len),
            Some(SHORT_STRING_MAX + 1)
        );
        // A long value is not a name: header values are long strings in AMQP.
        assert_eq!(
            too_long(&message_with("h", HeaderValue::from(long.clone()))),
            None
        );
    }

    /// An AMQP field table holds a name once: RabbitMQ would get one of two values.
    #[test]
    fn a_table_naming_an_entry_twice_is_refused() {
        let twice = HeaderValue::Array(vec![HeaderValue::Table(vec![
            ("a".to_owned(), HeaderValue::Int(1)),
            (
                "inner".to_owned(),
                HeaderValue::Table(vec![
                    ("b".to_owned(), HeaderValue::Int(1)),
                    ("b".to_owned(), HeaderValue::Int(2)),
                ]),
            ),
        ])]);
        match message_with("h", twice).check_short_strings() {
            Err(PublishError::DuplicateHeader { name, .. }) => assert_eq!(name, "b"),
            other => panic!("{other:?}"),
        }
        let once = HeaderValue::Table(vec![
            ("a".to_owned(), HeaderValue::Int(1)),
            ("b".to_owned(), HeaderValue::Int(2)),
        ]);
        assert!(message_with("h", once).check_short_strings().is_ok());
    }

    #[test]
    fn every_text_property_is_checked() {
        let long = "p".repeat(SHORT_STRING_MAX + 1);
        type Set = fn(&mut Message, String);
        // (An expiration that long is no number of milliseconds: `InvalidExpiration`, below.)
        let setters: [(&str, Set); 9] = [
            ("exchange", |m, t| m.exchange = t.into()),
            ("routing key", |m, t| m.routing_key = t.into()),
            ("message id", |m, t| m.properties.message_id = Some(t)),
            ("correlation id", |m, t| {
                m.properties.correlation_id = Some(t)
            }),
            ("content type", |m, t| {
                m.properties.content_type = Some(t.into())
            }),
            ("content encoding", |m, t| {
                m.properties.content_encoding = Some(t)
            }),
            ("type", |m, t| m.properties.kind = Some(t.into())),
            ("app id", |m, t| m.properties.app_id = Some(t.into())),
            ("reply-to", |m, t| m.properties.reply_to = Some(t)),
        ];
        for (name, set) in setters {
            let mut message = message_with("h", HeaderValue::Int(1));
            assert_eq!(too_long(&message), None);
            set(&mut message, long.clone());
            assert_eq!(
                too_long(&message),
                Some((name.to_owned(), SHORT_STRING_MAX + 1)),
                "{name}"
            );
        }
    }
}
