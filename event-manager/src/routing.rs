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
    /// follows the `<exchange>.v<major>.<event>` scheme.
    pub fn major_version(&self) -> Option<u64> {
        major_from_key(&self.0)
    }
}

/// Reads the `v<major>` word of a `<exchange>.v<major>.<event>` key.
pub(crate) fn major_from_key(key: &str) -> Option<u64> {
    let bytes = key.as_bytes();
    let start = bytes.iter().position(|&b| b == b'.')? + 1;
    let word = bytes[start..].split(|&b| b == b'.').next()?;
    let digits = word.strip_prefix(b"v")?;
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u64, |major, &b| {
        let digit = b.checked_sub(b'0').filter(|d| *d <= 9)?;
        major.checked_mul(10)?.checked_add(u64::from(digit))
    })
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
        assert_eq!(major_from_key("order.v1.submit"), Some(1));
        assert_eq!(major_from_key("order.v12.submit"), Some(12));
        assert_eq!(major_from_key("order.x1.submit"), None);
        assert_eq!(major_from_key("order.v.submit"), None);
        assert_eq!(major_from_key("order"), None);
        assert_eq!(major_from_key("order.v1"), Some(1));
        assert_eq!(major_from_key("order.v1a.submit"), None);
        assert_eq!(major_from_key("order.v-1.submit"), None);
        assert_eq!(major_from_key("order.v99999999999999999999.submit"), None);
        assert_eq!(major_from_key(".v3.x"), Some(3));
    }
}
