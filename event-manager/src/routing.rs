//! Routing keys, binding patterns and the AMQP topic matching rules.
//!
//! This module is the one place that knows how RabbitMQ matches a routing key against a topic
//! binding pattern. Both the in-memory broker and the consumer's dispatch use it, and a
//! differential test checks it against a real RabbitMQ.
//!
//! * A routing key is a list of words separated by dots: `order.v1.submit`.
//! * In a binding pattern, `*` matches exactly one word and `#` matches zero or more words.
//!   So `order.#` matches `order`, `#.submit` matches `submit`, `a.#.c` matches `a.c`,
//!   `#` matches every key and `order.*` does not match `order`.
//!
//! ```
//! use event_manager::BindingPattern;
//!
//! let billing: BindingPattern = "order.*.submit".parse()?;
//! assert!(billing.matches("order.v1.submit"));
//! assert!(billing.matches("order.v2.submit"));
//! assert!(!billing.matches("order.v1.chargeback"));
//!
//! let logistics: BindingPattern = "order.#".parse()?;
//! assert!(logistics.matches("order"));
//! assert!(logistics.matches("order.v1.chargeback"));
//! # Ok::<(), event_manager::RoutingError>(())
//! ```

use std::fmt;
use std::str::FromStr;

/// The longest routing key or binding pattern RabbitMQ accepts, in bytes.
pub const MAX_KEY_LEN: usize = 255;

/// Why a routing key or a binding pattern was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RoutingError {
    /// The key or pattern is empty.
    #[error("{what} is empty")]
    Empty {
        /// `"routing key"` or `"binding pattern"`.
        what: &'static str,
    },
    /// The key or pattern is longer than [`MAX_KEY_LEN`] bytes.
    #[error("{what} `{value}` is {len} bytes long; RabbitMQ accepts at most 255")]
    TooLong {
        /// `"routing key"` or `"binding pattern"`.
        what: &'static str,
        /// The offending text.
        value: String,
        /// Its length in bytes.
        len: usize,
    },
    /// A word between two dots is empty (`order..submit`, `.order`, `order.`).
    #[error("{what} `{value}` has an empty word; words are separated by single dots")]
    EmptyWord {
        /// `"routing key"` or `"binding pattern"`.
        what: &'static str,
        /// The offending text.
        value: String,
    },
    /// A word contains a character outside `A-Z a-z 0-9 _ -`, or a wildcard where none is allowed.
    #[error(
        "{what} `{value}` has an invalid word `{word}`: use letters, digits, `_` or `-`{wildcards}"
    )]
    InvalidWord {
        /// `"routing key"` or `"binding pattern"`.
        what: &'static str,
        /// The offending text.
        value: String,
        /// The offending word.
        word: String,
        /// A hint about wildcards, empty when none applies.
        wildcards: &'static str,
    },
}

/// Checks one word of a routing key: `A-Z a-z 0-9 _ -`, not empty.
pub(crate) const fn is_valid_word(word: &[u8]) -> bool {
    if word.is_empty() {
        return false;
    }
    let mut i = 0;
    while i < word.len() {
        let b = word[i];
        if !(b.is_ascii_alphanumeric() || b == b'_' || b == b'-') {
            return false;
        }
        i += 1;
    }
    true
}

fn check_common(what: &'static str, value: &str) -> Result<(), RoutingError> {
    if value.is_empty() {
        return Err(RoutingError::Empty { what });
    }
    if value.len() > MAX_KEY_LEN {
        return Err(RoutingError::TooLong {
            what,
            value: value.to_owned(),
            len: value.len(),
        });
    }
    if value.split('.').any(str::is_empty) {
        return Err(RoutingError::EmptyWord {
            what,
            value: value.to_owned(),
        });
    }
    Ok(())
}

/// A validated routing key: dot-separated words of `A-Z a-z 0-9 _ -`, at most 255 bytes, no
/// wildcards. Events are published with keys of the form `<exchange>.v<major>.<event>`.
///
/// ```
/// use event_manager::RoutingKey;
///
/// let key: RoutingKey = "order.v1.submit".parse()?;
/// assert_eq!(key.words().collect::<Vec<_>>(), ["order", "v1", "submit"]);
/// assert!("order.*.submit".parse::<RoutingKey>().is_err());
/// # Ok::<(), event_manager::RoutingError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RoutingKey(String);

