//! `run_concurrently!`: parse, validate and expand, in that order.
//!
//! Grammar:
//!
//! ```text
//! run_concurrently!( [MODIFIER, ... ;] CALL, CALL, ... [,] )
//! run_concurrently!( [MODIFIER, ... ;] for ITERATOR )
//! MODIFIER := async
//! ```

use proc_macro2::{Span, TokenStream, TokenTree};
use quote::{format_ident, quote, quote_spanned};
use syn::ext::IdentExt;
use syn::parse::{ParseStream, Parser};
use syn::punctuated::Punctuated;
use syn::spanned::Spanned;
use syn::{Expr, Ident, Token};

use crate::attr::did_you_mean;
use crate::errors::Errors;
use crate::private::Private;

const MODIFIERS: &[&str] = &["async"];

const USAGE: &str = "expected task calls, e.g. `run_concurrently!(fetch(1), crunch(2))`, \
                     or a collection, e.g. `run_concurrently!(for urls.into_iter().map(download))`";

/// One parsed invocation.
pub(crate) struct Invocation {
    modifiers: Vec<Ident>,
    body: Body,
}

enum Body {
    /// `a(1), b(2)`: a fixed group, results as a tuple.
    Calls(Vec<Expr>),
    /// `for iter`: every task the iterator yields, results as a `Vec`.
    Each { for_token: Token![for], iter: Expr },
}

/// Checked form, ready to expand.
pub(crate) struct Checked {
    is_async: bool,
    body: Body,
}

pub(crate) fn parse(tokens: TokenStream) -> syn::Result<Invocation> {
    if tokens.is_empty() {
        return Err(syn::Error::new(
            Span::call_site(),
            format!("run_concurrently! needs at least one task; {USAGE}"),
        ));
    }
    let (modifier_tokens, rest) = split_at_semicolon(tokens);
    let modifiers = match modifier_tokens {
        None => Vec::new(),
        Some(tokens) => {
            let parser = |input: ParseStream<'_>| {
                Punctuated::<Ident, Token![,]>::parse_terminated_with(input, Ident::parse_any)
            };
            parser
                .parse2(tokens)
                .map(|list| list.into_iter().collect())
                .map_err(|e| {
                    syn::Error::new(e.span(), "expected modifiers before `;`, e.g. `async;`")
                })?
        }
    };
    let parser = |input: ParseStream<'_>| -> syn::Result<Body> {
        if input.is_empty() {
            return Err(input.error(format!(
                "run_concurrently! needs at least one task; {USAGE}"
            )));
        }
        if input.peek(Token![for]) {
            let for_token = input.parse()?;
            let iter = input.parse()?;
            // A trailing comma is fine, as after calls.
            if input.peek(Token![,]) {
                input.parse::<Token![,]>()?;
            }
            return Ok(Body::Each { for_token, iter });
        }
        let calls = Punctuated::<Expr, Token![,]>::parse_terminated(input)?;
        Ok(Body::Calls(calls.into_iter().collect()))
    };
    let body = parser.parse2(rest)?;
    Ok(Invocation { modifiers, body })
}

/// Splits `async; a(), b()` into `async` and `a(), b()`; only a `;` at the top
/// level counts (one inside a block argument does not).
fn split_at_semicolon(tokens: TokenStream) -> (Option<TokenStream>, TokenStream) {
    let tokens: Vec<TokenTree> = tokens.into_iter().collect();
    match tokens
        .iter()
        .position(|token| matches!(token, TokenTree::Punct(p) if p.as_char() == ';'))
    {
        None => (None, tokens.into_iter().collect()),
        Some(index) => {
            let mut rest = tokens;
            let after = rest.split_off(index + 1);
            rest.pop();
            (
                Some(rest.into_iter().collect()),
                after.into_iter().collect(),
            )
        }
    }
}

