//! [`BindingPattern`]: topic binding patterns and RabbitMQ's matching rules.

use std::fmt;
use std::str::FromStr;

use super::{RoutingError, RoutingKey, is_valid_word, validate_common};

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
        validate_common(WHAT, pattern)?;
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
            text: key.as_str().to_owned(),
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
}
