//! Code generation for a validated task function. Infallible: every check ran in
//! `valid.rs`, so this only prints tokens.

use proc_macro2::{Span, TokenStream, TokenTree};
use quote::{ToTokens, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{Ident, ReturnType, Type};

use crate::ast::TaskFn;
use crate::attr::Attribute;
use crate::private::Private;

/// The user's function becomes a plain `fn` with the same name, visibility, docs,
/// attributes, generics and argument types, which returns a lazy task value.
/// The original body moves, unchanged, into a closure (blocking and cpu tasks) or an
/// `async move` block (async I/O tasks).
pub(crate) fn expand(task: &TaskFn<'_>) -> TokenStream {
    let function = task.original;
    let sig = &function.sig;
    let attrs = &function.attrs;
    let vis = &function.vis;
    let ident = &sig.ident;
    let generics = &sig.generics;
    let where_clause = &generics.where_clause;
    let block = &function.block;

    let (ret, ret_span) = match &sig.output {
        ReturnType::Default => (quote!(()), sig.ident.span()),
        ReturnType::Type(_, ty) => (ty.to_token_stream(), ty.span()),
    };
    let private = Private(Span::call_site());
    let name = task.task_name();

    let params = task.args.iter().map(|arg| {
        let (ident, ty) = (&arg.ident, arg.ty);
        quote!(#ident: #ty)
    });
    let bindings = task.args.iter().map(|arg| {
        let (ident, pat) = (&arg.ident, arg.pat);
        quote!(let #pat = #ident;)
    });
    let bindings = quote!(#(#bindings)*);

    // Each argument and the result must be `Send`: checked one by one, each under
    // its own type, so the error names the offending type with our own message.
    // `impl Trait` argument types cannot be named, so those are left to the bound on
    // the task's closure or future.
    let arg_checks = task
        .args
        .iter()
        .filter(|arg| !mentions_impl(arg.ty))
        .map(|arg| {
            let ty = arg.ty;
            quote_spanned!(ty.span()=> #private::assert_arg_send::<#ty>();)
        });
    let ret_check = quote_spanned!(ret_span=> #private::assert_output_send::<#ret>(););

    let policy = policy(task, private);
    let (output, output_check) = if task.is_fallible() {
        (
            quote!(#private::Fallible),
            quote_spanned!(ret_span=> #private::assert_task_error::<#ret>();),
        )
    } else {
        (quote!(#private::Value), quote!())
    };

    if task.is_process() {
        let parts = ProcessParts {
            ret: &ret,
            ret_span,
            private,
            name: &name,
            policy,
            output,
            output_check,
        };
        return expand_process(task, parts);
    }

    // With `retries`, the task keeps a maker that clones the arguments for each
    // attempt's body; each argument must be `Clone`.
    let retrying = task.options.retries.is_some();
    // Each clone is checked under its argument's type, so a missing `Clone` is
    // reported there with our message.
    let clones = task.args.iter().map(|arg| {
        let (ident, ty) = (&arg.ident, arg.ty);
        if mentions_impl(ty) {
            quote_spanned!(ty.span()=> let #ident = #private::clone_for_retry(&#ident);)
        } else {
            quote_spanned!(ty.span()=> let #ident = #private::clone_for_retry::<#ty>(&#ident);)
        }
    });
    let clones = quote!(#(#clones)*);

    let ret_ident = Ident::new("__concurrency_ret", Span::mixed_site());
    let (task_type, kind, attempt) = match (task.attribute, task.is_async()) {
        (Attribute::IoTask, true) => (
            quote_spanned!(ret_span=>
                #private::AsyncIoTask<
                    impl ::core::future::Future<Output = #ret> + ::core::marker::Send + 'static,
                    #output
                >
            ),
            Ident::new("AsyncIoTask", Span::call_site()),
            quote!(async move {
                #bindings
                #[allow(clippy::diverging_sub_expression)]
                let #ret_ident: #ret = #block;
                #[allow(unreachable_code)]
                #ret_ident
            }),
        ),
        (attribute, _) => {
            // A blocking I/O task and a cpu task are both a closure over the body;
            // only the type (and so the executor) differs.
            let kind = match attribute {
                Attribute::IoTask => Ident::new("BlockingIoTask", Span::call_site()),
                Attribute::CpuTask => Ident::new("CpuTask", Span::call_site()),
            };
            (
                quote_spanned!(ret_span=>
                    #private::#kind<
                        impl ::core::ops::FnOnce() -> #ret + ::core::marker::Send + 'static,
                        #output
                    >
                ),
                kind,
                // The body is bound to a variable rather than nested as a block, which
                // would trip `unused_braces` in the user's crate for a one-line body
                // (and a body that only panics is no lint's business).
                quote!(move || -> #ret {
                    #bindings
                    #[allow(clippy::diverging_sub_expression)]
                    let #ret_ident: #ret = #block;
                    #[allow(unreachable_code)]
                    #ret_ident
                }),
            )
        }
    };
    let constructor = if retrying {
        quote!(#private::#kind::retrying(#name, #policy, move || {
            #clones
            #attempt
        }))
    } else {
        quote!(#private::#kind::new(#name, #policy, #attempt))
    };

    let fn_token = &sig.fn_token;
    quote! {
        #(#attrs)*
        #vis #fn_token #ident #generics (#(#params),*) -> #task_type #where_clause {
            #(#arg_checks)*
            #ret_check
            #output_check
            #constructor
        }
    }
}

/// `#[cpu_task(process)]`: the body becomes a plain inner function, registered (by a
/// stable id) in the runtime's link-time registry together with a wrapper that
/// decodes the arguments and encodes the result; the outer function returns a
/// `ProcessTask` that references that registration, so the linker keeps it.
/// What `expand_process` shares with `expand`.
struct ProcessParts<'a> {
    ret: &'a TokenStream,
    ret_span: Span,
    private: Private,
    name: &'a str,
    policy: TokenStream,
    output: TokenStream,
    output_check: TokenStream,
}

/// The task's options as a `Policy` value; `Policy::NONE` without options.
fn policy(task: &TaskFn<'_>, private: Private) -> TokenStream {
    let options = &task.options;
    if !options.has_policy() {
        return quote!(#private::Policy::NONE);
    }
    let nanos = |duration: std::time::Duration| {
        // Checked at parse time to fit in a u64.
        u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
    };
    let timeout = match &options.timeout {
        Some(timeout) => {
            let nanos = nanos(timeout.value);
            quote!(::core::option::Option::Some(#private::Duration::from_nanos(#nanos)))
        }
        None => quote!(::core::option::Option::None),
    };
    let retries = options.retries.as_ref().map_or(0, |retries| retries.value);
    let backoff = nanos(
        options
            .backoff
            .as_ref()
            .map_or(std::time::Duration::ZERO, |b| b.value),
    );
    let retry_on = match &options.retry_on {
        None => quote!(#private::RetryOn::DEFAULT),
        Some(kinds) => {
            let kinds = kinds.value.iter().map(|kind| {
                let constant = Ident::new(&kind.to_string().to_uppercase(), Span::call_site());
                quote!(.with(#private::RetryOn::#constant))
            });
            quote!(#private::RetryOn::NONE #(#kinds)*)
        }
    };
    let limit = match &options.limit {
        Some(limit) => {
            let permits = limit.value;
            let ident = Ident::new("__CONCURRENCY_LIMIT", Span::mixed_site());
            quote!(::core::option::Option::Some({
                static #ident: #private::Limit = #private::Limit::new(#permits);
                &#ident
            }))
        }
        None => quote!(::core::option::Option::None),
    };
    quote!(#private::Policy {
        timeout: #timeout,
        retries: #retries,
        backoff: #private::Duration::from_nanos(#backoff),
        retry_on: #retry_on,
        limit: #limit,
    })
}

fn expand_process(task: &TaskFn<'_>, parts: ProcessParts<'_>) -> TokenStream {
    let ProcessParts {
        ret,
        ret_span,
        private,
        name,
        policy,
        output,
        output_check,
    } = parts;
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
    quote! {
        #(#attrs)*
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
            #private::ProcessTask::new(
                #name,
                #policy,
                &#entry,
                (#(#idents,)*),
                (#body, #encode, #result.decoder()),
            )
        }
    }
}

/// Whether a type contains `impl Trait` anywhere (such a type cannot be named in a
/// turbofish).
fn mentions_impl(ty: &Type) -> bool {
    fn scan(tokens: TokenStream) -> bool {
        tokens.into_iter().any(|token| match token {
            TokenTree::Ident(ident) => ident == "impl",
            TokenTree::Group(group) => scan(group.stream()),
            _ => false,
        })
    }
    scan(ty.to_token_stream())
}

/// What a function whose signature or body was rejected becomes: the same signature
/// (receiver, generics, `where` clause, argument types) returning a task type that
/// never runs, so that its call sites type-check and the compile shows the
/// attribute's error alone. Its body is never compiled into anything that runs.
pub(crate) fn stand_in(task: &TaskFn<'_>) -> TokenStream {
    let function = task.original;
    let sig = &function.sig;
    let (attrs, vis, fn_token, ident) = (&function.attrs, &function.vis, &sig.fn_token, &sig.ident);
    let generics = &sig.generics;
    let where_clause = &generics.where_clause;
    let private = Private(Span::call_site());
    let receiver = task.receiver.map(|receiver| quote!(#receiver,));
    let types = task.args.iter().map(|arg| arg.ty);
    // The result type, if the stand-in can name it: not a borrowed or `impl Trait`
    // type, nor one of the function's own type parameters (a task's result must be
    // `Send + 'static`, which they need not be).
    let output = match &sig.output {
        ReturnType::Type(_, ty) if nameable(ty, generics) => ty.to_token_stream(),
        _ => quote!(()),
    };
    quote! {
        #(#attrs)*
        #[allow(unused_variables, clippy::all)]
        #vis #fn_token #ident #generics (#receiver #(_: #types),*) -> #private::Invalid<#output> #where_clause {
            ::core::unreachable!()
        }
    }
}

/// Whether `ty` can be a stand-in's result type (see `stand_in`).
fn nameable(ty: &Type, generics: &syn::Generics) -> bool {
    let params: Vec<String> = generics
        .params
        .iter()
        .filter_map(|param| match param {
            syn::GenericParam::Type(param) => Some(param.ident.to_string()),
            _ => None,
        })
        .collect();
    fn scan(tokens: TokenStream, params: &[String]) -> bool {
        tokens.into_iter().all(|token| match token {
            TokenTree::Ident(ident) => {
                ident != "impl" && ident != "Self" && !params.iter().any(|param| ident == param)
            }
            TokenTree::Punct(punct) => punct.as_char() != '&' && punct.as_char() != '\'',
            TokenTree::Group(group) => scan(group.stream(), params),
            TokenTree::Literal(_) => true,
        })
    }
    scan(ty.to_token_stream(), &params)
}
