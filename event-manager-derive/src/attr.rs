//! Parsing `#[event(...)]` into a [`Contract`], reporting every error into the [`Ctxt`].
//!
//! Parsing never stops at the first mistake: an unknown key or a malformed value is reported
//! and skipped up to the next `,`, and the rest of the attribute is still read.

use proc_macro2::{Span, TokenTree};
use syn::meta::ParseNestedMeta;
use syn::parse::ParseStream;
use syn::spanned::Spanned;
use syn::{DeriveInput, Expr, Ident, Lit, LitStr, Token};

use crate::ctxt::Ctxt;

/// An event name and the span to blame for it.
pub struct EventName {
    pub name: String,
    pub span: Span,
}

/// The parsed `#[event(...)]` attribute(s).
pub struct Contract {
    /// The whole attribute, for errors about what is missing.
    pub attr_span: Span,
    /// Whether an `#[event(...)]` attribute was found at all.
    pub saw_attr: bool,
    pub exchange: Option<Expr>,
    pub version: Option<LitStr>,
    pub names: Vec<EventName>,
    /// The known keys whose value could not be read: reported once, at the value, and not
    /// again as missing.
    pub malformed: Vec<&'static str>,
}

impl Contract {
    /// Whether `key` was written with a value that could not be read.
    pub fn is_malformed(&self, key: &str) -> bool {
        self.malformed.contains(&key)
    }
}

const KEYS: &str = "expected `exchange`, `version`, `events(...)` or `name`";

impl Contract {
    /// Reads every `#[event(...)]` attribute of `input`; what cannot be read is reported into
    /// `cx` and left out.
    pub fn from_ast(cx: &Ctxt, input: &DeriveInput) -> Self {
        let mut contract = Contract {
            attr_span: input.ident.span(),
            saw_attr: false,
            exchange: None,
            version: None,
            names: Vec::new(),
            malformed: Vec::new(),
        };
        let mut names_from: Option<&'static str> = None;
        for attr in input.attrs.iter().filter(|a| a.path().is_ident("event")) {
            contract.saw_attr = true;
            contract.attr_span = attr.meta.span();
            let parsed = attr.parse_nested_meta(|meta| {
                let key = meta
                    .path
                    .get_ident()
                    .map(Ident::to_string)
                    .unwrap_or_default();
                let span = meta.path.span();
                let read = match key.as_str() {
                    "exchange" => parse_value::<Expr>(&meta).map(|expr| {
                        if contract.exchange.is_some() {
                            cx.error_spanned_at(span, "duplicate `exchange` in #[event(...)]");
                        }
                        contract.exchange = Some(expr);
                    }),
                    "version" => parse_str(&meta).map(|lit| {
                        if contract.version.is_some() {
                            cx.error_spanned_at(span, "duplicate `version` in #[event(...)]");
                        }
                        contract.version = Some(lit);
                    }),
                    "name" => parse_str(&meta).map(|lit| {
                        if let Some(earlier) = names_from.replace("name") {
                            cx.error_spanned_at(span, duplicate_names(earlier));
                        }
                        contract.names.push(EventName {
                            name: lit.value(),
                            span: lit.span(),
                        });
                    }),
                    "events" => parse_names(&meta).map(|names| {
                        if let Some(earlier) = names_from.replace("events") {
                            cx.error_spanned_at(span, duplicate_names(earlier));
                        }
                        contract.names.extend(names);
                    }),
                    _ => Err(meta.error(format!("unknown key in #[event(...)]: {KEYS}"))),
                };
                if let Err(e) = read {
                    if let Some(known) = ["exchange", "version", "name", "events"]
                        .into_iter()
                        .find(|k| *k == key)
                    {
                        contract.malformed.push(known);
                    }
                    cx.syn_error(e);
                    skip_to_comma(meta.input)?;
                }
                Ok(())
            });
            if let Err(e) = parsed {
                cx.syn_error(e);
            }
        }
        if !contract.saw_attr {
            cx.error_spanned_at(
                input.ident.span(),
                "#[derive(Event)] needs an #[event(exchange = ..., version = \"1.0.0\", events(...))] attribute",
            );
        }
        contract
    }
}

/// `= <value>`.
fn parse_value<T: syn::parse::Parse>(meta: &ParseNestedMeta<'_>) -> syn::Result<T> {
    meta.value()?.parse()
}

/// `= "<text>"`, with an error on the value when it is not a string literal.
fn parse_str(meta: &ParseNestedMeta<'_>) -> syn::Result<LitStr> {
    let expr: Expr = parse_value(meta)?;
    match expr {
        Expr::Lit(syn::ExprLit {
            lit: Lit::Str(s), ..
        }) => Ok(s),
        other => Err(syn::Error::new(
            other.span(),
            "expected a string literal, e.g. \"1.0.0\"",
        )),
    }
}

/// `(a, b, ...)`: words, keywords included, so that a keyword is refused by the checks with a
/// message that says why.
fn parse_names(meta: &ParseNestedMeta<'_>) -> syn::Result<Vec<EventName>> {
    let content;
    syn::parenthesized!(content in meta.input);
    let list = content.parse_terminated(parse_any_ident, Token![,])?;
    Ok(list
        .iter()
        .map(|i| EventName {
            name: i.to_string(),
            span: i.span(),
        })
        .collect())
}

fn parse_any_ident(input: ParseStream<'_>) -> syn::Result<Ident> {
    use syn::ext::IdentExt;
    Ident::parse_any(input)
}

/// Skips what is left of a key's value, so that parsing goes on after the next `,`.
fn skip_to_comma(input: ParseStream<'_>) -> syn::Result<()> {
    while !input.is_empty() && !input.peek(Token![,]) {
        input.parse::<TokenTree>()?;
    }
    Ok(())
}

fn duplicate_names(earlier: &str) -> String {
    format!(
        "event names given twice (`{earlier}` already names them): use one `events(a, b, ...)` or one `name = \"...\"`"
    )
}
