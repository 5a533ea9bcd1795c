//! Code generation for a validated task function. Infallible: every check ran in
//! `valid.rs`, so this only prints tokens.
//!
//! The parts every placement shares are made here, once ([`Shared`]); each placement
//! has a module that assembles its function from them: `async_io` (an `async move`
//! block), `thread` (a closure run on a blocking thread or on rayon), `process` (an
//! inner function registered for the worker process). A function that was rejected
//! becomes a stand-in with the same signature ([`stand_in`]).

mod async_io;
mod process;
mod thread;

use proc_macro2::{Span, TokenStream, TokenTree};
use quote::{ToTokens, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{Ident, ReturnType, Type};

use crate::ast::{PlacementKind, TaskFn};
use crate::private::Private;

/// The user's function becomes a plain `fn` with the same name, visibility, docs,
/// attributes, generics and argument types, which returns a lazy task value.
pub(crate) fn expand(task: &TaskFn<'_>) -> TokenStream {
    let shared = Shared::new(task);
    match task.placement() {
        PlacementKind::AsyncIo => async_io::expand(task, &shared),
        PlacementKind::BlockingIo => thread::expand(task, &shared, "BlockingIoTask", "BlockingIo"),
        PlacementKind::Cpu => thread::expand(task, &shared, "CpuTask", "Cpu"),
        PlacementKind::Process => process::expand(task, &shared),
    }
}

/// What every placement's expansion uses.
pub(super) struct Shared {
    pub(super) private: Private,
    /// The task's name, for errors.
    pub(super) name: String,
    /// The result type (`()` when none is written) and where it is written.
    pub(super) ret: TokenStream,
    pub(super) ret_span: Span,
    /// The task's options as a `Policy` value; `None` without options (the task is
    /// made by the placement's `new`, which never compiles the supervision).
    pub(super) policy: Option<TokenStream>,
    /// `Value`, or `Fallible` for a function declared to return `Result`.
    pub(super) output: TokenStream,
    /// For a `Result`, the check that its error can be reported.
    pub(super) output_check: TokenStream,
}

impl Shared {
    fn new(task: &TaskFn<'_>) -> Self {
        let sig = &task.original.sig;
        let (ret, ret_span) = match &sig.output {
            ReturnType::Default => (quote!(()), sig.ident.span()),
            ReturnType::Type(_, ty) => (ty.to_token_stream(), ty.span()),
        };
        let private = Private(Span::call_site());
        let (output, output_check) = if task.is_fallible() {
            (
                quote!(#private::Fallible),
                quote_spanned!(ret_span=> #private::assert_task_error::<#ret>();),
            )
        } else {
            (quote!(#private::Value), quote!())
        };
        Shared {
            private,
            name: task.task_name(),
            policy: policy(task, private),
            ret,
            ret_span,
            output,
            output_check,
        }
    }

    /// Checks that each argument and the result are `Send`: one by one, each under its
    /// own type, so the error names the offending type with our own message.
    /// (`impl Trait` argument types cannot be named; those are left to the bound on
    /// the task's closure or future.)
    pub(super) fn send_checks(&self, task: &TaskFn<'_>) -> TokenStream {
        let private = self.private;
        let args = task
            .args
            .iter()
            .filter(|arg| !mentions_impl(arg.ty))
            .map(|arg| {
                let ty = arg.ty;
                quote_spanned!(ty.span()=> #private::assert_arg_send::<#ty>();)
            });
        let ret = &self.ret;
        let ret_check = quote_spanned!(self.ret_span=> #private::assert_output_send::<#ret>(););
        quote!(#(#args)* #ret_check)
    }
}

/// Binds the user's argument patterns to the hidden argument names, at the start of
/// the body.
fn bindings(task: &TaskFn<'_>) -> TokenStream {
    let bindings = task.args.iter().map(|arg| {
        let (ident, pat) = (&arg.ident, arg.pat);
        quote!(let #pat = #ident;)
    });
    quote!(#(#bindings)*)
}

/// The call of the placement's constructor over `body` (a future or a closure). With
/// `retries`, the task keeps a maker that clones the arguments for each attempt's
/// body; each clone is checked under its argument's type, so a missing `Clone` is
/// reported there with our message.
fn construct(
    task: &TaskFn<'_>,
    shared: &Shared,
    placement: &Ident,
    body: TokenStream,
) -> TokenStream {
    let Shared {
        private,
        name,
        policy,
        ..
    } = shared;
    // `&"name"`: a constant, so a `&'static &'static str` (one pointer).
    match (policy, task.options.retries.is_some()) {
        (None, false) => return quote!(#private::#placement::new(&#name, #body)),
        (Some(policy), false) => {
            return quote!(#private::#placement::with_policy(&#name, #policy, #body));
        }
        _ => {}
    }
    let policy = match policy {
        Some(policy) => policy.clone(),
        None => quote!(#private::Policy::NONE),
    };
    let clones = task.args.iter().map(|arg| {
        let (ident, ty) = (&arg.ident, arg.ty);
        if mentions_impl(ty) {
            quote_spanned!(ty.span()=> let #ident = #private::clone_for_retry(&#ident);)
        } else {
            quote_spanned!(ty.span()=> let #ident = #private::clone_for_retry::<#ty>(&#ident);)
        }
    });
    quote!(#private::#placement::retrying(&#name, #policy, move || {
        #(#clones)*
        #body
    }))
}

/// The user's function with its arguments, returning `signature`, whose body checks
/// the types and calls `constructor`.
fn function(
    task: &TaskFn<'_>,
    shared: &Shared,
    signature: TokenStream,
    constructor: TokenStream,
) -> TokenStream {
    let function = task.original;
    let sig = &function.sig;
    let (attrs, vis, fn_token, ident) = (&function.attrs, &function.vis, &sig.fn_token, &sig.ident);
    let generics = &sig.generics;
    let where_clause = &generics.where_clause;
    let params = task.args.iter().map(|arg| {
        let (ident, ty) = (&arg.ident, arg.ty);
        quote!(#ident: #ty)
    });
    let send_checks = shared.send_checks(task);
    let output_check = &shared.output_check;
    let track_caller = track_caller(attrs);
    quote! {
        #(#attrs)*
        #track_caller
        #vis #fn_token #ident #generics (#(#params),*) -> #signature #where_clause {
            #send_checks
            #output_check
            #constructor
        }
    }
}

/// `#[track_caller]`, unless the function has it already: the task value then knows
/// the line that called it (the runtime's `tracing` feature reports it).
pub(super) fn track_caller(attrs: &[syn::Attribute]) -> TokenStream {
    if attrs
        .iter()
        .any(|attr| attr.path().is_ident("track_caller"))
    {
        TokenStream::new()
    } else {
        quote!(#[track_caller])
    }
}

/// The task's options as a `Policy` value; `None` without options.
fn policy(task: &TaskFn<'_>, private: Private) -> Option<TokenStream> {
    let options = &task.options;
    if !options.has_policy() {
        return None;
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
    Some(quote!(#private::Policy {
        timeout: #timeout,
        retries: #retries,
        backoff: #private::Duration::from_nanos(#backoff),
        retry_on: #retry_on,
        limit: #limit,
    }))
}

/// Whether a type contains `impl Trait` anywhere (such a type cannot be named in a
/// turbofish).
pub(super) fn mentions_impl(ty: &Type) -> bool {
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
        #vis #fn_token #ident #generics (#receiver #(_: #types),*) -> #private::InvalidTask<#output> #where_clause {
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
