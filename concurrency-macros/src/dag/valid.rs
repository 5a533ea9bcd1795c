//! Checks of `dag { ... }`, and the graph: which bindings each node's expression
//! names (its edges), and who uses each binding.

use proc_macro2::{Spacing, TokenStream, TokenTree};
use quote::ToTokens;
use syn::{Expr, Ident};

use super::{Dag, Node, NodeKind, Statement, User, Value};
use crate::errors::Errors;

/// The checked form.
pub(crate) struct Graph {
    pub(crate) nodes: Vec<Node>,
    /// The final expression and the nodes it names (each once).
    pub(crate) tail: Option<(Expr, Vec<usize>)>,
}

impl Dag {
    /// Checks the form; `collect_all` is the `all;` mode, in which the final
    /// expression gets each binding's `Result` (so it may name a binding only once).
    pub(crate) fn validate(self, collect_all: bool, errors: &mut Errors) -> Option<Graph> {
        let before = errors.len();
        let mut nodes: Vec<Node> = Vec::new();
        for statement in self.statements {
            match statement {
                Statement::Other(tokens) => errors.spanned(
                    tokens,
                    "expected `let NAME = task_call(..);` or `let NAME = for ITERATOR;` here: a \
                     dag holds `let` bindings of task calls, then its value (the final \
                     expression, e.g. `(a, b)`)",
                ),
                Statement::Let(statement) => {
                    let super::Let {
                        let_token,
                        pat,
                        ty,
                        value,
                    } = *statement;
                    if let Some((colon, ty)) = ty {
                        errors.spanned(
                            quote::quote!(#colon #ty),
                            "a dag binding takes the type of its task's result: remove the type \
                             annotation",
                        );
                    }
                    let name = match &pat {
                        syn::Pat::Ident(ident)
                            if ident.by_ref.is_none() && ident.subpat.is_none() =>
                        {
                            ident.ident.clone()
                        }
                        other => {
                            errors.spanned(
                                other,
                                "a dag binding is one name, as in `let page = fetch(url);`: \
                                 bind the task's result whole and take it apart where it is used",
                            );
                            continue;
                        }
                    };
                    let _ = let_token;
                    let (kind, expr, at) = match value {
                        Value::Call(expr) => {
                            if !crate::concurrently::is_call(&expr) {
                                errors.spanned(
                                    &expr,
                                    "expected a call to a task function, e.g. `let page = \
                                     fetch(url);`\nhelp: each `let` of a dag is a task: annotate \
                                     the function with #[io_task] or #[cpu_task] and call it here",
                                );
                            }
                            let at = syn::spanned::Spanned::span(&expr);
                            (NodeKind::Task, expr, at)
                        }
                        Value::Each { for_token, iter } => {
                            (NodeKind::Each { streams: false }, iter, for_token.span)
                        }
                    };
                    let task = match kind {
                        NodeKind::Task => task_name(&expr),
                        _ => match mapped(&expr) {
                            Some((_, function)) => function_name(function),
                            None => "collection".to_owned(),
                        },
                    };
                    nodes.push(Node {
                        name,
                        kind,
                        expr,
                        inputs: Vec::new(),
                        users: Vec::new(),
                        task,
                        at,
                    });
                }
            }
        }
        if nodes.is_empty() && errors.len() == before {
            errors.push(syn::Error::new(
                self.span,
                "a dag needs at least one node, e.g. `dag { let page = fetch(url); page }`",
            ));
        }
        // The edges: each name a node's expression uses, resolved to the last binding
        // above it with that name (a later `let` of the same name shadows it).
        for index in 0..nodes.len() {
            let mut inputs = Vec::new();
            for used in names(nodes[index].expr.to_token_stream()) {
                match nodes[..index].iter().rposition(|node| node.name == used) {
                    Some(input) if !inputs.contains(&input) => inputs.push(input),
                    Some(_) => {}
                    None => {
                        if nodes[index + 1..].iter().any(|node| node.name == used) {
                            errors.push(syn::Error::new(
                                used.span(),
                                format!(
                                    "`{used}` is bound by a later node of this dag: a node can use \
                                     only the bindings above it\nhelp: move this node below \
                                     `let {used} = ...`, or rename that binding if `{used}` here \
                                     means a variable outside the dag"
                                ),
                            ));
                        }
                    }
                }
            }
            for &input in &inputs {
                nodes[input].users.push(User::Node(index));
            }
            nodes[index].inputs = inputs;
        }
        let tail = self.tail.map(|tail| {
            let mut inputs = Vec::new();
            for used in names(tail.to_token_stream()) {
                let Some(input) = nodes.iter().rposition(|node| node.name == used) else {
                    continue;
                };
                if !inputs.contains(&input) {
                    inputs.push(input);
                } else if collect_all {
                    errors.spanned(
                        &used,
                        format!(
                            "in `all;`, the final expression gets each binding's `Result` once: \
                             `{used}` is named twice\nhelp: name it once, e.g. `({used}, ..)`, and \
                             use the `Result` after the form"
                        ),
                    );
                }
            }
            for &input in &inputs {
                nodes[input].users.push(User::Final);
            }
            (tail, inputs)
        });
        // Pipelined stages: `for xs.into_iter().map(f)` over a collection that only
        // this stage uses.
        for index in 0..nodes.len() {
            if !matches!(nodes[index].kind, NodeKind::Each { .. }) {
                continue;
            }
            let Some((source, function)) = mapped(&nodes[index].expr) else {
                continue;
            };
            let Some(source) = nodes[..index].iter().rposition(|node| node.name == *source) else {
                continue;
            };
            let streams_in = matches!(
                nodes[source].kind,
                NodeKind::Each { .. } | NodeKind::Stage { .. }
            ) && nodes[source].users == [User::Node(index)];
            if !streams_in {
                continue;
            }
            let function = Box::new(function.clone());
            match &mut nodes[source].kind {
                NodeKind::Each { streams } | NodeKind::Stage { streams, .. } => *streams = true,
                NodeKind::Task => {}
            }
            nodes[index].kind = NodeKind::Stage {
                source,
                function,
                streams: false,
            };
        }
        (errors.len() == before).then_some(Graph { nodes, tail })
    }
}

/// `xs.into_iter().map(f)`: `xs` and `f`.
fn mapped(expr: &Expr) -> Option<(&Ident, &Expr)> {
    let Expr::MethodCall(map) = expr else {
        return None;
    };
    let Expr::MethodCall(into_iter) = &*map.receiver else {
        return None;
    };
    if map.method != "map" || map.args.len() != 1 || into_iter.method != "into_iter" {
        return None;
    }
    if !into_iter.args.is_empty() {
        return None;
    }
    let Expr::Path(source) = &*into_iter.receiver else {
        return None;
    };
    let source = source.path.get_ident()?;
    Some((source, map.args.first()?))
}

/// A stage's function as written: its name, if it is a path.
fn function_name(function: &Expr) -> String {
    match function {
        Expr::Path(path) => path
            .path
            .segments
            .last()
            .map_or_else(|| "task".to_owned(), |segment| segment.ident.to_string()),
        _ => "task".to_owned(),
    }
}

/// The function a task node calls, as written: its name for a node that does not run.
fn task_name(expr: &Expr) -> String {
    match expr {
        Expr::Call(call) => match &*call.func {
            Expr::Path(path) => path
                .path
                .segments
                .last()
                .map_or_else(|| "task".to_owned(), |segment| segment.ident.to_string()),
            _ => "task".to_owned(),
        },
        Expr::MethodCall(call) => call.method.to_string(),
        Expr::Group(group) => task_name(&group.expr),
        Expr::Paren(paren) => task_name(&paren.expr),
        _ => "task".to_owned(),
    }
}

/// The names an expression may use as variables, in order: every identifier except
/// those after `.` (a field or method), next to `::` (a path's other segments), or
/// before `!` (a macro's name).
fn names(tokens: TokenStream) -> Vec<Ident> {
    let mut found = Vec::new();
    collect(tokens, &mut found);
    found
}

fn collect(tokens: TokenStream, found: &mut Vec<Ident>) {
    let tokens: Vec<TokenTree> = tokens.into_iter().collect();
    let is_punct = |index: Option<usize>, ch: char| {
        index
            .and_then(|index| tokens.get(index))
            .is_some_and(|token| matches!(token, TokenTree::Punct(punct) if punct.as_char() == ch))
    };
    for (index, token) in tokens.iter().enumerate() {
        match token {
            TokenTree::Group(group) => collect(group.stream(), found),
            TokenTree::Ident(ident) => {
                let before = index.checked_sub(1);
                let after_dot = is_punct(before, '.');
                let after_path = is_punct(before, ':')
                    && index >= 2
                    && is_punct(Some(index - 2), ':')
                    && matches!(&tokens[index - 2], TokenTree::Punct(p) if p.spacing() == Spacing::Joint);
                let before_path = is_punct(Some(index + 1), ':') && is_punct(Some(index + 2), ':');
                let macro_name = is_punct(Some(index + 1), '!');
                if !(after_dot || after_path || before_path || macro_name) {
                    found.push(ident.clone());
                }
            }
            _ => {}
        }
    }
}
