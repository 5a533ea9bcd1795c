//! Implementation detail of the [`concurrency-runtime`] crate: the `#[io_task]`,
//! `#[cpu_task]` and `run_concurrently!` macros. Depend on `concurrency-runtime`,
//! which re-exports them with their documentation, rather than on this crate.
//!
//! Each entry point parses, validates, then expands, in separate modules; every
//! error is a `syn::Error` on the token at fault, and all of them are reported in
//! one compile.
//!
//! [`concurrency-runtime`]: https://docs.rs/concurrency-runtime

mod ast;
mod attr;
mod concurrently;
mod dag;
mod errors;
mod expand;
mod private;
mod valid;

use proc_macro::TokenStream;

use crate::attr::Attribute;

/// See `concurrency_runtime::io_task`.
#[proc_macro_attribute]
pub fn io_task(args: TokenStream, item: TokenStream) -> TokenStream {
    task(Attribute::IoTask, args.into(), item.into()).into()
}

/// See `concurrency_runtime::cpu_task`.
#[proc_macro_attribute]
pub fn cpu_task(args: TokenStream, item: TokenStream) -> TokenStream {
    task(Attribute::CpuTask, args.into(), item.into()).into()
}

/// See `concurrency_runtime::run_concurrently`.
#[proc_macro]
pub fn run_concurrently(input: TokenStream) -> TokenStream {
    concurrently::parse(input.into())
        .and_then(concurrently::Invocation::validate)
        .map(|checked| checked.expand())
        .unwrap_or_else(errors::in_expression)
        .into()
}

fn task(
    attribute: Attribute,
    args: proc_macro2::TokenStream,
    item: proc_macro2::TokenStream,
) -> proc_macro2::TokenStream {
    let function = match ast::parse_item(attribute, item.clone()) {
        Ok(function) => function,
        Err(error) => return errors::with_original(error, item),
    };
    // Option errors and signature errors are reported together.
    let mut collected = errors::Errors::default();
    let options = attr::parse(attribute, args, &mut collected);
    let task = ast::TaskFn::from_syn(&function, attribute, options);
    // A mistake in the options alone still expands the task, with the options that are
    // right; a mistake in the signature expands a stand-in with the same signature.
    // Either way the call sites type-check, so one mistake gives one error.
    let expanded = if task.validate(&mut collected) {
        expand::expand(&task)
    } else {
        expand::stand_in(&task)
    };
    match collected.finish() {
        Ok(()) => expanded,
        Err(error) => {
            let mut tokens = error.into_compile_error();
            tokens.extend(expanded);
            tokens
        }
    }
}
