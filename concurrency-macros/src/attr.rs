//! Parsing of the attribute's options: `#[io_task(name = "fetch")]`.
//!
//! Options are `key = value` pairs or bare flags, separated by commas. Parsing is
//! two steps: the tokens become a list of [`RawOption`]s (pure syntax), then each is
//! looked up in [`OPTIONS`], the one table of options: it says which attribute takes
//! each, parses and checks its value, and gives the list that error messages (and
//! the did-you-mean suggestion) use; a test checks that the documentation lists the
//! same. Adding an option means adding a row there and a field to [`TaskOptions`].

use proc_macro2::TokenStream;
use syn::ext::IdentExt;
use syn::parse::{Parse, ParseStream, Parser};
use syn::punctuated::Punctuated;
use syn::{Expr, ExprArray, ExprLit, ExprPath, Ident, Lit, LitInt, LitStr, Token};

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
    pub(crate) fn options(self) -> impl Iterator<Item = &'static OptionSpec> {
        OPTIONS
            .iter()
            .filter(move |option| option.on.contains(&self))
    }
}

/// One option of the attributes: its key, the attributes that take it, and how its
/// value is parsed and checked into [`TaskOptions`].
pub(crate) struct OptionSpec {
    pub(crate) key: &'static str,
    pub(crate) on: &'static [Attribute],
    parse: fn(&RawOption, &mut TaskOptions, &mut Errors),
}

const BOTH: &[Attribute] = &[Attribute::IoTask, Attribute::CpuTask];

/// Every option, in the order they are documented.
pub(crate) const OPTIONS: &[OptionSpec] = &[
    OptionSpec {
        key: "name",
        on: BOTH,
        parse: |option, options, errors| match name_value(option) {
            Ok(name) => options.name = Some(name),
            Err(error) => errors.push(error),
        },
    },
    OptionSpec {
        key: "process",
        on: &[Attribute::CpuTask],
        parse: |option, options, errors| match &option.value {
            None => options.process = Some(option.key.clone()),
            Some(value) => errors.spanned(
                value,
                "`process` is a flag and takes no value: write `#[cpu_task(process)]`",
            ),
        },
    },
    OptionSpec {
        key: "timeout",
        on: BOTH,
        parse: |option, options, errors| match duration_value(option, "timeout", "2s") {
            Ok(value) if value.is_zero() => {
                errors.spanned(option.value.as_ref(), "`timeout` must be longer than zero")
            }
            Ok(value) => options.timeout = Some(valued(option, value)),
            Err(error) => errors.push(error),
        },
    },
    OptionSpec {
        key: "retries",
        on: BOTH,
        parse: |option, options, errors| match count_value::<u32>(option, "retries", "3") {
            Ok(0) => errors.spanned(
                option.value.as_ref(),
                "`retries = 0` means a single attempt: remove the option",
            ),
            Ok(value) => options.retries = Some(valued(option, value)),
            Err(error) => errors.push(error),
        },
    },
    OptionSpec {
        key: "backoff",
        on: BOTH,
        parse: |option, options, errors| match duration_value(option, "backoff", "100ms") {
            Ok(value) => options.backoff = Some(valued(option, value)),
            Err(error) => errors.push(error),
        },
    },
    OptionSpec {
        key: "retry_on",
        on: BOTH,
        parse: |option, options, errors| match retry_on_value(option) {
            Ok(value) => options.retry_on = Some(valued(option, value)),
            Err(error) => errors.push(error),
        },
    },
    OptionSpec {
        key: "limit",
        on: BOTH,
        parse: |option, options, errors| match count_value::<usize>(option, "limit", "4") {
            Ok(0) => errors.spanned(
                option.value.as_ref(),
                "`limit = 0` would never run the task: the limit must be at least 1",
            ),
            Ok(value) => options.limit = Some(valued(option, value)),
            Err(error) => errors.push(error),
        },
    },
];

/// One `key` or `key = value` as written.
pub(crate) struct RawOption {
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
    /// `timeout = "2s"`: each attempt's deadline.
    pub(crate) timeout: Option<Valued<std::time::Duration>>,
    /// `retries = 3`: attempts after the first.
    pub(crate) retries: Option<Valued<u32>>,
    /// `backoff = "100ms"`: the first pause between attempts; it doubles.
    pub(crate) backoff: Option<Valued<std::time::Duration>>,
    /// `retry_on = [crash, timeout]`: the failures that are retried.
    pub(crate) retry_on: Option<Valued<Vec<Ident>>>,
    /// `limit = 4`: at most this many running at once, program-wide.
    pub(crate) limit: Option<Valued<usize>>,
}

