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
    let options = attr::parse(attribute, args).unwrap_or_else(|error| {
        collected.push(error);
        attr::TaskOptions::default()
    });
    let task = ast::TaskFn::from_syn(&function, attribute, options);
    if let Err(error) = task.validate() {
        collected.push(error);
    }
    match collected.finish() {
        Ok(()) => expand::expand(&task),
        Err(error) => errors::with_original(error, item),
    }
}
