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

mod key;
mod pattern;
pub(crate) mod trie;

pub(crate) use key::copy;
pub use key::{EventKey, RoutingKey};
pub use pattern::BindingPattern;

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
        if !WORD_BYTE[word[i] as usize] {
            return false;
        }
        i += 1;
    }
    true
}

/// Which bytes a word may hold, by value: one load per byte instead of four comparisons, as
/// the consumer checks the words of every message's key.
const WORD_BYTE: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let byte = b as u8;
        table[b] = byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-';
        b += 1;
    }
    table
};

pub(crate) fn validate_common(what: &'static str, value: &str) -> Result<(), RoutingError> {
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
