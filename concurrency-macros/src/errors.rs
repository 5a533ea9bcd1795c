//! Collects every mistake in one macro invocation so a single compile shows them all.

use std::fmt::Display;

use proc_macro2::TokenStream;
use quote::{ToTokens, quote};

/// An accumulator of `syn::Error`s, folded into one at the end.
#[derive(Default)]
pub(crate) struct Errors {
    errors: Vec<syn::Error>,
}

impl Errors {
    pub(crate) fn spanned(&mut self, tokens: impl ToTokens, message: impl Display) {
        self.errors.push(syn::Error::new_spanned(tokens, message));
    }

    pub(crate) fn push(&mut self, error: syn::Error) {
        self.errors.push(error);
    }

    /// How many mistakes were reported so far.
    pub(crate) fn len(&self) -> usize {
        self.errors.len()
    }

    /// `Ok(())` when nothing was reported, otherwise every error combined.
    pub(crate) fn finish(self) -> syn::Result<()> {
        let mut errors = self.errors.into_iter();
        match errors.next() {
            None => Ok(()),
            Some(mut first) => {
                for error in errors {
                    first.combine(error);
                }
                Err(first)
            }
        }
    }
}

/// Emit `error` and, after it, the user's item unchanged, so that one mistake in the
/// attribute does not also produce "cannot find function" errors at every call site.
pub(crate) fn with_original(error: syn::Error, original: TokenStream) -> TokenStream {
    let mut tokens = error.into_compile_error();
    tokens.extend(original);
    tokens
}

/// Errors in expression position: a block holding every `compile_error!`, ending in a
/// value of whatever type the surrounding code expects, so that it gets no follow-on
/// errors (and, unlike an expression of type `!`, no "unreachable statement" warning
/// for the code after it).
pub(crate) fn in_expression(error: syn::Error) -> TokenStream {
    let errors = error.into_compile_error();
    let private = crate::private::Private(proc_macro2::Span::call_site());
    quote!({ #errors; #private::not_expanded() })
}