impl RoutingKey {
    /// Validates `key`.
    pub fn parse(key: &str) -> Result<Self, RoutingError> {
        const WHAT: &str = "routing key";
        check_common(WHAT, key)?;
        if let Some(word) = key.split('.').find(|w| !is_valid_word(w.as_bytes())) {
            return Err(RoutingError::InvalidWord {
                what: WHAT,
                value: key.to_owned(),
                word: word.to_owned(),
                wildcards: if word.contains(['*', '#']) {
                    "; wildcards belong in binding patterns"
                } else {
                    ""
                },
            });
        }
        Ok(Self(key.to_owned()))
    }

    /// The key as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The words of the key, in order.
    pub fn words(&self) -> impl Iterator<Item = &str> {
        self.0.split('.')
    }

    /// The major version named by the second word (`v2` in `order.v2.submit`), if the key
    /// is an event's key `<exchange>.v<major>.<event>` (see [`EventKey::parse`]).
    pub fn major_version(&self) -> Option<u64> {
        self.event_key().map(|k| k.major())
    }

    /// The key read as `<exchange>.v<major>.<event>`, if it is an event's key.
    pub fn event_key(&self) -> Option<EventKey<'_>> {
        EventKey::parse(&self.0)
    }
}

/// The routing key of one event, `<exchange>.v<major>.<event>` (`order.v1.submit`): the one
/// place that builds, parses and formats that scheme.
///
/// [`EventKey::new`] and [`EventKey::to_bytes`] are `const fn`, so `#[derive(Event)]` builds
/// every key at compile time; [`EventKey::parse`] reads a key without allocating, so the
/// consumer can look at every message's key for free; `Display` writes it.
///
/// A key has one spelling, the one `Display` writes, and [`EventKey::parse`] accepts only that:
///
/// * exactly three words: `order.v1` and `order.v1.submit.extra` are not event keys;
/// * the exchange and the event are words of `A-Z a-z 0-9 _ -`;
/// * the major is `v` and a decimal number without leading zeros (`v0`, `v1`, `v12`, not
///   `v01`, `v`, `vx` or `V1`) that fits in a `u64`;
/// * the whole key is a valid [`RoutingKey`] (at most [`MAX_KEY_LEN`] bytes).
///
/// ```
/// use event_manager::routing::EventKey;
///
/// const SUBMIT: EventKey<'static> = EventKey::new("order", 1, "submit");
/// assert_eq!(SUBMIT.to_string(), "order.v1.submit");
///
/// let key = EventKey::parse("order.v12.submit").unwrap();
/// assert_eq!((key.exchange(), key.major(), key.event()), ("order", 12, "submit"));
/// assert_eq!(EventKey::parse("order.v01.submit"), None);
/// assert_eq!(EventKey::parse("billing.retry.100ms"), None);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EventKey<'a> {
    exchange: &'a str,
    major: u64,
    event: &'a str,
}

impl<'a> EventKey<'a> {
    /// The key of `event` of major version `major` on `exchange`. The words are not checked
    /// here: `Exchange::topic` and `#[derive(Event)]` check them.
    pub const fn new(exchange: &'a str, major: u64, event: &'a str) -> Self {
        Self {
            exchange,
            major,
            event,
        }
    }

    /// Reads `key` as `<exchange>.v<major>.<event>`; `None` when it is not of that form (see
    /// the rules on [`EventKey`]). Does not allocate.
    pub fn parse(key: &'a str) -> Option<Self> {
        if key.len() > MAX_KEY_LEN {
            return None;
        }
        let mut words = key.split('.');
        let (exchange, version, event) = (words.next()?, words.next()?, words.next()?);
        if words.next().is_some()
            || !is_valid_word(exchange.as_bytes())
            || !is_valid_word(event.as_bytes())
        {
            return None;
        }
        let digits = version.strip_prefix('v')?;
        if digits.is_empty()
            || (digits.len() > 1 && digits.starts_with('0'))
            || !digits.bytes().all(|b| b.is_ascii_digit())
        {
            return None;
        }
        Some(Self::new(exchange, digits.parse().ok()?, event))
    }

