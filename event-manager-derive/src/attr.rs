//! Parsing `#[event(...)]` into a [`Contract`], collecting every error.

use proc_macro2::Span;
use syn::{DeriveInput, Expr, Ident, LitStr, Token, punctuated::Punctuated};

/// An event name and the span to blame for it.
pub struct EventName {
    pub name: String,
    pub span: Span,
}

/// The parsed `#[event(...)]` attribute(s).
pub struct Contract {
    /// The whole attribute, for errors about what is missing.
    pub attr_span: Span,
    pub exchange: Option<Expr>,
    pub version: Option<LitStr>,
    pub names: Vec<EventName>,
}

/// Accumulates errors so the user sees all of them at once.
#[derive(Default)]
pub struct Errors(Option<syn::Error>);

impl Errors {
    pub fn push(&mut self, error: syn::Error) {
        match &mut self.0 {
            Some(e) => e.combine(error),
            None => self.0 = Some(error),
        }
    }

    pub fn spanned(&mut self, span: Span, message: impl std::fmt::Display) {
        self.push(syn::Error::new(span, message));
    }

    pub fn finish<T>(self, value: T) -> Result<T, syn::Error> {
        match self.0 {
            Some(e) => Err(e),
            None => Ok(value),
        }
    }
}

impl Contract {
    pub fn from_ast(input: &DeriveInput) -> Result<Self, syn::Error> {
        let mut errors = Errors::default();
        let mut contract = Contract {
            attr_span: input.ident.span(),
            exchange: None,
            version: None,
            names: Vec::new(),
        };
        let mut saw_attr = false;
        let mut names_from: Option<&'static str> = None;
        for attr in input.attrs.iter().filter(|a| a.path().is_ident("event")) {
            saw_attr = true;
            contract.attr_span = attr.meta_span();
            let parsed = attr.parse_nested_meta(|meta| {
                let key = meta.path.get_ident().map(Ident::to_string).unwrap_or_default();
                let span = syn::spanned::Spanned::span(&meta.path);
                match key.as_str() {
                    "exchange" => {
                        let expr: Expr = meta.value()?.parse()?;
                        if contract.exchange.is_some() {
                            errors.spanned(span, "duplicate `exchange` in #[event(...)]");
                        }
                        contract.exchange = Some(expr);
                    }
                    "version" => {
                        let lit: LitStr = meta.value()?.parse()?;
                        if contract.version.is_some() {
                            errors.spanned(span, "duplicate `version` in #[event(...)]");
                        }
                        contract.version = Some(lit);
                    }
                    "name" => {
                        let lit: LitStr = meta.value()?.parse()?;
                        if let Some(earlier) = names_from.replace("name") {
                            errors.spanned(span, duplicate_names(earlier));
                        }
                        contract.names.push(EventName {
                            name: lit.value(),
                            span: lit.span(),
                        });
                    }
                    "events" => {
                        let content;
                        syn::parenthesized!(content in meta.input);
                        let list: Punctuated<Ident, Token![,]> =
                            content.parse_terminated(Ident::parse_any_ident, Token![,])?;
                        if let Some(earlier) = names_from.replace("events") {
                            errors.spanned(span, duplicate_names(earlier));
                        }
                        contract.names.extend(list.iter().map(|i| EventName {
                            name: i.to_string(),
                            span: i.span(),
                        }));
                    }
                    _ => {
                        return Err(meta.error(
                            "unknown key in #[event(...)]: expected `exchange`, `version`, `events(...)` or `name`",
                        ));
                    }
                }
                Ok(())
            });
            if let Err(e) = parsed {
                errors.push(e);
            }
        }
        if !saw_attr {
            errors.spanned(
                input.ident.span(),
                "#[derive(Event)] needs an #[event(exchange = ..., version = \"1.0.0\", events(...))] attribute",
            );
        }
        errors.finish(contract)
    }
}

fn duplicate_names(earlier: &str) -> String {
    format!(
        "event names given twice (`{earlier}` already names them): use one `events(a, b, ...)` or one `name = \"...\"`"
    )
}

/// `Ident::parse_any` without importing the extension trait at every call site.
trait ParseAnyIdent {
    fn parse_any_ident(input: syn::parse::ParseStream<'_>) -> syn::Result<Ident>;
}

impl ParseAnyIdent for Ident {
    fn parse_any_ident(input: syn::parse::ParseStream<'_>) -> syn::Result<Ident> {
        use syn::ext::IdentExt;
        Ident::parse_any(input)
    }
}

/// Span of the attribute's tokens.
trait MetaSpan {
    fn meta_span(&self) -> Span;
}

impl MetaSpan for syn::Attribute {
    fn meta_span(&self) -> Span {
        use syn::spanned::Spanned;
        self.meta.span()
    }
}
