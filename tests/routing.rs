//! Topic matching: property tests against a reference matcher written straight from the AMQP
//! definition (`*` exactly one word, `#` zero or more words).

use event_manager::{BindingPattern, RoutingKey};
use proptest::prelude::*;

/// The definition, as plainly as possible: recursive, exponential, obviously right.
fn reference(pattern: &[&str], key: &[&str]) -> bool {
    match pattern.split_first() {
        None => key.is_empty(),
        Some((&"#", rest)) => (0..=key.len()).any(|skip| reference(rest, &key[skip..])),
        Some((&"*", rest)) => !key.is_empty() && reference(rest, &key[1..]),
        Some((word, rest)) => key.first() == Some(word) && reference(rest, &key[1..]),
    }
}

fn words(text: &str) -> Vec<&str> {
    if text.is_empty() {
        Vec::new()
    } else {
        text.split('.').collect()
    }
}

fn pattern_strategy() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(vec!["a", "b", "c", "*", "#"]), 1..7)
        .prop_map(|w| w.join("."))
}

fn key_strategy() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(vec!["a", "b", "c"]), 0..7).prop_map(|w| w.join("."))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4000))]

    #[test]
    fn matcher_agrees_with_the_definition(pattern in pattern_strategy(), key in key_strategy()) {
        let parsed = BindingPattern::parse(&pattern).unwrap();
        prop_assert_eq!(
            parsed.matches(&key),
            reference(&words(&pattern), &words(&key)),
            "pattern {} key {:?}", pattern, key
        );
    }

    #[test]
    fn a_key_always_matches_itself_and_hash(key in key_strategy().prop_filter("non-empty", |k| !k.is_empty())) {
        let routing_key = RoutingKey::parse(&key).unwrap();
        prop_assert!(BindingPattern::exact(&routing_key).matches(&key));
        prop_assert!(BindingPattern::parse("#").unwrap().matches(&key));
    }

    #[test]
    fn star_matches_exactly_one_word(key in key_strategy()) {
        let stars = vec!["*"; words(&key).len().max(1)].join(".");
        let parsed = BindingPattern::parse(&stars).unwrap();
        prop_assert_eq!(parsed.matches(&key), !key.is_empty());
    }
}

#[test]
fn zero_word_hash_cases() {
    let cases = [
        ("order.#", "order", true),
        ("#.submit", "submit", true),
        ("a.#.c", "a.c", true),
        ("#", "order.v1.submit", true),
        ("#", "", true),
        ("order.*", "order", false),
        ("*", "", false),
        ("order.*.submit", "order.submit", false),
    ];
    for (pattern, key, expected) in cases {
        let parsed = BindingPattern::parse(pattern).unwrap();
        assert_eq!(parsed.matches(key), expected, "{pattern} vs {key:?}");
        assert_eq!(reference(&words(pattern), &words(key)), expected);
    }
}
