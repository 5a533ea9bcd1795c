//! Rules a task function must follow, checked before any code is generated.
//! Every rule here has a compile-fail case under `tests/ui/`.

use proc_macro2::{Delimiter, Ident, TokenStream, TokenTree};
use quote::ToTokens;
use syn::{ReturnType, Type};

use crate::ast::TaskFn;
use crate::attr::Attribute;
use crate::errors::Errors;

impl TaskFn<'_> {
    /// Checks the function and its options, reporting every mistake in `errors`.
    /// `false` if the function cannot be expanded as a task (a mistake in its signature
    /// or body); mistakes in the options alone leave it expandable with the options that
    /// are right.
    pub(crate) fn validate(&self, errors: &mut Errors) -> bool {
        let before = errors.len();
        let sig = &self.original.sig;
        let display = self.attribute.display();

        if let (Attribute::CpuTask, Some(token)) = (self.attribute, &sig.asyncness) {
            errors.spanned(
                token,
                "#[cpu_task] cannot be used on an `async fn`: cpu tasks run on rayon's threads, \
                 which do not poll futures\n\
                 help: use #[io_task] for async work, or remove `async` to make it a cpu task",
            );
        }
        if let Some(token) = &sig.constness {
            errors.spanned(
                token,
                format_args!("{display} cannot be used on a `const fn`"),
            );
        }
        if let Some(token) = &sig.unsafety {
            errors.spanned(
                token,
                format_args!(
                    "{display} cannot be used on an `unsafe fn`: the task's caller could not \
                     uphold its safety contract on another thread"
                ),
            );
        }
        if let Some(abi) = &sig.abi {
            errors.spanned(
                abi,
                format_args!("{display} cannot be used on an `extern` function"),
            );
        }
        if let Some(variadic) = &sig.variadic {
            errors.spanned(
                variadic,
                format_args!("{display} cannot be used on a variadic function"),
            );
        }
        if let Some(receiver) = self.receiver {
            errors.spanned(
                receiver,
                format_args!(
                    "{display} cannot be used on a method with a `self` receiver: the task moves its \
                     arguments to another thread\n\
                     help: make it an associated function that takes owned data, e.g. \
                     `fn run(this: Arc<Self>)`, or a free function"
                ),
            );
        }
        for arg in &self.args {
            if let Some(reference) = borrowed(arg.ty) {
                errors.spanned(
                    reference,
                    "task arguments must be owned: the task runs on another thread and may outlive \
                     the caller's borrow\n\
                     help: take an owned value instead (`String` for `&str`, `Vec<T>` for `&[T]`, \
                     or an `Arc<T>`)",
                );
            }
        }
        if let ReturnType::Type(_, ty) = &sig.output {
            if let Some(reference) = borrowed(ty) {
                errors.spanned(
                    reference,
                    "a task must return an owned value: its result crosses threads\n\
                     help: return `String` for `&str`, `Vec<T>` for `&[T]`, or an `Arc<T>`",
                );
            }
            if let Type::ImplTrait(impl_trait) = &**ty {
                errors.spanned(
                    impl_trait,
                    format_args!(
                        "{display} functions must return a concrete type, not `impl Trait`"
                    ),
                );
            }
        }
        if let Some(process) = &self.options.process {
            if !cfg!(feature = "process") {
                errors.spanned(
                    process,
                    "process tasks need the `process` feature of `concurrency-runtime`, which \
                     is off\nhelp: enable it (it is on by default): \
                     `concurrency-runtime = { version = \"...\", features = [\"process\"] }`",
                );
            } else if !cfg!(target_os = "linux") {
                errors.spanned(process, "process tasks run on Linux only");
            }
            self.validate_process(errors);
        }
        let expandable = errors.len() == before;
        self.validate_policy(errors);
        expandable
    }

    /// Options that contradict each other or the function.
    fn validate_policy(&self, errors: &mut Errors) {
        let options = &self.options;
        if options.retries.is_none() {
            if let Some(backoff) = &options.backoff {
                errors.spanned(
                    &backoff.key,
                    "`backoff` without `retries`: there is no retry to wait for\n\
                     help: add `retries = N`, or remove `backoff`",
                );
            }
            if let Some(retry_on) = &options.retry_on {
                errors.spanned(
                    &retry_on.key,
                    "`retry_on` without `retries`: nothing is retried\n\
                     help: add `retries = N`, or remove `retry_on`",
                );
            }
        }
        let Some(retry_on) = &options.retry_on else {
            return;
        };
        for kind in &retry_on.value {
            if kind == "crash" && options.process.is_none() {
                errors.spanned(
                    kind,
                    "`crash` in `retry_on`, but only process tasks crash (their worker process \
                     dies); this task runs in this process\n\
                     help: use `#[cpu_task(process, ...)]`, or remove `crash`",
                );
            }
            if kind == "timeout" && options.timeout.is_none() {
                errors.spanned(
                    kind,
                    "`timeout` in `retry_on`, but the task has no `timeout`\n\
                     help: add `timeout = \"...\"`, or remove `timeout` from the list",
                );
            }
            if kind == "error" && !self.is_fallible() {
                errors.spanned(
                    kind,
                    "`error` in `retry_on`, but the task does not return a `Result`: it has no \
                     error of its own to retry",
                );
            }
        }
    }

    /// Process tasks are found in the worker by a fixed id and get their arguments
    /// by deserialization: no generics, only nameable owned types.
    fn validate_process(&self, errors: &mut Errors) {
        let generics = &self.original.sig.generics;
        if !generics.params.is_empty() {
            errors.spanned(
                &generics.params,
                "#[cpu_task(process)] functions cannot be generic: the worker process finds the task \
                 by a fixed id and must know its argument types\n\
                 help: write one process task per concrete type",
            );
        }
        for arg in &self.args {
            if let Type::ImplTrait(impl_trait) = arg.ty {
                errors.spanned(
                    impl_trait,
                    "#[cpu_task(process)] arguments must be concrete serde types, not `impl Trait`",
                );
            }
        }
        if let Some(where_clause) = &generics.where_clause {
            errors.spanned(
                where_clause,
                "#[cpu_task(process)] functions cannot have a `where` clause: the worker process \
                 runs the body as a separate, non-generic function\n\
                 help: remove the `where` clause (a process task's types are concrete)",
            );
        }
        if let Some(self_token) = find_self(self.original.block.to_token_stream()) {
            errors.spanned(
                self_token,
                "the body of a #[cpu_task(process)] function cannot use `Self`: the worker \
                 process runs it as a separate function, outside the `impl` block\n\
                 help: name the type instead (e.g. `Parser::helper()` for `Self::helper()`)",
            );
        }
    }
}