impl Invocation {
    pub(crate) fn validate(self) -> syn::Result<Checked> {
        let mut errors = Errors::default();
        let mut is_async = false;
        for modifier in &self.modifiers {
            let text = modifier.unraw().to_string();
            match text.as_str() {
                "async" if is_async => errors.spanned(modifier, "duplicate modifier `async`"),
                "async" => is_async = true,
                _ => {
                    let mut message = format!("unknown modifier `{text}` for run_concurrently!");
                    if let Some(near) = did_you_mean(&text, MODIFIERS) {
                        message.push_str(&format!("; did you mean `{near}`?"));
                    }
                    message.push_str("\nvalid modifiers: `async`");
                    errors.spanned(modifier, message);
                }
            }
        }
        if let Body::Calls(calls) = &self.body {
            for call in calls {
                if !is_call(call) {
                    errors.spanned(
                        call,
                        "expected a call to a task function, e.g. `fetch(1)`\n\
                         help: run_concurrently! starts each argument as a task; annotate the \
                         function with #[io_task] or #[cpu_task] and call it here",
                    );
                }
            }
        }
        errors.finish()?;
        Ok(Checked {
            is_async,
            body: self.body,
        })
    }
}

fn is_call(expr: &Expr) -> bool {
    match expr {
        Expr::Call(_) | Expr::MethodCall(_) => true,
        Expr::Group(group) => is_call(&group.expr),
        Expr::Paren(paren) => is_call(&paren.expr),
        _ => false,
    }
}

impl Checked {
    pub(crate) fn expand(&self) -> TokenStream {
        let private = Private(Span::call_site());
        match &self.body {
            Body::Calls(calls) => self.expand_calls(private, calls),
            Body::Each { for_token, iter } => self.expand_each(private, for_token, iter),
        }
    }

    fn expand_calls(&self, private: Private, calls: &[Expr]) -> TokenStream {
        let span = Span::mixed_site();
        let tasks: Vec<Ident> = (0..calls.len())
            .map(|i| format_ident!("__concurrency_task{}", i, span = span))
            .collect();
        let children: Vec<Ident> = (0..calls.len())
            .map(|i| format_ident!("__concurrency_child{}", i, span = span))
            .collect();
        let cx = Ident::new("__concurrency_cx", span);
        let ready = Ident::new("__concurrency_ready", span);

        // Each call is evaluated here, in order, at the macro's site; `as_task` turns a
        // value that is not a task into an error under that call.
        let lets = calls.iter().zip(&tasks).map(
            |(call, task)| quote_spanned!(call.span()=> let #task = #private::as_task(#call);),
        );
        let group = quote! {
            async move {
                #(let mut #children = ::core::pin::pin!(#private::Child::start(#tasks));)*
                ::core::future::poll_fn(|#cx| {
                    let mut #ready = true;
                    #(#ready &= #children.as_mut().poll_ready(#cx);)*
                    if #ready {
                        ::core::task::Poll::Ready(())
                    } else {
                        ::core::task::Poll::Pending
                    }
                })
                .await;
                (#(#children.as_mut().take(),)*)
            }
        };
        let results: Vec<Ident> = (0..calls.len())
            .map(|i| format_ident!("__concurrency_result{}", i, span = span))
            .collect();
        let values = if calls.len() == 1 {
            let result = &results[0];
            quote!(#private::value(#result))
        } else {
            quote!((#(#private::value(#results),)*))
        };
        let lets = quote!(#(#lets)*);
        let kinds = Ident::new("__concurrency_kinds", span);
        if self.is_async {
            quote! {{
                #lets
                async move {
                    let (#(#results,)*) = #group.await;
                    #values
                }
            }}
        } else {
            quote! {{
                #lets
                let #kinds = [#(#private::Task::kind(&#tasks)),*];
                let (#(#results,)*) = #private::block_on_group(&#kinds, #group);
                #values
            }}
        }
    }

    fn expand_each(&self, private: Private, for_token: &Token![for], iter: &Expr) -> TokenStream {
        let tasks = quote_spanned!(for_token.span=> #private::collect_tasks(#iter));
        if self.is_async {
            quote! {{
                let __concurrency_tasks = #tasks;
                async move { #private::values(#private::run_all(__concurrency_tasks).await) }
            }}
        } else {
            quote! {{
                let __concurrency_tasks = #tasks;
                let __concurrency_kinds = [#private::kind_of_all(&__concurrency_tasks)];
                #private::values(#private::block_on_group(
                    &__concurrency_kinds,
                    #private::run_all(__concurrency_tasks),
                ))
            }}
        }
    }
}
