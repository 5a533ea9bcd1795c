//! `run_concurrently!(dag { ... })`: a dependency graph of tasks written as `let`
//! bindings. Parsed (`parse.rs`), checked and turned into a graph (`valid.rs`), then
//! expanded (`expand.rs`), in that order.
//!
//! ```text
//! dag { NODE* [FINAL] }
//! NODE  := let NAME = CALL ;          a task node: CALL is a call of a task function
//!        | let NAME = for ITERATOR ;  a collection node: a `Vec` of every task's value
//! FINAL := EXPRESSION                 the form's value (`()` when there is none)
//! ```
//!
//! A node's expression may name the bindings above it: those are its inputs (its
//! edges), and it starts when they are ready. A collection node of the shape
//! `for xs.into_iter().map(f)` over a collection node `xs` that nothing else uses is
//! a pipelined stage: its task `i` starts when item `i` of `xs` is ready.

mod expand;
mod parse;
mod valid;

pub(crate) use expand::Form;
pub(crate) use parse::parse;
pub(crate) use valid::Graph;

use proc_macro2::{Span, TokenStream};
use syn::{Expr, Ident, Token};

/// The form as written.
pub(crate) struct Dag {
    /// The `dag` keyword, for errors about the whole form.
    pub(crate) span: Span,
    pub(crate) statements: Vec<Statement>,
    pub(crate) tail: Option<Expr>,
}

/// One statement of the form, as written.
pub(crate) enum Statement {
    /// `let NAME = ...;`
    Let(Box<Let>),
    /// Anything else (reported by `valid.rs`).
    Other(TokenStream),
}

/// `let NAME = ...;`, as written.
pub(crate) struct Let {
    pub(crate) let_token: Token![let],
    pub(crate) pat: syn::Pat,
    pub(crate) ty: Option<(Token![:], Box<syn::Type>)>,
    pub(crate) value: Value,
}

/// The right side of a `let`.
pub(crate) enum Value {
    Call(Expr),
    Each { for_token: Token![for], iter: Expr },
}

/// A node of the checked graph.
pub(crate) struct Node {
    pub(crate) name: Ident,
    pub(crate) kind: NodeKind,
    /// The expression: the call, or the collection's iterator.
    pub(crate) expr: Expr,
    /// The nodes whose bindings the expression names, in the order first named.
    pub(crate) inputs: Vec<usize>,
    /// How many nodes (and the final expression) use this node's binding.
    pub(crate) users: Vec<User>,
    /// The task function's name as written (for a node that does not run).
    pub(crate) task: String,
    /// Where a value that is not a task is reported: the call, or `for`.
    pub(crate) at: Span,
}

pub(crate) enum NodeKind {
    /// `let x = call(..);`
    Task,
    /// `let xs = for ITERATOR;`; `streams` when its only user is a pipelined stage
    /// (its items go there one by one).
    Each { streams: bool },
    /// `let ys = for xs.into_iter().map(FUNCTION);` over a collection `xs` that
    /// nothing else uses: task `i` starts when item `i` of `xs` is ready.
    Stage {
        source: usize,
        function: Box<Expr>,
        streams: bool,
    },
}

/// A user of a binding: another node or the final expression.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum User {
    Node(usize),
    Final,
}
