//! [`RoutingKey`] and [`EventKey`]: validated keys and the `<exchange>.v<major>.<event>` scheme.

use std::fmt;
use std::str::FromStr;

use super::{MAX_KEY_LEN, RoutingError, is_valid_word, validate_common};

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
        validate_common(WHAT, key)?;
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
        // One pass over the bytes: the consumer reads the key of every message.
        let bytes = key.as_bytes();
        if bytes.len() > MAX_KEY_LEN {
            return None;
        }
        // The exchange: a word up to the first dot.
        let dot = bytes.iter().position(|&b| b == b'.')?;
        if !is_valid_word(&bytes[..dot]) || bytes.get(dot + 1) != Some(&b'v') {
            return None;
        }
        // The major: decimal digits after the `v`, without a leading zero, fitting a u64.
        let digits = dot + 2;
        let mut at = digits;
        let mut major: u64 = 0;
        while let Some(&b) = bytes.get(at).filter(|b| b.is_ascii_digit()) {
            major = major.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
            at += 1;
        }
        let count = at - digits;
        if count == 0 || (count > 1 && bytes[digits] == b'0') || bytes.get(at) != Some(&b'.') {
            return None;
        }
        // The event: one word to the end (a further dot is not a word character).
        if !is_valid_word(&bytes[at + 1..]) {
            return None;
        }
        Some(Self::new(&key[..dot], major, &key[at + 1..]))
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

#[cfg(test)]
mod tests {
    use super::*;

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
