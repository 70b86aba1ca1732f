//! `#[derive(Event)]` for event-manager. See the `event-manager` crate for the user guide.
//!
//! The macro works in three stages, as serde_derive does: `attr` parses `#[event(...)]` into
//! plain values, collecting every mistake with the span of the tokens that caused it; `check`
//! validates the combination; `expand` generates code that refers to the runtime crate only
//! through `::event_manager::__private` and its public items.

use proc_macro::TokenStream;
use syn::{DeriveInput, parse_macro_input};

mod attr;
mod check;
mod expand;

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
/// * `events(a, b, ...)` or `name = "a"`: the event names, lower-case words of `a-z 0-9 _`.
#[proc_macro_derive(Event, attributes(event))]
pub fn derive_event(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    match attr::Contract::from_ast(&input).and_then(|c| check::validate(&input, c)) {
        Ok(contract) => expand::expand(&input, &contract).into(),
        Err(errors) => errors.to_compile_error().into(),
    }
}
