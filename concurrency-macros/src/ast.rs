//! A borrowed, typed view of the function under `#[io_task]` / `#[cpu_task]`.

use proc_macro2::{Span, TokenStream};
use quote::format_ident;
use syn::parse::{Parse, ParseStream};
use syn::spanned::Spanned;
use syn::{FnArg, Ident, Item, Pat, Receiver, Signature, Type, Visibility};

use crate::attr::{Attribute, TaskOptions};

/// The user's function, as parsed: nothing here is checked yet (see `valid.rs`).
pub(crate) struct TaskFn<'a> {
    pub(crate) original: &'a ItemFn,
    pub(crate) attribute: Attribute,
    pub(crate) options: TaskOptions,
    pub(crate) args: Vec<Arg<'a>>,
    pub(crate) receiver: Option<&'a Receiver>,
}

/// Where a task runs; each has its expansion in `expand/`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum PlacementKind {
    /// `#[io_task] async fn`.
    AsyncIo,
    /// `#[io_task] fn`.
    BlockingIo,
    /// `#[cpu_task] fn` (an `async fn` is rejected before expansion).
    Cpu,
    /// `#[cpu_task(process)] fn`.
    Process,
}

/// One argument: the user's pattern and type, and the hidden name the generated
/// outer function binds it to before moving it into the task.
pub(crate) struct Arg<'a> {
    pub(crate) pat: &'a Pat,
    pub(crate) ty: &'a Type,
    pub(crate) ident: Ident,
}

/// A function as the attributes see it: its signature parsed, its body kept as the
/// tokens it is (the expansion moves it without looking inside, so parsing every
/// statement of every task would only slow down the user's builds and IDE).
pub(crate) struct ItemFn {
    pub(crate) attrs: Vec<syn::Attribute>,
    pub(crate) vis: Visibility,
    pub(crate) sig: Signature,
    /// `{ ... }`.
    pub(crate) block: proc_macro2::Group,
}

impl Parse for ItemFn {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        let attrs = input.call(syn::Attribute::parse_outer)?;
        let vis = input.parse()?;
        let sig = input.parse()?;
        let block: proc_macro2::Group = input.parse()?;
        if block.delimiter() != proc_macro2::Delimiter::Brace {
            return Err(syn::Error::new(
                block.span(),
                "expected the function's body",
            ));
        }
        Ok(ItemFn {
            attrs,
            vis,
            sig,
            block,
        })
    }
}

/// Parses the annotated item; anything but a function with a body is an error on
/// the item itself.
pub(crate) fn parse_item(attribute: Attribute, item: TokenStream) -> syn::Result<ItemFn> {
    let message = || {
        format!(
            "{} can only be used on a function: `fn` for blocking work or `async fn` for async I/O",
            attribute.display()
        )
    };
    if let Ok(function) = syn::parse2::<ItemFn>(item.clone()) {
        return Ok(function);
    }
    // Not a function with a body: parsed whole, only to point at what it is.
    match syn::parse2::<Item>(item) {
        Ok(other) => Err(syn::Error::new(item_span(&other), message())),
        Err(error) => Err(syn::Error::new(error.span(), message())),
    }
}

/// The span of an item's keyword (`struct`, `impl`, ...) when it has one, so the
/// error underlines a few characters rather than the whole item.
fn item_span(item: &Item) -> Span {
    match item {
        Item::Struct(i) => i.struct_token.span,
        Item::Enum(i) => i.enum_token.span,
        Item::Impl(i) => i.impl_token.span,
        Item::Trait(i) => i.trait_token.span,
        Item::Mod(i) => i.mod_token.span,
        Item::Const(i) => i.const_token.span,
        Item::Static(i) => i.static_token.span,
        Item::Type(i) => i.type_token.span,
        Item::Use(i) => i.use_token.span,
        Item::Union(i) => i.union_token.span,
        other => other.span(),
    }
}

impl<'a> TaskFn<'a> {
    pub(crate) fn from_syn(
        original: &'a ItemFn,
        attribute: Attribute,
        options: TaskOptions,
    ) -> Self {
        let mut args = Vec::new();
        let mut receiver = None;
        for (index, input) in original.sig.inputs.iter().enumerate() {
            match input {
                FnArg::Receiver(r) => receiver = Some(r),
                FnArg::Typed(typed) => args.push(Arg {
                    pat: &typed.pat,
                    ty: &typed.ty,
                    ident: format_ident!(
                        "__concurrency_arg{}",
                        index,
                        span = typed.pat.span().resolved_at(Span::mixed_site())
                    ),
                }),
            }
        }
        TaskFn {
            original,
            attribute,
            options,
            args,
            receiver,
        }
    }

    /// Where the task runs: the attribute, `async`, and the `process` option decide
    /// it, here and nowhere else.
    pub(crate) fn placement(&self) -> PlacementKind {
        match (
            self.attribute,
            self.is_async(),
            self.options.process.is_some(),
        ) {
            (Attribute::IoTask, true, _) => PlacementKind::AsyncIo,
            (Attribute::IoTask, false, _) => PlacementKind::BlockingIo,
            (Attribute::CpuTask, _, true) => PlacementKind::Process,
            (Attribute::CpuTask, _, false) => PlacementKind::Cpu,
        }
    }

    /// Whether the return type is written as a `Result` (any path ending in
    /// `Result`, e.g. `io::Result<T>`): its `Err` then counts as the task's failure.
    pub(crate) fn is_fallible(&self) -> bool {
        fn is_result(ty: &syn::Type) -> bool {
            match ty {
                syn::Type::Path(path) => {
                    path.qself.is_none()
                        && path.path.segments.last().is_some_and(|last| {
                            last.ident == "Result"
                                && matches!(last.arguments, syn::PathArguments::AngleBracketed(_))
                        })
                }
                syn::Type::Paren(inner) => is_result(&inner.elem),
                syn::Type::Group(inner) => is_result(&inner.elem),
                _ => false,
            }
        }
        match &self.original.sig.output {
            syn::ReturnType::Type(_, ty) => is_result(ty),
            syn::ReturnType::Default => false,
        }
    }

    pub(crate) fn is_async(&self) -> bool {
        self.original.sig.asyncness.is_some()
    }

    /// The name reported in errors: the `name` option, else the function's name.
    pub(crate) fn task_name(&self) -> String {
        match &self.options.name {
            Some(name) => name.value(),
            None => {
                let ident = syn::ext::IdentExt::unraw(&self.original.sig.ident);
                ident.to_string()
            }
        }
    }
}
