//! `run_concurrently!`: parse, validate and expand, in that order.
//!
//! Grammar:
//!
//! ```text
//! run_concurrently!( [MODIFIER, ... ;] CALL, CALL, ... [,] )
//! run_concurrently!( [MODIFIER, ... ;] for ITERATOR )
//! run_concurrently!( [MODIFIER, ... ;] dag { ... } )   (see `dag/`)
//! MODIFIER := async | try | all | describe   (`describe`: a dag's graph as DOT text)
//!           | progress(EXPR)                (a collection's progress, to a renderer)
//! ```
//!
//! `try` and `all` choose how failures are reported (see [`Mode`]); `async` makes
//! the invocation a future.

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

const MODIFIERS: &[&str] = &["async", "try", "all", "describe", "progress"];

/// How a group reports failures.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// The functions' values; the first failure cancels the rest and panics.
    Values,
    /// `try;`: `Result<values, TaskError>`; the first failure (including a task's
    /// own `Err`) cancels the rest and is returned.
    FailFast,
    /// `all;`: every task's `Result`, in argument order; nothing is cancelled.
    CollectAll,
}

impl Mode {
    /// The runtime's type for this mode (at `private`'s span).
    fn marker(self, private: Private) -> TokenStream {
        match self {
            Mode::Values => quote_spanned!(private.0=> #private::Values),
            Mode::FailFast => quote_spanned!(private.0=> #private::FailFast),
            Mode::CollectAll => quote_spanned!(private.0=> #private::CollectAll),
        }
    }

    /// Turns the group's `Result<_, _>` into what the invocation returns (at
    /// `private`'s span).
    fn finish(self, private: Private, outcome: TokenStream) -> TokenStream {
        match self {
            Mode::Values => quote_spanned!(private.0=> #private::value(#outcome)),
            Mode::FailFast => outcome,
            Mode::CollectAll => quote_spanned!(private.0=> #private::settled(#outcome)),
        }
    }
}

const USAGE: &str = "expected task calls, e.g. `run_concurrently!(fetch(1), crunch(2))`, \
                     or a collection, e.g. `run_concurrently!(for urls.into_iter().map(download))`";

/// One parsed invocation.
pub(crate) struct Invocation {
    modifiers: Vec<Ident>,
    /// `progress(renderer)`, each one written.
    progress: Vec<(Ident, Expr)>,
    body: Body,
}

enum Body {
    /// `a(1), b(2)`: a fixed group, results as a tuple.
    Calls(Vec<Expr>),
    /// `for iter`: every task the iterator yields, results as a `Vec`.
    Each { for_token: Token![for], iter: Expr },
    /// `dag { ... }`: tasks that use each other's results.
    Dag(crate::dag::Dag),
}

/// The body, checked.
enum CheckedBody {
    Calls(Vec<Expr>),
    Each { for_token: Token![for], iter: Expr },
    Dag(crate::dag::Graph),
}

/// Checked form, ready to expand.
pub(crate) struct Checked {
    is_async: bool,
    /// `describe;`: the dag's graph as text, nothing run.
    describe: bool,
    /// `progress(renderer)`: the collection's progress goes to `renderer`.
    progress: Option<Expr>,
    mode: Mode,
    body: CheckedBody,
}

pub(crate) fn parse(tokens: TokenStream) -> syn::Result<Invocation> {
    if tokens.is_empty() {
        return Err(syn::Error::new(
            Span::call_site(),
            format!("run_concurrently! needs at least one task; {USAGE}"),
        ));
    }
    let (modifier_tokens, rest) = split_at_semicolon(tokens);
    let mut progress = Vec::new();
    let modifiers = match modifier_tokens {
        None => Vec::new(),
        Some(tokens) => {
            let parser = |input: ParseStream<'_>| -> syn::Result<Vec<Ident>> {
                let mut idents = Vec::new();
                while !input.is_empty() {
                    let ident = Ident::parse_any(input)?;
                    if input.peek(syn::token::Paren) {
                        let content;
                        syn::parenthesized!(content in input);
                        let argument: Expr = content.parse()?;
                        if ident != "progress" {
                            return Err(syn::Error::new(
                                ident.span(),
                                format!("the modifier `{ident}` takes no argument"),
                            ));
                        }
                        progress.push((ident, argument));
                    } else {
                        idents.push(ident);
                    }
                    if input.is_empty() {
                        break;
                    }
                    input.parse::<Token![,]>()?;
                }
                Ok(idents)
            };
            parser.parse2(tokens).map_err(|e| {
                if e.to_string().contains("takes no argument") {
                    e
                } else {
                    syn::Error::new(e.span(), "expected modifiers before `;`, e.g. `async;`")
                }
            })?
        }
    };
    let parser = |input: ParseStream<'_>| -> syn::Result<Body> {
        if input.is_empty() {
            return Err(input.error(format!(
                "run_concurrently! needs at least one task; {USAGE}"
            )));
        }
        if input.peek(Ident)
            && input.peek2(syn::token::Brace)
            && input.fork().parse::<Ident>()? == "dag"
        {
            let keyword: Ident = input.parse()?;
            let content;
            syn::braced!(content in input);
            let body: TokenStream = content.parse()?;
            if input.peek(Token![,]) {
                input.parse::<Token![,]>()?;
            }
            return Ok(Body::Dag(crate::dag::parse(keyword.span(), body)?));
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
    Ok(Invocation {
        modifiers,
        progress,
        body,
    })
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
        let mut describe: Option<&Ident> = None;
        let mut mode: Option<(Mode, &Ident)> = None;
        for modifier in &self.modifiers {
            let text = modifier.unraw().to_string();
            let chosen = match text.as_str() {
                "async" if is_async => {
                    errors.spanned(modifier, "duplicate modifier `async`");
                    continue;
                }
                "async" => {
                    is_async = true;
                    continue;
                }
                "describe" => {
                    describe = Some(modifier);
                    continue;
                }
                "progress" => {
                    errors.spanned(
                        modifier,
                        "`progress` takes the renderer of the collection's progress: \
                         `progress(bar)`, or a closure `progress(|status| ..)`",
                    );
                    continue;
                }
                "try" => Mode::FailFast,
                "all" => Mode::CollectAll,
                _ => {
                    let mut message = format!("unknown modifier `{text}` for run_concurrently!");
                    if let Some(near) = did_you_mean(&text, MODIFIERS) {
                        message.push_str(&format!("; did you mean `{near}`?"));
                    }
                    message.push_str(
                        "\nvalid modifiers: `async`, `try`, `all`, `describe`, `progress(..)`",
                    );
                    errors.spanned(modifier, message);
                    continue;
                }
            };
            match mode {
                Some((_, first)) if first.unraw() == text => {
                    errors.spanned(modifier, format_args!("duplicate modifier `{text}`"));
                }
                Some((_, first)) => errors.spanned(
                    modifier,
                    format_args!(
                        "`{text}` contradicts `{}`: `try` stops at the first failure and returns \
                         it, `all` runs every task and returns each one's `Result`; choose one",
                        first.unraw()
                    ),
                ),
                None => mode = Some((chosen, modifier)),
            }
        }
        if let Some(describe) = describe {
            if !matches!(self.body, Body::Dag(_)) {
                errors.spanned(
                    describe,
                    "`describe` draws the graph of a `dag { ... }` without running it; this \
                     invocation has no dag",
                );
            } else if self.modifiers.len() > 1 {
                errors.spanned(
                    describe,
                    "`describe` draws the graph without running it: it takes no other modifier",
                );
            }
        }
        for (index, (ident, _)) in self.progress.iter().enumerate() {
            if index > 0 {
                errors.spanned(ident, "duplicate modifier `progress`");
            } else if !matches!(self.body, Body::Each { .. }) {
                errors.spanned(
                    ident,
                    "`progress(..)` reports the tasks of a collection as they end: it needs the \
                     `for` form, e.g. `run_concurrently!(progress(bar); for urls.into_iter().map(fetch))`",
                );
            }
        }
        let mode = mode.map_or(Mode::Values, |(mode, _)| mode);
        let body = match self.body {
            Body::Calls(calls) => {
                for call in &calls {
                    if !is_call(call) {
                        errors.spanned(
                            call,
                            "expected a call to a task function, e.g. `fetch(1)`\n\
                             help: run_concurrently! starts each argument as a task; annotate the \
                             function with #[io_task] or #[cpu_task] and call it here",
                        );
                    }
                }
                Some(CheckedBody::Calls(calls))
            }
            Body::Each { for_token, iter } => Some(CheckedBody::Each { for_token, iter }),
            Body::Dag(dag) => dag
                .validate(mode == Mode::CollectAll, &mut errors)
                .map(CheckedBody::Dag),
        };
        errors.finish()?;
        let Some(body) = body else {
            unreachable!("a body that failed its checks reported an error")
        };
        Ok(Checked {
            is_async,
            describe: describe.is_some(),
            progress: self
                .progress
                .into_iter()
                .next()
                .map(|(_, renderer)| renderer),
            mode,
            body,
        })
    }
}

pub(crate) fn is_call(expr: &Expr) -> bool {
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
            CheckedBody::Calls(calls) => self.expand_calls(private, calls),
            CheckedBody::Each { for_token, iter } => self.expand_each(for_token, iter),
            CheckedBody::Dag(graph) if self.describe => graph.describe(),
            CheckedBody::Dag(graph) => {
                let mode = self.mode;
                let form = crate::dag::Form {
                    marker: Box::new(move |at| mode.marker(Private(at))),
                    collect_all: self.mode == Mode::CollectAll,
                    is_async: self.is_async,
                };
                graph.expand(&form, |outcome| self.mode.finish(private, outcome))
            }
        }
    }

    fn expand_calls(&self, private: Private, calls: &[Expr]) -> TokenStream {
        let span = Span::mixed_site();
        // The tasks as a list, `Cons(child0, Cons(child1, End))`, built in place in the
        // group's future. Each call is evaluated here, in order, at the macro's site;
        // `as_task` turns a value that is not a task into an error under that call.
        let children = calls
            .iter()
            .rev()
            .fold(quote!(#private::End::new()), |tail, call| {
                // The value goes through a binding so that `as_task`'s argument and the
                // `as_task(..)` expression have one span: a value that is not a task is
                // then reported once, at the call (rustc reports a failed bound once per
                // span).
                let at = call.span();
                // (At the call's own span, not resolved at the macro's site: that would
                // move the span. The binding is declared after the call is evaluated, so
                // the call cannot see it.)
                let task = Ident::new("__concurrency_task", at);
                let private = Private(at);
                let marker = self.mode.marker(private);
                quote_spanned! {at=>
                    #private::Cons::new(
                        {
                            let #task = #call;
                            #private::Child::<_, #marker>::new(#private::as_task(#task))
                        },
                        #tail,
                    )
                }
            });
        // The outcomes come back as nested pairs; the invocation gives a flat tuple (a
        // single call gives its value, not a 1-tuple).
        let items: Vec<Ident> = (0..calls.len())
            .map(|i| format_ident!("__concurrency_item{}", i, span = span))
            .collect();
        let nested = items
            .iter()
            .rev()
            .fold(quote!(()), |tail, item| quote!((#item, #tail)));
        let flat = if items.len() == 1 {
            let item = &items[0];
            quote!(#item)
        } else {
            quote!((#(#items,)*))
        };
        let outcome = Ident::new("__concurrency_outcome", span);
        let flattened = quote!(#outcome.map(|#nested| #flat));
        let group = Ident::new("__concurrency_group", span);
        if self.is_async {
            // The group's future itself; its outcome is finished inside it.
            let finish = self.mode.finish(private, flattened);
            quote! {
                #private::Group::new(#children, |#outcome| #finish)
            }
        } else {
            let finish = self.mode.finish(
                private,
                quote!({
                    let #outcome = #private::block_on_group(
                        #private::Group::kinds(&#group),
                        #group,
                    );
                    #flattened
                }),
            );
            quote! {{
                let #group = #private::Group::new(#children, |#outcome| #outcome);
                #finish
            }}
        }
    }

    fn expand_each(&self, for_token: &Token![for], iter: &Expr) -> TokenStream {
        // Every use of the tasks is spanned at `for`: an iterator of values that are not
        // tasks is then reported once (rustc reports a failed bound once per span).
        let at = for_token.span;
        let private = Private(at);
        // (Names at `for` itself: a name resolved at the macro's site would be reported
        // at the macro's site. The iterator is evaluated before they exist.)
        let tasks = Ident::new("__concurrency_tasks", at);
        let kinds = Ident::new("__concurrency_kinds", at);
        let marker = self.mode.marker(private);
        let run = match &self.progress {
            None => quote_spanned!(at=> #private::run_all::<_, #marker>(#tasks)),
            Some(renderer) => {
                quote_spanned!(at=> #private::run_all_with_progress::<_, #marker>(#tasks, #renderer))
            }
        };
        if self.is_async {
            let finish = self.mode.finish(private, quote_spanned!(at=> #run.await));
            quote_spanned! {at=> {
                let #tasks = #iter;
                let #tasks = #private::collect_tasks(#tasks);
                async move { #finish }
            }}
        } else {
            let finish = self.mode.finish(
                private,
                quote_spanned!(at=> #private::block_on_group(#kinds, #run)),
            );
            quote_spanned! {at=> {
                let #tasks = #iter;
                let #tasks = #private::collect_tasks(#tasks);
                let #kinds = #private::kind_of_all(&#tasks);
                #finish
            }}
        }
    }
}
