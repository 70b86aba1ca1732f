//! Code generation for a validated contract.

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote};
use syn::{DeriveInput, Expr, Lit};

use crate::validate::Valid;

/// The doc comment of the payload type, joined into one string.
fn description(input: &DeriveInput) -> String {
    let lines: Vec<String> = input
        .attrs
        .iter()
        .filter(|a| a.path().is_ident("doc"))
        .filter_map(|a| match &a.meta {
            syn::Meta::NameValue(nv) => match &nv.value {
                Expr::Lit(syn::ExprLit {
                    lit: Lit::Str(s), ..
                }) => Some(s.value().trim().to_owned()),
                _ => None,
            },
            _ => None,
        })
        .collect();
    lines.join("\n").trim().to_owned()
}

pub fn expand(input: &DeriveInput, contract: &Valid) -> TokenStream {
    let ty = &input.ident;
    let krate = quote!(::event_manager);
    let exchange = match &contract.exchange {
        Expr::Lit(syn::ExprLit {
            lit: Lit::Str(s), ..
        }) => quote!(#krate::Exchange::topic(#s)),
        other => quote!(#other),
    };
    let version = &contract.version;
    let major = contract.major;
    let description = description(input);
    let mut items = Vec::new();
    let mut methods = Vec::new();
    let mut contracts = Vec::new();
    for name in &contract.names {
        let upper = name.to_uppercase();
        let len = format_ident!("__EM_KEY_LEN_{}", upper);
        let bytes = format_ident!("__EM_KEY_BYTES_{}", upper);
        let schema_len = format_ident!("__EM_SCHEMA_ID_LEN_{}", upper);
        let schema_bytes = format_ident!("__EM_SCHEMA_ID_BYTES_{}", upper);
        let contract_ident = format_ident!("__EM_CONTRACT_{}", upper);
        let def = syn::Ident::new(&upper, Span::call_site());
        let method = syn::Ident::new(name, Span::call_site());
        let def_doc = format!(
            "The `{name}` event (version {version}): routing key `<exchange>.v{major}.{name}`."
        );
        let method_doc = format!(
            "Publishes this payload as the `{name}` event and returns once the broker confirmed it."
        );
        items.push(quote! {
            const #len: usize = #krate::__private::routing_key_len(
                #krate::Exchange::name(&#exchange), #major, #name);
            const #bytes: [u8; #len] = #krate::__private::routing_key_bytes::<#len>(
                #krate::Exchange::name(&#exchange), #major, #name);
            const #schema_len: usize =
                #krate::__private::schema_id_len(#krate::__private::as_str(&#bytes));
            const #schema_bytes: [u8; #schema_len] =
                #krate::__private::schema_id_bytes::<#schema_len>(
                    #krate::__private::as_str(&#bytes));
            const #contract_ident: #krate::__private::EventContract =
                #krate::__private::EventContract::__new(
                    #exchange,
                    #name,
                    #version,
                    #major,
                    #krate::__private::as_str(&#bytes),
                    #krate::__private::as_str(&#schema_bytes),
                    ::core::concat!(::core::module_path!(), "::", ::core::stringify!(#ty)),
                    #description,
                    #krate::__private::root_schema::<#ty>,
                );
            #krate::__private::inventory::submit! { #contract_ident }
        });
        methods.push(quote! {
            #[doc = #def_doc]
            pub const #def: #krate::EventDef<#ty> = #krate::__private::EventDef::__new(#contract_ident);

            #krate::__private::publish_method! {
                #[doc = #method_doc]
                #method, #def
            }
        });
        contracts.push(contract_ident);
    }
    quote! {
        #[doc(hidden)]
        #[allow(non_upper_case_globals, clippy::all)]
        const _: () = {
            #(#items)*

            #[automatically_derived]
            impl #ty {
                #(#methods)*
            }

            #[automatically_derived]
            impl #krate::Event for #ty {
                const EVENTS: &'static [#krate::__private::EventContract] = &[#(#contracts),*];
            }
        };
    }
}