/// An option's checked value, with its key for error spans.
pub(crate) struct Valued<T> {
    pub(crate) key: Ident,
    pub(crate) value: T,
}

impl TaskOptions {
    /// Whether any option changes how the task runs (not just its name).
    pub(crate) fn has_policy(&self) -> bool {
        self.timeout.is_some()
            || self.retries.is_some()
            || self.backoff.is_some()
            || self.retry_on.is_some()
            || self.limit.is_some()
    }
}

/// The failures `retry_on` accepts, in the order they are documented.
pub(crate) const RETRY_KINDS: &[&str] = &["panic", "timeout", "crash", "error"];

/// Parses and checks the attribute's arguments, reporting every mistake at once in
/// `errors`. The options that are valid are returned all the same (a wrong one is
/// left at its default), so that the function still expands and its call sites do
/// not report the attribute's mistake again.
pub(crate) fn parse(attribute: Attribute, tokens: TokenStream, errors: &mut Errors) -> TaskOptions {
    match Punctuated::<RawOption, Token![,]>::parse_terminated.parse2(tokens) {
        Ok(raw) => check(attribute, raw, errors),
        Err(error) => {
            errors.push(error);
            TaskOptions::default()
        }
    }
}

fn check(
    attribute: Attribute,
    raw: Punctuated<RawOption, Token![,]>,
    errors: &mut Errors,
) -> TaskOptions {
    let mut options = TaskOptions::default();
    let mut seen: Vec<String> = Vec::new();

    for option in raw {
        let key = option.key.unraw().to_string();
        let Some(spec) = attribute.options().find(|spec| spec.key == key) else {
            errors.spanned(&option.key, unknown_option(attribute, &key));
            continue;
        };
        if seen.contains(&key) {
            errors.spanned(
                &option.key,
                format_args!("duplicate option `{key}` in {}", attribute.display()),
            );
            continue;
        }
        seen.push(key);
        (spec.parse)(&option, &mut options, errors);
    }
    options
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

fn valued<T>(option: &RawOption, value: T) -> Valued<T> {
    Valued {
        key: option.key.clone(),
        value,
    }
}

/// `key = "250ms"`: a duration with a unit (`ns`, `us`, `ms`, `s`, `m`, `h`).
fn duration_value(
    option: &RawOption,
    key: &str,
    example: &str,
) -> syn::Result<std::time::Duration> {
    let hint = format!(
        "`{key}` expects a duration as a string with a unit, e.g. `{key} = \"{example}\"` \
         (units: ns, us, ms, s, m, h)"
    );
    match &option.value {
        Some(Expr::Lit(ExprLit {
            lit: Lit::Str(lit), ..
        })) => parse_duration(&lit.value())
            .ok_or_else(|| syn::Error::new_spanned(lit, format!("invalid duration: {hint}"))),
        Some(other) => Err(syn::Error::new_spanned(other, hint)),
        None => Err(syn::Error::new_spanned(&option.key, hint)),
    }
}

/// Parses `"1.5s"`, `"250ms"`, `"2m"`... into a duration; `None` if malformed or
/// out of range.
pub(crate) fn parse_duration(text: &str) -> Option<std::time::Duration> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = (&text[..split], text[split..].trim());
    let nanos_per_unit: f64 = match unit {
        "ns" => 1.0,
        "us" | "µs" => 1e3,
        "ms" => 1e6,
        "s" => 1e9,
        "m" | "min" => 60e9,
        "h" => 3600e9,
        _ => return None,
    };
    if number.is_empty() || number.starts_with('.') || number.ends_with('.') {
        return None;
    }
    let value: f64 = number.parse().ok()?;
    let nanos = value * nanos_per_unit;
    // Whole nanoseconds only, and within what `Duration::from_nanos` takes.
    if !nanos.is_finite() || nanos.fract() != 0.0 || nanos > u64::MAX as f64 {
        return None;
    }
    Some(std::time::Duration::from_nanos(nanos as u64))
}

/// `key = 3`: a non-negative integer literal.
fn count_value<N>(option: &RawOption, key: &str, example: &str) -> syn::Result<N>
where
    N: std::str::FromStr,
    N::Err: std::fmt::Display,
{
    let hint = format!("`{key}` expects a whole number, e.g. `{key} = {example}`");
    match &option.value {
        Some(Expr::Lit(ExprLit {
            lit: Lit::Int(lit), ..
        })) => parse_int(lit, &hint),
        Some(other) => Err(syn::Error::new_spanned(other, hint)),
        None => Err(syn::Error::new_spanned(&option.key, hint)),
    }
}