    /// The exchange, the first word (`order`).
    pub const fn exchange(&self) -> &'a str {
        self.exchange
    }

    /// The major version, the number in the second word (`1` in `v1`).
    pub const fn major(&self) -> u64 {
        self.major
    }

    /// The event name, the last word (`submit`).
    pub const fn event(&self) -> &'a str {
        self.event
    }

    /// Whether `other` is the same event (exchange and name) in any major.
    pub fn same_event(&self, other: &EventKey<'_>) -> bool {
        self.exchange == other.exchange && self.event == other.event
    }

    /// The length of the key in bytes.
    #[allow(clippy::len_without_is_empty)]
    pub const fn len(&self) -> usize {
        self.exchange.len() + ".v".len() + digits(self.major) + ".".len() + self.event.len()
    }

    /// The key as bytes, for building it in a `const`.
    ///
    /// # Panics
    ///
    /// When `N` is not [`EventKey::len`]; in a `const` this is a compile error.
    pub const fn to_bytes<const N: usize>(&self) -> [u8; N] {
        assert!(N == self.len(), "N must be the length of the event key");
        let mut out = [0u8; N];
        let mut at = copy(&mut out, 0, self.exchange.as_bytes());
        at = copy(&mut out, at, b".v");
        let d = digits(self.major);
        let mut i = 0;
        let mut m = self.major;
        while i < d {
            out[at + d - 1 - i] = b'0' + (m % 10) as u8;
            m /= 10;
            i += 1;
        }
        at += d;
        at = copy(&mut out, at, b".");
        copy(&mut out, at, self.event.as_bytes());
        out
    }
}

impl fmt::Display for EventKey<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.v{}.{}", self.exchange, self.major, self.event)
    }
}

/// The number of decimal digits of `n`.
const fn digits(mut n: u64) -> usize {
    let mut d = 1;
    while n >= 10 {
        n /= 10;
        d += 1;
    }
    d
}

/// Copies `from` into `out` at `at`; returns the position after it.
pub(crate) const fn copy(out: &mut [u8], at: usize, from: &[u8]) -> usize {
    let mut i = 0;
    while i < from.len() {
        out[at + i] = from[i];
        i += 1;
    }
    at + from.len()
}

