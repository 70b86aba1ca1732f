//! Validating a parsed [`Contract`]: required keys, semver, event names, duplicates.

use std::collections::HashSet;

use syn::spanned::Spanned;
use syn::{DeriveInput, Expr};

use crate::attr::Contract;
use crate::ctxt::Ctxt;

/// A contract that passed every check.
pub struct Valid {
    pub exchange: Expr,
    pub version: String,
    pub major: u64,
    pub names: Vec<String>,
}

/// Rust's strict and reserved keywords (edition 2024): none can name a method, and the derive
/// generates one per event (`order.submit(&bus)`).
const KEYWORDS: &[&str] = &[
    "as", "async", "await", "break", "const", "continue", "crate", "dyn", "else", "enum", "extern",
    "false", "fn", "for", "if", "impl", "in", "let", "loop", "match", "mod", "move", "mut", "pub",
    "ref", "return", "self", "Self", "static", "struct", "super", "trait", "true", "type",
    "unsafe", "use", "where", "while", "abstract", "become", "box", "do", "final", "gen", "macro",
    "override", "priv", "try", "typeof", "unsized", "virtual", "yield",
];

pub fn is_keyword(name: &str) -> bool {
    KEYWORDS.contains(&name)
}

/// Whether `name` can name an exchange: one word of `A-Z a-z 0-9 _ -`, as
/// `Exchange::topic` requires.
fn is_exchange_word(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// The longest routing key AMQP carries (a short string).
const MAX_KEY_BYTES: usize = 255;

fn is_event_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b'a'..=b'z'))
        && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// Checks `contract`, reporting every problem into `cx`; `None` when any was found (here or
/// while parsing).
pub fn validate(cx: &Ctxt, input: &DeriveInput, contract: &Contract) -> Option<Valid> {
    if !input.generics.params.is_empty() {
        cx.error_spanned_at(
            input.generics.params[0].span(),
            "#[derive(Event)] does not support generic payload types: a contract has one concrete schema",
        );
    }
    // Without the attribute, its parts are not reported missing one by one.
    if contract.saw_attr && contract.exchange.is_none() && !contract.is_malformed("exchange") {
        cx.error_spanned_at(
            contract.attr_span,
            "missing `exchange = ...` in #[event(...)], e.g. `exchange = ORDER` where `const ORDER: Exchange = Exchange::topic(\"order\")`",
        );
    }
    let mut version = None;
    match &contract.version {
        None if contract.saw_attr && !contract.is_malformed("version") => cx.error_spanned_at(
            contract.attr_span,
            "missing `version = \"MAJOR.MINOR.PATCH\"` in #[event(...)]",
        ),
        None => {}
        Some(lit) => match semver::Version::parse(&lit.value()) {
            Ok(v) => version = Some(v),
            Err(e) => cx.error_spanned_at(
                lit.span(),
                format!(
                    "`{}` is not a semver version ({e}); write e.g. \"1.2.0\"",
                    lit.value()
                ),
            ),
        },
    }
    if contract.saw_attr
        && contract.names.is_empty()
        && !contract.is_malformed("events")
        && !contract.is_malformed("name")
    {
        cx.error_spanned_at(
            contract.attr_span,
            "no event named in #[event(...)]: add `events(submit, ...)` or `name = \"submit\"`",
        );
    }
    let mut seen = HashSet::new();
    for n in &contract.names {
        if n.name.contains('.') || n.name.contains('*') || n.name.contains('#') {
            cx.error_spanned_at(
                n.span,
                format!(
                    "event name `{}` must be one word: no `.`, `*` or `#` (the routing key `<exchange>.v<major>.<event>` adds the dots)",
                    n.name
                ),
            );
        } else if !is_event_name(&n.name) {
            cx.error_spanned_at(
                n.span,
                format!(
                    "event name `{}` must be a lower-case word of `a-z 0-9 _` starting with a letter",
                    n.name
                ),
            );
        } else if is_keyword(&n.name) {
            cx.error_spanned_at(
                n.span,
                format!(
                    "event name `{}` is a Rust keyword and cannot name the publish method `.{}(&bus)`; choose another word",
                    n.name, n.name
                ),
            );
        } else if !seen.insert(n.name.clone()) {
            cx.error_spanned_at(n.span, format!("duplicate event name `{}`", n.name));
        }
    }
    // An exchange written as a string literal is checked here, at the literal: the constant
    // `Exchange::topic` would otherwise fail to evaluate, pointing at the derive.
    if let Some(Expr::Lit(syn::ExprLit {
        lit: syn::Lit::Str(lit),
        ..
    })) = &contract.exchange
    {
        let exchange = lit.value();
        if !is_exchange_word(&exchange) {
            cx.error_spanned_at(
                lit.span(),
                format!(
                    "exchange `{exchange}` must be one word of `A-Z a-z 0-9 _ -` (the routing key `<exchange>.v<major>.<event>` adds the dots)"
                ),
            );
        } else if let Some(version) = &version {
            for n in &contract.names {
                let key = format!("{exchange}.v{}.{}", version.major, n.name);
                if key.len() > MAX_KEY_BYTES {
                    cx.error_spanned_at(
                        lit.span(),
                        format!(
                            "routing key `{}…` is {} bytes long; AMQP carries at most {MAX_KEY_BYTES}: shorten the exchange or the event name",
                            key.chars().take(32).collect::<String>(),
                            key.len()
                        ),
                    );
                    break;
                }
            }
        }
    }
    if cx.has_errors() {
        return None;
    }
    let version = version?;
    Some(Valid {
        exchange: contract.exchange.clone()?,
        major: version.major,
        version: version.to_string(),
        names: contract.names.iter().map(|n| n.name.clone()).collect(),
    })
}
