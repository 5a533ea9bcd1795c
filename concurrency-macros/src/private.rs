//! The path through which generated code reaches the runtime.

use proc_macro2::{Span, TokenStream};
use quote::{ToTokens, quote_spanned};

/// Prints `::concurrency_runtime::__private`; generated code names nothing else
/// (besides `::core`), so it survives a user's own `Result`, `Box` or `tokio`.
#[derive(Clone, Copy)]
pub(crate) struct Private(pub(crate) Span);

impl ToTokens for Private {
    fn to_tokens(&self, tokens: &mut TokenStream) {
        tokens.extend(quote_spanned!(self.0=> ::concurrency_runtime::__private));
    }
}
