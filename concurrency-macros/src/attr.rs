//! Parsing of the attribute's options: `#[io_task(name = "fetch")]`.
//!
//! Options are `key = value` pairs or bare flags, separated by commas. Parsing is
//! two steps: the tokens become a list of [`RawOption`]s (pure syntax), then each is
//! checked against the table of options the attribute accepts. Adding an option means
//! adding a row to [`Attribute::options`] and a field to [`TaskOptions`].

use proc_macro2::TokenStream;
use syn::ext::IdentExt;
use syn::parse::{Parse, ParseStream, Parser};
use syn::punctuated::Punctuated;
use syn::{Expr, ExprLit, Ident, Lit, LitStr, Token};

use crate::errors::Errors;

/// Which attribute is being expanded.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Attribute {
    IoTask,
    CpuTask,
}

impl Attribute {
    pub(crate) fn display(self) -> &'static str {
        match self {
            Attribute::IoTask => "#[io_task]",
            Attribute::CpuTask => "#[cpu_task]",
        }
    }

    /// The options this attribute accepts, in the order they are documented.
    fn options(self) -> &'static [&'static str] {
        match self {
            Attribute::IoTask => &["name"],
            Attribute::CpuTask => &["name", "process"],
        }
    }
}

/// One `key` or `key = value` as written.
struct RawOption {
    key: Ident,
    value: Option<Expr>,
}

impl Parse for RawOption {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        // `parse_any` so that a keyword such as `crate` or `async` gets the helpful
        // "unknown option" message instead of a bare syntax error.
        let key = Ident::parse_any(input).map_err(|e| {
            syn::Error::new(e.span(), "expected an option such as `name = \"...\"`")
        })?;
        let value = if input.peek(Token![=]) {
            input.parse::<Token![=]>()?;
            Some(input.parse()?)
        } else {
            None
        };
        Ok(RawOption { key, value })
    }
}

/// The validated options of one attribute.
#[derive(Default)]
pub(crate) struct TaskOptions {
    /// `name = "..."`: the task's name in errors and traces.
    pub(crate) name: Option<LitStr>,
    /// `process`: run in a worker process (`#[cpu_task]` only).
    pub(crate) process: Option<Ident>,
}

/// Parses and checks the attribute's arguments, reporting every mistake at once.
pub(crate) fn parse(attribute: Attribute, tokens: TokenStream) -> syn::Result<TaskOptions> {
    let raw = Punctuated::<RawOption, Token![,]>::parse_terminated.parse2(tokens)?;
    let mut errors = Errors::default();
    let mut options = TaskOptions::default();
    let mut seen: Vec<String> = Vec::new();

    for option in raw {
        let key = option.key.unraw().to_string();
        if !attribute.options().contains(&key.as_str()) {
            errors.spanned(&option.key, unknown_option(attribute, &key));
            continue;
        }
        if seen.contains(&key) {
            errors.spanned(
                &option.key,
                format_args!("duplicate option `{key}` in {}", attribute.display()),
            );
            continue;
        }
        seen.push(key.clone());
        match key.as_str() {
            "name" => match name_value(&option) {
                Ok(name) => options.name = Some(name),
                Err(error) => errors.push(error),
            },
            "process" => match &option.value {
                None => options.process = Some(option.key.clone()),
                Some(value) => errors.spanned(
                    value,
                    "`process` is a flag and takes no value: write `#[cpu_task(process)]`",
                ),
            },
            _ => errors.spanned(&option.key, unknown_option(attribute, &key)),
        }
    }
    errors.finish()?;
    Ok(options)
}

fn name_value(option: &RawOption) -> syn::Result<LitStr> {
    const HINT: &str = "`name` expects a string literal, e.g. `name = \"fetch_user\"`";
    match &option.value {
        None => Err(syn::Error::new_spanned(&option.key, HINT)),
        Some(Expr::Lit(ExprLit {
            lit: Lit::Str(lit), ..
        })) => {
            let value = lit.value();
            if value.trim().is_empty() {
                Err(syn::Error::new_spanned(lit, "`name` must not be empty"))
            } else if value.chars().any(char::is_control) {
                Err(syn::Error::new_spanned(
                    lit,
                    "`name` must not contain control characters",
                ))
            } else {
                Ok(lit.clone())
            }
        }
        Some(other) => Err(syn::Error::new_spanned(other, HINT)),
    }
}

fn unknown_option(attribute: Attribute, key: &str) -> String {
    let valid = attribute.options();
    let list = valid
        .iter()
        .map(|o| format!("`{o}`"))
        .collect::<Vec<_>>()
        .join(", ");
    let mut message = format!("unknown option `{key}` for {}", attribute.display());
    if let Some(near) = did_you_mean(key, valid) {
        message.push_str(&format!("; did you mean `{near}`?"));
    }
    message.push_str(&format!("\nvalid options: {list}"));
    message
}

/// The closest valid option, if it is a near miss (edit distance ≤ 2 or a case slip).
pub(crate) fn did_you_mean<'a>(key: &str, valid: &[&'a str]) -> Option<&'a str> {
    valid
        .iter()
        .map(|candidate| (edit_distance(&key.to_lowercase(), candidate), *candidate))
        .filter(|(distance, candidate)| *distance <= 2.min(candidate.len() / 2 + 1))
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, candidate)| candidate)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != *cb);
            current.push(substitution.min(previous[j + 1] + 1).min(current[j] + 1));
        }
        previous = current;
    }
    previous[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn near_misses_are_suggested() {
        assert_eq!(did_you_mean("nme", &["name"]), Some("name"));
        assert_eq!(did_you_mean("Name", &["name"]), Some("name"));
        assert_eq!(did_you_mean("timeout", &["name"]), None);
    }
}