/// The first `Self` in a function body, outside the items the body declares (an `impl`
/// or `trait` block inside it has a `Self` of its own).
fn find_self(tokens: TokenStream) -> Option<Ident> {
    let mut skip_next_block = false;
    for token in tokens {
        match token {
            TokenTree::Ident(ident) if ident == "Self" => return Some(ident),
            TokenTree::Ident(ident) if ident == "impl" || ident == "trait" => {
                skip_next_block = true;
            }
            TokenTree::Group(group) if group.delimiter() == Delimiter::Brace && skip_next_block => {
                skip_next_block = false;
            }
            TokenTree::Group(group) => {
                if let Some(found) = find_self(group.stream()) {
                    return Some(found);
                }
            }
            TokenTree::Punct(punct) if punct.as_char() == ';' => skip_next_block = false,
            _ => {}
        }
    }
    None
}

/// The reference type at the top of `ty`, unless it is `&'static`.
fn borrowed(ty: &Type) -> Option<&Type> {
    match ty {
        Type::Reference(reference) => match &reference.lifetime {
            Some(lifetime) if lifetime.ident == "static" => None,
            _ => Some(ty),
        },
        Type::Paren(inner) => borrowed(&inner.elem),
        Type::Group(inner) => borrowed(&inner.elem),
        _ => None,
    }
}
