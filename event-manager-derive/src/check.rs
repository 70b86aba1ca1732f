//! Validating a parsed [`Contract`]: required keys, semver, event names, duplicates.

use std::collections::HashSet;

use syn::{DeriveInput, Expr};

use crate::attr::{Contract, Errors};

/// A contract that passed every check.
pub struct Valid {
    pub exchange: Expr,
    pub version: String,
    pub major: u64,
    pub names: Vec<String>,
}

fn is_event_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b'a'..=b'z'))
        && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

pub fn validate(input: &DeriveInput, contract: Contract) -> Result<Valid, syn::Error> {
    let mut errors = Errors::default();
    if !input.generics.params.is_empty() {
        errors.spanned(
            input.generics.params[0].span_of(),
            "#[derive(Event)] does not support generic payload types: a contract has one concrete schema",
        );
    }
    if contract.exchange.is_none() {
        errors.spanned(
            contract.attr_span,
            "missing `exchange = ...` in #[event(...)], e.g. `exchange = ORDER` where `const ORDER: Exchange = Exchange::topic(\"order\")`",
        );
    }
    let mut version_out = (String::new(), 0);
    match &contract.version {
        None => errors.spanned(
            contract.attr_span,
            "missing `version = \"MAJOR.MINOR.PATCH\"` in #[event(...)]",
        ),
        Some(lit) => match semver::Version::parse(&lit.value()) {
            Ok(v) => version_out = (v.to_string(), v.major),
            Err(e) => errors.spanned(
                lit.span(),
                format!(
                    "`{}` is not a semver version ({e}); write e.g. \"1.2.0\"",
                    lit.value()
                ),
            ),
        },
    }
    if contract.names.is_empty() {
        errors.spanned(
            contract.attr_span,
            "no event named in #[event(...)]: add `events(submit, ...)` or `name = \"submit\"`",
        );
    }
    let mut seen = HashSet::new();
    for n in &contract.names {
        if n.name.contains('.') || n.name.contains('*') || n.name.contains('#') {
            errors.spanned(
                n.span,
                format!(
                    "event name `{}` must be one word: no `.`, `*` or `#` (the routing key `<exchange>.v<major>.<event>` adds the dots)",
                    n.name
                ),
            );
        } else if !is_event_name(&n.name) {
            errors.spanned(
                n.span,
                format!(
                    "event name `{}` must be a lower-case word of `a-z 0-9 _` starting with a letter",
                    n.name
                ),
            );
        } else if !seen.insert(n.name.clone()) {
            errors.spanned(n.span, format!("duplicate event name `{}`", n.name));
        }
    }
    let (version, major) = version_out;
    errors.finish(Valid {
        exchange: contract.exchange.unwrap_or_else(|| syn::parse_quote!(())),
        version,
        major,
        names: contract.names.into_iter().map(|n| n.name).collect(),
    })
}

trait SpanOf {
    fn span_of(&self) -> proc_macro2::Span;
}

impl<T: syn::spanned::Spanned> SpanOf for T {
    fn span_of(&self) -> proc_macro2::Span {
        self.span()
    }
}
