//! `#[io_task] fn` and `#[cpu_task] fn`: the body becomes a closure that runs on a
//! blocking thread or on rayon; only the task type (and so the executor) differs.

use proc_macro2::{Span, TokenStream};
use quote::{quote, quote_spanned};
use syn::Ident;

use super::Shared;
use crate::ast::TaskFn;

/// The function returning a `task_type` (`BlockingIoTask` or `CpuTask`, made by the
/// `placement` type's constructor) over a closure of its body.
pub(super) fn expand(
    task: &TaskFn<'_>,
    shared: &Shared,
    task_type: &str,
    placement: &str,
) -> TokenStream {
    let Shared {
        private,
        ret,
        ret_span,
        output,
        ..
    } = shared;
    let kind = Ident::new(task_type, Span::call_site());
    let placement = Ident::new(placement, Span::call_site());
    let ret_ident = Ident::new("__concurrency_ret", Span::mixed_site());
    let bindings = super::bindings(task);
    let block = &task.original.block;
    let signature = quote_spanned!(*ret_span=>
        #private::#kind<
            impl ::core::ops::FnOnce() -> #ret + ::core::marker::Send + 'static,
            #output
        >
    );
    // The body is bound to a variable rather than nested as a block, which would trip
    // `unused_braces` in the user's crate for a one-line body (and a body that only
    // panics is no lint's business).
    let body = quote!(move || -> #ret {
        #bindings
        #[allow(clippy::diverging_sub_expression)]
        let #ret_ident: #ret = #block;
        #[allow(unreachable_code)]
        #ret_ident
    });
    let constructor = super::construct(task, shared, &placement, body);
    super::function(task, shared, signature, constructor)
}