impl FromStr for RoutingKey {
    type Err = RoutingError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for RoutingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for RoutingKey {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Word {
    Literal(Box<str>),
    /// `*`: exactly one word.
    One,
    /// `#`: zero or more words.
    Any,
}

/// A validated AMQP topic binding pattern, such as `order.*.submit` or `order.#`.
///
/// Words are `*` (exactly one word), `#` (zero or more words) or literal words of
/// `A-Z a-z 0-9 _ -`. [`BindingPattern::matches`] follows RabbitMQ's topic exchange exactly.
#[derive(Debug, Clone)]
pub struct BindingPattern {
    text: String,
    words: Box<[Word]>,
}

impl PartialEq for BindingPattern {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

impl Eq for BindingPattern {}

impl std::hash::Hash for BindingPattern {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.text.hash(state);
    }
}

impl BindingPattern {
    /// Validates `pattern`.
    pub fn parse(pattern: &str) -> Result<Self, RoutingError> {
        const WHAT: &str = "binding pattern";
        check_common(WHAT, pattern)?;
        let mut words = Vec::new();
        for word in pattern.split('.') {
            words.push(match word {
                "*" => Word::One,
                "#" => Word::Any,
                w if is_valid_word(w.as_bytes()) => Word::Literal(w.into()),
                w => {
                    return Err(RoutingError::InvalidWord {
                        what: WHAT,
                        value: pattern.to_owned(),
                        word: w.to_owned(),
                        wildcards: if w.contains(['*', '#']) {
                            "; a wildcard `*` or `#` must be a whole word"
                        } else {
                            ""
                        },
                    });
                }
            });
        }
        Ok(Self {
            text: pattern.to_owned(),
            words: words.into_boxed_slice(),
        })
    }

    /// The pattern that matches exactly `key`.
    pub fn exact(key: &RoutingKey) -> Self {
        Self {
            text: key.0.clone(),
            words: key.words().map(|w| Word::Literal(w.into())).collect(),
        }
    }

    /// The pattern as text.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether the pattern has a `*` or `#` word.
    pub fn has_wildcards(&self) -> bool {
        self.words.iter().any(|w| !matches!(w, Word::Literal(_)))
    }

    /// Whether a message published with routing key `key` reaches a queue bound with this
    /// pattern. `key` may be any text a broker accepts, not only a valid [`RoutingKey`]: as in
    /// RabbitMQ, the empty key has zero words and `a..b` has an empty middle word.
    pub fn matches(&self, key: &str) -> bool {
        matches_words(&self.words, key)
    }
}

/// Glob matching over words, with `#` as the multi-word star and `*` as the single-word joker:
/// linear in the usual case, backtracking only to the last `#` seen.
fn matches_words(pattern: &[Word], key: &str) -> bool {
    let bytes = key.as_bytes();
    // Position of the next unread word; past the end when every word was read.
    let end_of = |pos: usize| {
        bytes[pos..]
            .iter()
            .position(|&b| b == b'.')
            .map_or(bytes.len(), |i| pos + i)
    };
    let exhausted = |pos: usize| pos > bytes.len();
    let mut pos = if key.is_empty() { 1 } else { 0 };
    let mut p = 0;
    // The last `#` seen and the key position it was tried at.
    let mut backtrack: Option<(usize, usize)> = None;
    while !exhausted(pos) {
        let end = end_of(pos);
        match pattern.get(p) {
            Some(Word::Any) => {
                backtrack = Some((p, pos));
                p += 1;
                continue;
            }
            Some(Word::One) => {
                p += 1;
                pos = end + 1;
                continue;
            }
            Some(Word::Literal(w)) if w.as_bytes() == &bytes[pos..end] => {
                p += 1;
                pos = end + 1;
                continue;
            }
            _ => {}
        }
        match backtrack {
            Some((hash, tried)) => {
                // Let the `#` swallow one more word and retry the rest of the pattern.
                let next = end_of(tried) + 1;
                backtrack = Some((hash, next));
                p = hash + 1;
                pos = next;
            }
            None => return false,
        }
    }
    pattern[p..].iter().all(|w| matches!(w, Word::Any))
}

impl FromStr for BindingPattern {
    type Err = RoutingError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for BindingPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(pattern: &str, key: &str) -> bool {
        BindingPattern::parse(pattern).unwrap().matches(key)
    }

    #[test]
    fn table_of_cases() {
        let cases: &[(&str, &str, bool)] = &[
            ("order.v1.submit", "order.v1.submit", true),
            ("order.v1.submit", "order.v1.chargeback", false),
            ("order.*.submit", "order.v1.submit", true),
            ("order.*.submit", "order.v2.submit", true),
            ("order.*.submit", "order.submit", false),
            ("order.*.submit", "order.v1.x.submit", false),
            ("order.#", "order", true),
            ("order.#", "order.v1", true),
            ("order.#", "order.v1.submit", true),
            ("order.#", "orders.v1.submit", false),
            ("#.submit", "submit", true),
            ("#.submit", "order.v1.submit", true),
            ("#.submit", "order.v1.submitted", false),
            ("a.#.c", "a.c", true),
            ("a.#.c", "a.b.c", true),
            ("a.#.c", "a.b.b.c", true),
            ("a.#.c", "a.b.c.d", false),
            ("#", "", true),
            ("#", "a", true),
            ("#", "a.b.c", true),
            ("*", "", false),
            ("*", "a", true),
            ("*", "a.b", false),
            ("order.*", "order", false),
            ("#.#", "", true),
            ("#.#", "a.b", true),
            ("#.*", "", false),
            ("#.*", "a", true),
            ("*.#", "a", true),
            ("*.#", "", false),
            ("a.#.#.b", "a.b", true),
            ("#.a.#", "x.a.y", true),
            ("#.a.#", "x.b.y", false),
            ("a.*.#.c", "a.b.c", true),
            ("a.*.#.c", "a.c", false),
            ("#.b.#.d", "a.b.c.b.d", true),
            ("*.*", "a..", false),
            ("a.*", "a.", true),
            ("#.c", "a.b.c.c", true),
        ];
        for &(pattern, key, expected) in cases {
            assert_eq!(m(pattern, key), expected, "{pattern} vs {key:?}");
        }
    }

    #[test]
    fn invalid_patterns_and_keys() {
        for bad in ["", "a..b", ".a", "a.", "a.b*", "a.#b", "a b", "a.ü"] {
            assert!(BindingPattern::parse(bad).is_err(), "{bad}");
        }
        for bad in ["", "a..b", "a.*", "a.#", "a b", &"x".repeat(256)] {
            assert!(RoutingKey::parse(bad).is_err(), "{bad}");
        }
        let err = RoutingKey::parse("order.*.submit").unwrap_err();
        assert!(
            err.to_string()
                .contains("wildcards belong in binding patterns")
        );
    }

    #[test]
    fn major_from_routing_key() {
        let major = |key: &str| RoutingKey::parse(key).unwrap().major_version();
        assert_eq!(major("order.v1.submit"), Some(1));
        assert_eq!(major("order.v12.submit"), Some(12));
        assert_eq!(major("order.v0.submit"), Some(0));
        assert_eq!(major("order.x1.submit"), None);
        assert_eq!(major("order.v.submit"), None);
        assert_eq!(major("order"), None);
        assert_eq!(major("order.v1"), None);
        assert_eq!(major("order.v1a.submit"), None);
        assert_eq!(major("order.v-1.submit"), None);
        assert_eq!(major("order.v99999999999999999999.submit"), None);
    }

    #[test]
    fn event_key_round_trip() {
        for (exchange, major, event) in [
            ("order", 1, "submit"),
            ("order", 0, "submit"),
            ("order", 10, "charge_back"),
            ("Billing-2", 123_456, "x"),
            ("a", u64::MAX, "b"),
        ] {
            let key = EventKey::new(exchange, major, event);
            let text = key.to_string();
            assert_eq!(text.len(), key.len(), "{text}");
            assert_eq!(EventKey::parse(&text), Some(key), "{text}");
            assert_eq!(RoutingKey::parse(&text).unwrap().event_key(), Some(key));
        }
        const KEY: EventKey<'static> = EventKey::new("order", 12, "submit");
        const BYTES: [u8; KEY.len()] = KEY.to_bytes::<{ KEY.len() }>();
        assert_eq!(&BYTES, b"order.v12.submit");
    }

    #[test]
    fn event_key_edge_cases() {
        fn parsed(key: &str) -> Option<(&str, u64, &str)> {
            EventKey::parse(key).map(|k| (k.exchange(), k.major(), k.event()))
        }
        assert_eq!(parsed("order.v1.submit"), Some(("order", 1, "submit")));
        assert_eq!(parsed("order.v0.submit"), Some(("order", 0, "submit")));
        // One spelling per key: a leading zero is not what `Display` writes.
        assert_eq!(parsed("order.v01.submit"), None);
        assert_eq!(parsed("order.v00.submit"), None);
        for bad in [
            "order.vx.submit",
            "order.v.submit",
            "order.V1.submit",
            "order.1.submit",
            "order.v1x.submit",
            "order.v+1.submit",
            "order.v-1.submit",
            "order.v18446744073709551616.submit",
            "order.v1",
            "order.submit",
            "order",
            "",
            "order.v1.submit.extra",
            "order.v1.x.submit",
            ".v1.submit",
            "order.v1.",
            "order..submit",
            "or der.v1.submit",
            "order.v1.*",
            "#.v1.submit",
            "billing.retry.100ms",
        ] {
            assert_eq!(EventKey::parse(bad), None, "{bad:?}");
        }
        let long = format!("{}.v1.submit", "x".repeat(MAX_KEY_LEN));
        assert_eq!(EventKey::parse(&long), None);
    }
}
