//! Parsing of `dag { ... }`: statements as written, nothing checked yet.

use proc_macro2::{Span, TokenStream, TokenTree};
use syn::parse::{ParseStream, Parser};
use syn::{Expr, Token};

use super::{Dag, Let, Statement, Value};

/// Parses the inside of `dag { ... }`; `span` is the `dag` keyword's.
pub(crate) fn parse(span: Span, body: TokenStream) -> syn::Result<Dag> {
    let parser = |input: ParseStream<'_>| -> syn::Result<Dag> {
        let mut statements = Vec::new();
        let mut tail = None;
        while !input.is_empty() {
            if input.peek(Token![let]) {
                statements.push(parse_let(input)?);
                continue;
            }
            // The final expression, or a statement that is not a `let`: everything up
            // to the next top-level `;` (or the end).
            let (tokens, semi) = until_semicolon(input)?;
            if semi || !input.is_empty() {
                statements.push(Statement::Other(tokens));
            } else {
                tail = Some(syn::parse2::<Expr>(tokens)?);
            }
        }
        Ok(Dag {
            span,
            statements,
            tail,
        })
    };
    parser.parse2(body)
}

fn parse_let(input: ParseStream<'_>) -> syn::Result<Statement> {
    let let_token: Token![let] = input.parse()?;
    let pat = syn::Pat::parse_single(input)?;
    let ty = if input.peek(Token![:]) {
        Some((input.parse()?, Box::new(input.parse()?)))
    } else {
        None
    };
    input.parse::<Token![=]>()?;
    let value = if input.peek(Token![for]) {
        let for_token = input.parse()?;
        let iter = input.parse()?;
        Value::Each { for_token, iter }
    } else {
        Value::Call(input.parse()?)
    };
    input.parse::<Token![;]>()?;
    Ok(Statement::Let(Box::new(Let {
        let_token,
        pat,
        ty,
        value,
    })))
}

/// The tokens up to the next `;` at this level (taken), and whether there was one.
fn until_semicolon(input: ParseStream<'_>) -> syn::Result<(TokenStream, bool)> {
    input.step(|cursor| {
        let mut tokens = TokenStream::new();
        let mut rest = *cursor;
        while let Some((token, next)) = rest.token_tree() {
            if matches!(&token, TokenTree::Punct(punct) if punct.as_char() == ';') {
                return Ok(((tokens, true), next));
            }
            tokens.extend([token]);
            rest = next;
        }
        Ok(((tokens, false), rest))
    })
}
