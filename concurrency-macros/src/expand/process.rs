//! `#[cpu_task(process)]`: the body runs in a worker process.

use proc_macro2::{Span, TokenStream};
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{Ident, Type};

use super::Shared;
use crate::ast::TaskFn;

/// The function returning a `ProcessTask`: the body becomes a plain inner function,
/// registered (by a stable id) in the runtime's link-time registry together with a
/// wrapper that decodes the arguments and encodes the result; the task value
/// references that registration, so the linker keeps it.
pub(super) fn expand(task: &TaskFn<'_>, shared: &Shared) -> TokenStream {
    let Shared {
        private,
        name,
        ret,
        ret_span,
        policy,
        output,
        output_check,
    } = shared;
    let (private, ret_span) = (*private, *ret_span);
    let function = task.original;
    let sig = &function.sig;
    let (attrs, vis, ident, block, fn_token) = (
        &function.attrs,
        &function.vis,
        &sig.ident,
        &function.block,
        &sig.fn_token,
    );
    let idents: Vec<&Ident> = task.args.iter().map(|arg| &arg.ident).collect();
    let types: Vec<&Type> = task.args.iter().map(|arg| arg.ty).collect();
    let pats = task.args.iter().map(|arg| arg.pat);
    let span = Span::mixed_site();
    // One codec per argument type and one for the result, each built (and so checked
    // to be serde) once, under its type: a type that is not gets one error, there.
    let codecs: Vec<Ident> = (0..types.len())
        .map(|index| quote::format_ident!("__CONCURRENCY_ARG{}", index, span = span))
        .collect();
    let arg_codecs = codecs.iter().zip(&types).map(|(codec, ty)| {
        quote_spanned!(ty.span()=>
            const #codec: #private::ArgCodec<#ty> = #private::arg_codec::<#ty>();
        )
    });
    let result = Ident::new("__CONCURRENCY_RESULT", span);
    let result_codec = quote_spanned!(ret_span=>
        const #result: #private::ResultCodec<#ret> = #private::result_codec::<#ret>();
    );
    let body = Ident::new("__concurrency_body", span);
    let encode = Ident::new("__concurrency_encode", span);
    let run = Ident::new("__concurrency_run", span);
    let input = Ident::new("__concurrency_input", span);
    let out = Ident::new("__concurrency_out", span);
    let limit = Ident::new("__concurrency_limit", span);
    let entry = Ident::new("__CONCURRENCY_ENTRY", span);
    let fn_name = ident.to_string();
    let parts = quote!(&#entry, (#(#idents,)*), (#body, #encode, #result.decoder()));
    let constructor = match policy {
        None => quote!(#private::Process::new(&#name, #parts)),
        Some(policy) => quote!(#private::Process::with_policy(&#name, #policy, #parts)),
    };
    let track_caller = super::track_caller(attrs);
    quote! {
        #(#attrs)*
        #track_caller
        #vis #fn_token #ident (#(#idents: #types),*) -> #private::ProcessTask<(#(#types,)*), #ret, #output> {
            #output_check
            #(#arg_codecs)*
            #result_codec
            fn #body((#(#pats,)*): (#(#types,)*)) -> #ret #block
            fn #encode(
                (#(#idents,)*): &(#(#types,)*),
                #out: &mut ::std::vec::Vec<u8>,
                #limit: usize,
            ) -> ::core::result::Result<(), #private::WireError> {
                #(#codecs.encode(#idents, #out, #limit)?;)*
                ::core::result::Result::Ok(())
            }
            fn #run(
                #input: &[u8],
                #out: &mut ::std::vec::Vec<u8>,
                #limit: usize,
            ) -> ::core::result::Result<(), #private::EntryError> {
                let mut #input = #private::Decoder::new(#input);
                #(let #idents = #codecs.decode(&mut #input)?;)*
                #private::finish_arguments(&#input)?;
                #result.encode(&#body((#(#idents,)*)), #out, #limit)
            }
            #[#private::linkme::distributed_slice(#private::PROCESS_TASKS)]
            #[linkme(crate = #private::linkme)]
            static #entry: #private::ProcessEntry = #private::ProcessEntry {
                id: ::core::concat!(::core::module_path!(), "::", #fn_name, "@", ::core::line!(), ":", ::core::column!()),
                run: #run,
            };
            #constructor
        }
    }
}
