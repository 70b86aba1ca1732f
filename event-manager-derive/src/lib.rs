//! `#[derive(Event)]` for event-manager. See the `event-manager` crate for the user guide.
//!
//! The macro works in three stages, as serde_derive does: `attr` parses `#[event(...)]` into
//! plain values; `validate` checks the combination; `expand` generates code that refers to the
//! runtime crate only through `::event_manager::__private` and its public items. Both `attr`
//! and `validate` report into one `ctxt::Ctxt`, so every mistake is shown at once, each with the
//! span of the tokens that caused it. On error, `fallback` emits the items the rest of the
//! crate expects (constants, publish methods) so that uses of the type add no errors.

use proc_macro::TokenStream;
use syn::{DeriveInput, parse_macro_input};

mod attr;
mod ctxt;
mod expand;
mod fallback;
mod validate;

/// Derives `event_manager::Event` for a payload struct, one `EventDef` constant per event
/// (`Order::SUBMIT`), a publish method per event (`order.submit(&bus)`) and the registration
/// of every contract in the link-time registry.
///
/// ```text
/// #[derive(Serialize, Deserialize, JsonSchema, Event)]
/// #[event(exchange = ORDER, version = "1.2.0", events(submit, chargeback))]
/// pub struct Order { ... }
///
/// #[derive(Serialize, Deserialize, JsonSchema, Event)]
/// #[event(exchange = ORDER, version = "2.0.0", name = "submit")]
/// pub struct OrderSubmittedV2 { ... }
/// ```
///
/// * `exchange`: a constant `event_manager::Exchange` (or a string literal naming a topic
///   exchange).
/// * `version`: the full semver version of the contract; its major goes into the routing key.
/// * `events(a, b, ...)` or `name = "a"`: the event names, lower-case words of `a-z 0-9 _`,
///   not Rust keywords (each names a publish method).
///
/// Every mistake in the attribute is reported at once, each at the tokens that caused it; the
/// constants and methods are still generated (without contracts), so that uses of the type
/// add no errors of their own.
#[proc_macro_derive(Event, attributes(event))]
pub fn derive_event(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    let cx = ctxt::Ctxt::new();
    let contract = attr::Contract::from_ast(&cx, &input);
    let valid = validate::validate(&cx, &input, &contract);
    match (cx.finish(), valid) {
        (Ok(()), Some(valid)) => expand::expand(&input, &valid).into(),
        (result, _) => {
            let mut tokens = result.err().map_or_else(
                || {
                    syn::Error::new_spanned(&input.ident, "invalid #[event(...)]")
                        .to_compile_error()
                },
                |e| e.to_compile_error(),
            );
            tokens.extend(fallback::expand(&input, &contract));
            tokens.into()
        }
    }
}
