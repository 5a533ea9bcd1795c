//! `#[io_task] async fn`: the body becomes an `async move` block, polled on tokio.

use proc_macro2::{Span, TokenStream};
use quote::{quote, quote_spanned};
use syn::Ident;

use super::Shared;
use crate::ast::TaskFn;

/// The function returning an `AsyncIoTask` over the body's future.
pub(super) fn expand(task: &TaskFn<'_>, shared: &Shared) -> TokenStream {
    let Shared {
        private,
        ret,
        ret_span,
        output,
        ..
    } = shared;
    let placement = Ident::new("AsyncIo", Span::call_site());
    let ret_ident = Ident::new("__concurrency_ret", Span::mixed_site());
    let bindings = super::bindings(task);
    let block = &task.original.block;
    let signature = quote_spanned!(*ret_span=>
        #private::AsyncIoTask<
            impl ::core::future::Future<Output = #ret> + ::core::marker::Send + 'static,
            #output
        >
    );
    // The arguments are bound to the user's patterns before the `async move` block,
    // which captures them as they are: bound inside it, each would be kept twice in
    // the future (once as the captured argument, once as the binding).
    let body = quote!({
        #bindings
        async move {
            #[allow(clippy::diverging_sub_expression)]
            let #ret_ident: #ret = #block;
            #[allow(unreachable_code)]
            #ret_ident
        }
    });
    let constructor = super::construct(task, shared, &placement, body);
    super::function(task, shared, signature, constructor)
}
