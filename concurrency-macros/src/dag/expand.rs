//! Expansion of a checked `dag { ... }`: each node's maker (a closure of its inputs,
//! typed by them), then a future that owns every node and binding and, at each poll,
//! walks the nodes in the order they were written: it starts those whose inputs are
//! ready, polls those that run, and fills their bindings. See the runtime's
//! `group/dag.rs`.

use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::{Ident, LitStr};

use super::{Graph, NodeKind, User};
use crate::private::Private;

/// How the form reports failures, as the expansion needs it.
pub(crate) struct Form {
    /// The mode's type (`Values`, `FailFast` or `CollectAll`), at a span.
    pub(crate) marker: Box<dyn Fn(Span) -> TokenStream>,
    /// `all;`: nodes below a failure do not run; the final expression gets `Result`s.
    pub(crate) collect_all: bool,
    pub(crate) is_async: bool,
}

impl Graph {
    /// The expansion; `finish` turns the form's `Result` into its value.
    pub(crate) fn expand(
        &self,
        form: &Form,
        finish: impl Fn(TokenStream) -> TokenStream,
    ) -> TokenStream {
        let private = Private(Span::call_site());
        let site = Span::mixed_site();
        let make = |index: usize| format_ident!("__dag_make{}", index, span = site);
        let ty = |index: usize| format_ident!("__dag_type{}", index, span = site);
        let node = |index: usize| format_ident!("__dag_node{}", index, span = site);
        let slot = |index: usize| slot_name(index, site);
        let share = |index: usize| format_ident!("__DagShare{}", index, span = site);
        let cx = Ident::new("__dag_cx", site);
        let starter = Ident::new("__dag_starter", site);
        let finisher = Ident::new("__dag_finish", site);

        // The inputs of a maker: their types' markers and the closure's pattern, both
        // as nested pairs.
        let input_types = |inputs: &[usize], outcome: bool| {
            inputs.iter().rev().fold(quote!(()), |rest, &input| {
                let ty = ty(input);
                if outcome {
                    quote!((#private::dag::outcome_of(#ty), #rest))
                } else {
                    quote!((#ty, #rest))
                }
            })
        };
        let input_pattern = |inputs: &[usize]| {
            inputs.iter().rev().fold(quote!(()), |rest, &input| {
                let name = &self.nodes[input].name;
                quote!((#name, #rest))
            })
        };
        // Taking an input's value (or, for the final expression in `all;`, its
        // outcome): a clone for all but the last of several users.
        let take = |input: usize, outcome: bool| {
            let source = &self.nodes[input];
            let slot = slot(input);
            let shared = source.users.len() > 1;
            let task = LitStr::new(&source.task, Span::call_site());
            let at = source.name.span();
            let share = share(input);
            match (outcome, shared) {
                (false, false) => quote_spanned!(source.at=> #private::dag::Slot::take(&mut #slot)),
                (false, true) => {
                    quote_spanned!(at=> #private::dag::Slot::take_shared(&mut #slot, <_ as #share>::share))
                }
                (true, false) => {
                    quote_spanned!(source.at=> #private::dag::Slot::outcome(&mut #slot, #task))
                }
                (true, true) => {
                    quote_spanned!(at=> #private::dag::Slot::outcome_shared(&mut #slot, #task, <_ as #share>::share))
                }
            }
        };
        let input_values = |inputs: &[usize], outcome: bool| {
            inputs.iter().rev().fold(quote!(()), |rest, &input| {
                let value = take(input, outcome);
                quote!((#value, #rest))
            })
        };

        let mut outside = TokenStream::new();
        let mut inside = TokenStream::new();
        let mut steps = TokenStream::new();
        for (index, current) in self.nodes.iter().enumerate() {
            let (make, ty, node, slot) = (make(index), ty(index), node(index), slot(index));
            let expr = &current.expr;
            let at = current.at;
            // Everything that names the node's types is at its call: a call that is not
            // a task is then reported once, there.
            let (private, marker) = (Private(at), (form.marker)(at));
            let types = input_types(&current.inputs, false);
            let pattern = input_pattern(&current.inputs);
            let users = current.users.len() as u32;
            let (value_of, node_for) = match current.kind {
                NodeKind::Task => (quote!(value_of), quote!(node_for)),
                NodeKind::Each => (quote!(collection_value_of), quote!(collection_for)),
            };
            let body = match current.kind {
                NodeKind::Task => quote!(#expr),
                NodeKind::Each => quote_spanned!(at=> #private::collect_tasks(#expr)),
            };
            outside.extend(quote! {
                let #make = #private::dag::maker(#types, |#pattern| #body);
            });
            outside.extend(quote_spanned! {at=>
                let #ty = #private::dag::#value_of::<#marker, _, _, _>(&#make);
            });
            if users > 1 {
                outside.extend(self.share_trait(index, &share(index)));
            }
            inside.extend(quote_spanned! {at=>
                let mut #node = ::core::pin::pin!(#private::dag::#node_for::<#marker, _, _, _>(&#make));
            });
            inside.extend(quote_spanned! {at=>
                let mut #make = ::core::option::Option::Some(#make);
                let mut #slot = #private::dag::Slot::new(#ty, #users);
            });
            // Start the node once its inputs are ready.
            let values = input_values(&current.inputs, false);
            let started = match current.kind {
                NodeKind::Task => quote_spanned! {at=>
                    #node.as_mut().start(#private::as_task(__dag_make(#values)), &mut #starter)
                },
                NodeKind::Each => quote_spanned! {at=>
                    #node.as_mut().start(__dag_make(#values))
                },
            };
            let start = if form.collect_all && !current.inputs.is_empty() {
                let failures = current.inputs.iter().map(|&input| {
                    let slot = self::slot_name(input, site);
                    quote!(.or_else(|| #private::dag::Slot::failure(&#slot)))
                });
                quote! {
                    match ::core::option::Option::None #(#failures)* {
                        ::core::option::Option::Some(__dag_root) => {
                            #node.as_mut().skip();
                            #private::dag::Slot::fail_upstream(&mut #slot, __dag_root);
                        }
                        ::core::option::Option::None => #started,
                    }
                }
            } else {
                quote!(#started;)
            };
            let ready = current.inputs.iter().map(|&input| {
                let slot = self::slot_name(input, site);
                quote!(&& #private::dag::Slot::is_ready(&#slot))
            });
            let name = LitStr::new(&current.name.to_string(), Span::call_site());
            steps.extend(quote_spanned! {at=>
                if #make.is_some() #(#ready)* {
                    if let ::core::option::Option::Some(__dag_make) = #make.take() {
                        #start
                    }
                }
                match #node.as_mut().poll_node(#cx) {
                    ::core::task::Poll::Ready(::core::result::Result::Ok(__dag_binding)) => {
                        #private::dag::Slot::fill(&mut #slot, __dag_binding, #name);
                    }
                    ::core::task::Poll::Ready(::core::result::Result::Err(__dag_stop)) => {
                        return ::core::task::Poll::Ready(::core::result::Result::Err(__dag_stop));
                    }
                    ::core::task::Poll::Pending => {}
                }
            });
        }
        // The final expression, as a maker of the bindings it names.
        let (tail, tail_inputs) = match &self.tail {
            Some((expr, inputs)) => (quote!(#expr), inputs.as_slice()),
            None => (quote!(()), &[][..]),
        };
        let types = input_types(tail_inputs, form.collect_all);
        let pattern = input_pattern(tail_inputs);
        outside.extend(quote! {
            let #finisher = #private::dag::maker(#types, |#pattern| #tail);
        });
        inside.extend(quote! {
            let mut #finisher = ::core::option::Option::Some(#finisher);
        });
        if self.nodes.iter().any(|node| node.kind == NodeKind::Task) {
            inside.extend(quote! {
                let mut #starter = #private::dag::DagStarter::new();
            });
        }
        let done = (0..self.nodes.len()).map(|index| {
            let node = node(index);
            let at = self.nodes[index].at;
            quote_spanned!(at=> #node.is_done())
        });
        let values = input_values(tail_inputs, form.collect_all);
        let future = quote! {
            async move {
                #inside
                ::core::future::poll_fn(|#cx: &mut ::core::task::Context<'_>| {
                    #steps
                    if #(#done)&&* {
                        if let ::core::option::Option::Some(__dag_finish) = #finisher.take() {
                            return ::core::task::Poll::Ready(::core::result::Result::Ok(__dag_finish(#values)));
                        }
                    }
                    ::core::task::Poll::Pending
                })
                .await
            }
        };
        let outcome = Ident::new("__dag_outcome", site);
        if form.is_async {
            let finished = finish(quote!(#outcome));
            quote! {{
                #outside
                async move {
                    let #outcome = #future.await;
                    #finished
                }
            }}
        } else {
            let finished = finish(quote!(#outcome));
            quote! {{
                #outside
                let #outcome = #private::block_on_group(#private::Kinds::ANY, #future);
                #finished
            }}
        }
    }

    /// The check that a binding with several users can be cloned, with a message
    /// that names them.
    fn share_trait(&self, index: usize, share: &Ident) -> TokenStream {
        let source = &self.nodes[index];
        let users: Vec<String> = source
            .users
            .iter()
            .map(|user| match user {
                User::Node(user) => format!("`{}`", self.nodes[*user].name),
                User::Final => "the dag's value".to_owned(),
            })
            .collect();
        let listed = match users.as_slice() {
            [first, second] => format!("{first} and {second}"),
            [init @ .., last] => format!("{}, and {last}", init.join(", ")),
            [] => String::new(),
        };
        let message = LitStr::new(
            &format!(
                "`{}` is used by {listed}, so its value must be `Clone`: each of them gets its \
                 own (a clone for all but the last)",
                source.name
            ),
            Span::call_site(),
        );
        let at = source.name.span();
        quote_spanned! {at=>
            #[diagnostic::on_unimplemented(
                message = #message,
                label = "this binding's value is not `Clone`",
                note = "share one value instead: return an `Arc<T>` from the task (a clone is then a reference count), or derive `Clone` for the type"
            )]
            #[allow(non_camel_case_types)]
            trait #share: ::core::marker::Sized {
                fn share(&self) -> Self;
            }
            impl<T: ::core::clone::Clone> #share for T {
                #[inline(always)]
                fn share(&self) -> Self {
                    ::core::clone::Clone::clone(self)
                }
            }
        }
    }
}

fn slot_name(index: usize, site: Span) -> Ident {
    format_ident!("__dag_slot{}", index, span = site)
}