fn parse_int<N>(lit: &LitInt, hint: &str) -> syn::Result<N>
where
    N: std::str::FromStr,
    N::Err: std::fmt::Display,
{
    lit.base10_parse::<N>()
        .map_err(|error| syn::Error::new_spanned(lit, format!("{error}: {hint}")))
}

/// `retry_on = [crash, timeout]`: a non-empty list of failure kinds.
fn retry_on_value(option: &RawOption) -> syn::Result<Vec<Ident>> {
    const HINT: &str = "`retry_on` expects a list of failures, e.g. `retry_on = [crash, timeout]` \
                        (failures: panic, timeout, crash, error)";
    let Some(Expr::Array(ExprArray { elems, .. })) = &option.value else {
        return Err(match &option.value {
            Some(other) => syn::Error::new_spanned(other, HINT),
            None => syn::Error::new_spanned(&option.key, HINT),
        });
    };
    if elems.is_empty() {
        return Err(syn::Error::new_spanned(
            option.value.as_ref(),
            "`retry_on = []` would retry nothing: list the failures to retry, or remove `retries`",
        ));
    }
    let mut errors = Errors::default();
    let mut kinds: Vec<Ident> = Vec::new();
    for elem in elems {
        let ident = match elem {
            Expr::Path(ExprPath {
                path, qself: None, ..
            }) => path.get_ident(),
            _ => None,
        };
        let Some(ident) = ident else {
            errors.spanned(elem, HINT);
            continue;
        };
        let text = ident.to_string();
        if !RETRY_KINDS.contains(&text.as_str()) {
            let mut message = format!("unknown failure `{text}` in `retry_on`");
            if let Some(near) = did_you_mean(&text, RETRY_KINDS) {
                message.push_str(&format!("; did you mean `{near}`?"));
            }
            message.push_str("\nfailures: `panic`, `timeout`, `crash`, `error`");
            errors.spanned(ident, message);
        } else if kinds.iter().any(|kind| kind == ident) {
            errors.spanned(
                ident,
                format_args!("`{text}` is listed twice in `retry_on`"),
            );
        } else {
            kinds.push(ident.clone());
        }
    }
    errors.finish()?;
    Ok(kinds)
}

fn unknown_option(attribute: Attribute, key: &str) -> String {
    let valid: Vec<&str> = attribute.options().map(|option| option.key).collect();
    let list = valid
        .iter()
        .map(|o| format!("`{o}`"))
        .collect::<Vec<_>>()
        .join(", ");
    let mut message = format!("unknown option `{key}` for {}", attribute.display());
    if let Some(near) = did_you_mean(key, &valid) {
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
    fn the_documentation_lists_every_option_of_the_table() {
        // The options of the README's table (`| `key = ...` | effect |`) and of the
        // attributes' rustdoc (a table, and a list for `process`), line by line.
        let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
        for file in ["README.md", "concurrency-runtime/src/lib.rs"] {
            let text = std::fs::read_to_string(format!("{root}/{file}")).expect(file);
            let documented: Vec<&str> = text
                .lines()
                .map(|line| line.trim_start_matches("///").trim())
                .filter_map(|line| line.strip_prefix("| `").or(line.strip_prefix("- `")))
                .filter_map(|rest| rest.split(['`', ' ']).next())
                .collect();
            for option in OPTIONS {
                assert!(
                    documented.contains(&option.key),
                    "{file} does not document the option `{}`",
                    option.key
                );
            }
        }
    }

    #[test]
    fn near_misses_are_suggested() {
        assert_eq!(did_you_mean("nme", &["name"]), Some("name"));
        assert_eq!(did_you_mean("Name", &["name"]), Some("name"));
        assert_eq!(did_you_mean("timeout", &["name"]), None);
    }

    #[test]
    fn durations_parse() {
        use std::time::Duration;
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("2s"), Some(Duration::from_secs(2)));
        assert_eq!(parse_duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_duration("3m"), Some(Duration::from_secs(180)));
        assert_eq!(parse_duration("1h"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_duration("10us"), Some(Duration::from_micros(10)));
        assert_eq!(parse_duration("0s"), Some(Duration::ZERO));
        for bad in [
            "",
            "2",
            "s",
            "2 sec",
            "1.s",
            ".5s",
            "1.5ns",
            "-1s",
            "1e3ms",
            "9999999999h",
        ] {
            assert_eq!(parse_duration(bad), None, "{bad:?}");
        }
    }
}
