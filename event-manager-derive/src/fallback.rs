//! What the derive emits next to its errors, as thiserror's `fallback.rs` does: the items the
//! rest of the crate expects (`Order::SUBMIT`, `order.submit(&bus)`, the `Event` impl), with
//! the right types and no contract behind them, so that one bad attribute gives its own
//! errors and none at every use of the type. Nothing is registered in the link-time registry.

use std::collections::BTreeMap;

use proc_macro2::{Span, TokenStream};
use quote::quote;
use syn::DeriveInput;

use crate::attr::Contract;
use crate::validate::is_keyword;

pub fn expand(input: &DeriveInput, contract: &Contract) -> TokenStream {
    let ty = &input.ident;
    let krate = quote!(::event_manager);
    let (impl_generics, ty_generics, where_clause) = input.generics.split_for_impl();
    // One constant per upper-cased name (`a` and `A` would both define `A`), the method named
    // by the lower-case spelling where there is one: the one uses of the type call.
    let mut by_constant: BTreeMap<String, &str> = BTreeMap::new();
    for n in contract.names.iter().filter(|n| usable(&n.name)) {
        let kept = by_constant.entry(n.name.to_uppercase()).or_insert(&n.name);
        if n.name.chars().all(|c| !c.is_ascii_uppercase()) {
            *kept = &n.name;
        }
    }
    let methods = by_constant.values().map(|name| {
        let def = syn::Ident::new(&name.to_uppercase(), Span::call_site());
        let method = syn::Ident::new(name, Span::call_site());
        quote! {
            pub const #def: #krate::EventDef<Self> = #krate::__private::fallback_event_def();

            #krate::__private::publish_method! { fallback #method }
        }
    });
    quote! {
        #[doc(hidden)]
        #[allow(unused_qualifications, non_upper_case_globals, clippy::all)]
        const _: () = {
            #[automatically_derived]
            impl #impl_generics #ty #ty_generics #where_clause {
                #(#methods)*
            }

            #[automatically_derived]
            impl #impl_generics #krate::Event for #ty #ty_generics #where_clause {
                const EVENTS: &'static [#krate::__private::EventContract] = &[];
            }
        };
    }
}

/// Whether `name` can name a constant and a method: any identifier but a keyword.
fn usable(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && name != "_"
        && !is_keyword(name)
}
