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
        let type_of = |index: usize| format_ident!("__dag_type{}", index, span = site);
        let node_of = |index: usize| format_ident!("__dag_node{}", index, span = site);
        let slot = |index: usize| slot_name(index, site);
        // Named after the binding: rustc's note names the trait ("required for `Page`
        // to implement `page_is_shared`").
        let share =
            |index: usize| format_ident!("{}_is_shared", self.nodes[index].name, span = site);
        let cx = Ident::new("__dag_cx", site);
        let starter = Ident::new("__dag_starter", site);
        let finisher = Ident::new("__dag_finish", site);

        // The inputs of a maker: their types' markers and the closure's pattern, both
        // as nested pairs.
        let input_types = |inputs: &[usize], outcome: bool| {
            inputs.iter().rev().fold(quote!(()), |rest, &input| {
                let ty = type_of(input);
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
            let (make, ty, node, slot) = (make(index), type_of(index), node_of(index), slot(index));
            let expr = &current.expr;
            let at = current.at;
            // Everything that names the node's types is at its call: a call that is not
            // a task is then reported once, there.
            let (private, marker) = (Private(at), (form.marker)(at));
            let users = current.users.len() as u32;
            // A stage's maker makes its function from its other inputs; the items come
            // from its source one by one.
            let (source, own_inputs): (Option<usize>, Vec<usize>) = match &current.kind {
                NodeKind::Stage { source, .. } => (
                    Some(*source),
                    current
                        .inputs
                        .iter()
                        .copied()
                        .filter(|input| input != source)
                        .collect(),
                ),
                _ => (None, current.inputs.clone()),
            };
            let types = input_types(&own_inputs, false);
            let pattern = input_pattern(&own_inputs);
            let (value_of, node_for) = match &current.kind {
                NodeKind::Task => (quote!(value_of), quote!(node_for)),
                NodeKind::Each { streams: false } => {
                    (quote!(collection_value_of), quote!(collection_for))
                }
                NodeKind::Each { streams: true } => {
                    (quote!(collection_value_of), quote!(stream_for))
                }
                NodeKind::Stage { .. } => (quote!(stage_value_of), quote!(stage_for)),
            };
            let wildcards = match &current.kind {
                NodeKind::Stage { .. } => quote_spanned!(at=> _, _, _, _, _),
                _ => quote_spanned!(at=> _, _, _),
            };
            let body = match &current.kind {
                NodeKind::Task => quote!(#expr),
                NodeKind::Each { .. } => quote_spanned!(at=> #private::collect_tasks(#expr)),
                NodeKind::Stage {
                    source, function, ..
                } => {
                    let items = type_of(*source);
                    let item = if form.collect_all {
                        quote!(#private::dag::success_of(#private::dag::element_of(#items)))
                    } else {
                        quote!(#private::dag::element_of(#items))
                    };
                    quote_spanned!(at=> #private::dag::stage_fn(#item, #function))
                }
            };
            outside.extend(quote! {
                let #make = #private::dag::maker(#types, |#pattern| #body);
            });
            outside.extend(quote_spanned! {at=>
                let #ty = #private::dag::#value_of::<#marker, #wildcards>(&#make);
            });
            if users > 1 {
                outside.extend(self.share_trait(index, &share(index)));
            }
            inside.extend(quote_spanned! {at=>
                let mut #node = ::core::pin::pin!(#private::dag::#node_for::<#marker, #wildcards>(&#make));
            });
            let function = format_ident!("__dag_function{}", index, span = site);
            if source.is_some() {
                inside.extend(quote! {
                    let mut #function = ::core::option::Option::None;
                });
            }
            inside.extend(quote_spanned! {at=>
                let mut #make = ::core::option::Option::Some(#make);
                let mut #slot = #private::dag::Slot::new(#ty, #users);
            });
            // Start the node once its inputs are ready.
            let values = input_values(&own_inputs, false);
            let started = match &current.kind {
                NodeKind::Task => quote_spanned! {at=>
                    #node.as_mut().start(#private::as_task(__dag_make(#values)), &mut #starter)
                },
                NodeKind::Each { streams: false } => quote_spanned! {at=>
                    #node.as_mut().start(__dag_make(#values), &mut #starter)
                },
                NodeKind::Each { streams: true } => quote_spanned! {at=>
                    #node.as_mut().start(__dag_make(#values), true, &mut #starter)
                },
                NodeKind::Stage {
                    source, streams, ..
                } => {
                    let source = node_of(*source);
                    quote_spanned! {at=>
                        {
                            #function = ::core::option::Option::Some(__dag_make(#values));
                            #node.expect(#source.count().unwrap_or(0), #streams);
                        }
                    }
                }
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
            // A stage's items: each one its source finished, as it comes.
            let feed = match &current.kind {
                NodeKind::Stage { source, .. } => {
                    let source_node = node_of(*source);
                    let source_name =
                        LitStr::new(&self.nodes[*source].name.to_string(), Span::call_site());
                    let task = LitStr::new(&current.task, Span::call_site());
                    let push = if form.collect_all {
                        quote! {
                            match __dag_item {
                                ::core::result::Result::Ok(__dag_item) => #node.push(__dag_index, #private::as_task(__dag_function(__dag_item)), &mut #starter),
                                ::core::result::Result::Err(__dag_failed) => #node.skip_item(__dag_index, #private::dag::upstream(#task, #source_name, &__dag_failed)),
                            }
                        }
                    } else {
                        quote!(#node.push(__dag_index, #private::as_task(__dag_function(__dag_item)), &mut #starter);)
                    };
                    quote_spanned! {at=>
                        if let ::core::option::Option::Some(__dag_function) = #function.as_mut() {
                            for (__dag_index, __dag_item) in #source_node.finished() {
                                #push
                            }
                        }
                    }
                }
                _ => TokenStream::new(),
            };
            // A stage starts once its source has started (and its other inputs are
            // ready); in `all;`, also once its source is known not to run.
            let source_started = source.map(|source| {
                let (source_node, source_slot) = (node_of(source), self::slot_name(source, site));
                quote!(&& (#source_node.count().is_some() || #private::dag::Slot::is_ready(&#source_slot)))
            });
            let inputs_ready = own_inputs.iter().map(|&input| {
                let slot = self::slot_name(input, site);
                quote!(&& #private::dag::Slot::is_ready(&#slot))
            });
            let ready = source_started.into_iter().chain(inputs_ready);
            let name = LitStr::new(&current.name.to_string(), Span::call_site());
            steps.extend(quote_spanned! {at=>
                if #make.is_some() #(#ready)* {
                    if let ::core::option::Option::Some(__dag_make) = #make.take() {
                        #start
                    }
                }
                #feed
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
        inside.extend(quote! {
            let mut #starter = #private::dag::DagStarter::new();
        });
        let done = (0..self.nodes.len()).map(|index| {
            let node = node_of(index);
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

impl Graph {
    /// `describe;`: the graph as DOT text, each node's placement read from its
    /// function's type (no argument is evaluated, no task made).
    pub(crate) fn describe(&self) -> TokenStream {
        let private = Private(Span::call_site());
        let dot = Ident::new("__dag_dot", Span::mixed_site());
        let mut body = TokenStream::new();
        for (index, node) in self.nodes.iter().enumerate() {
            let name = LitStr::new(&node.name.to_string(), Span::call_site());
            let function = function_path(node);
            let label = LitStr::new(
                &function.map_or_else(
                    || node.task.clone(),
                    |path| {
                        path.segments
                            .iter()
                            .map(|segment| segment.ident.to_string())
                            .collect::<Vec<_>>()
                            .join("::")
                    },
                ),
                Span::call_site(),
            );
            let kind = match function {
                Some(path) => {
                    quote_spanned!(node.at=> ::core::option::Option::Some(#private::dag::kind_of_fn(&#path)))
                }
                None => quote!(::core::option::Option::None),
            };
            let collection = !matches!(node.kind, NodeKind::Task);
            body.extend(quote! {
                #dot.node(#index, #name, #label, #kind, #collection);
            });
            for input in &node.inputs {
                body.extend(quote!(#dot.edge(#input, #index);));
            }
        }
        if let Some((_, inputs)) = &self.tail {
            body.extend(quote!(#dot.value(&[#(#inputs),*]);));
        }
        quote! {{
            let mut #dot = #private::dag::Dot::new();
            #body
            #dot.finish()
        }}
    }
}

/// The function a node's tasks are calls of, when it is written as a path: the
/// called path of a task node, the mapped function of a collection (`...map(f)`).
fn function_path(node: &super::Node) -> Option<&syn::Path> {
    let called = match (&node.kind, &node.expr) {
        (NodeKind::Task, syn::Expr::Call(call)) => &*call.func,
        (NodeKind::Stage { function, .. }, _) => function,
        (NodeKind::Each { .. }, syn::Expr::MethodCall(call))
            if call.method == "map" && call.args.len() == 1 =>
        {
            &call.args[0]
        }
        _ => return None,
    };
    match called {
        syn::Expr::Path(path) if path.qself.is_none() => Some(&path.path),
        _ => None,
    }
}
