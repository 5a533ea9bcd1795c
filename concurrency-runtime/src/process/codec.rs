//! How a process task's arguments and result are encoded, one type at a time.
//!
//! `#[cpu_task(process)]` makes one codec per argument type and one for the result
//! type, each a constant built where the type is written. Serde's bounds are checked
//! there and nowhere else (the task value and the worker's entry only call the codecs'
//! function pointers), so a type that is not serde gets one error, under that type,
//! with the message of [`ProcessArgument`] or [`ProcessOutput`], and no other.

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::registry::EntryError;
use super::wire::{self, Decoder};

/// Compile-time check that a process task's argument can be sent to a worker.
#[diagnostic::on_unimplemented(
    message = "process task argument `{Self}` cannot be sent to a worker process",
    label = "this type must implement `serde::Serialize` and `serde::Deserialize`",
    note = "a process task's arguments are serialized to reach the worker: derive `Serialize` and `Deserialize` for it (serde), or pass a type that has them"
)]
pub trait ProcessArgument: Serialize + DeserializeOwned {}
// Not shown in errors: a type that lacks either trait gets this trait's one message,
// not one error per missing serde trait with lists of serde's impls.
#[diagnostic::do_not_recommend]
impl<T: Serialize + DeserializeOwned> ProcessArgument for T {}

/// Compile-time check that a process task's result can come back from a worker.
#[diagnostic::on_unimplemented(
    message = "process task result `{Self}` cannot be sent back from a worker process",
    label = "this type must implement `serde::Serialize` and `serde::Deserialize`",
    note = "a process task's result is serialized to come back: derive `Serialize` and `Deserialize` for it (serde), or return a type that has them"
)]
pub trait ProcessOutput: Serialize + DeserializeOwned {}
#[diagnostic::do_not_recommend]
impl<T: Serialize + DeserializeOwned> ProcessOutput for T {}

type Encode<T> = fn(&T, &mut Vec<u8>, usize) -> Result<(), wire::Error>;

/// The encoding of one argument type.
#[derive(Debug)]
pub struct ArgCodec<T> {
    encode: Encode<T>,
    decode: for<'de> fn(&mut Decoder<'de>) -> Result<T, wire::Error>,
}

/// The codec of argument type `T` (the check that it is serde).
pub const fn arg_codec<T: ProcessArgument>() -> ArgCodec<T> {
    ArgCodec {
        encode: encode::<T>,
        decode: decode_next::<T>,
    }
}

impl<T> ArgCodec<T> {
    /// Appends `value` to `out`, which may hold at most `limit` bytes.
    #[inline]
    pub fn encode(&self, value: &T, out: &mut Vec<u8>, limit: usize) -> Result<(), wire::Error> {
        (self.encode)(value, out, limit)
    }

    /// Reads the next argument (in the worker).
    #[inline]
    pub fn decode(&self, input: &mut Decoder<'_>) -> Result<T, EntryError> {
        (self.decode)(input).map_err(EntryError::Arguments)
    }
}

/// Checks that the worker read every argument byte.
pub fn finish_arguments(input: &Decoder<'_>) -> Result<(), EntryError> {
    input.finish().map_err(EntryError::Arguments)
}

/// The encoding of a result type.
#[derive(Debug)]
pub struct ResultCodec<T> {
    encode: Encode<T>,
    decode: fn(&[u8]) -> Result<T, wire::Error>,
}

/// The codec of result type `T` (the check that it is serde).
pub const fn result_codec<T: ProcessOutput>() -> ResultCodec<T> {
    ResultCodec {
        encode: encode::<T>,
        decode: decode_whole::<T>,
    }
}

impl<T> ResultCodec<T> {
    /// Appends the result to `out` (in the worker).
    #[inline]
    pub fn encode(&self, value: &T, out: &mut Vec<u8>, limit: usize) -> Result<(), EntryError> {
        (self.encode)(value, out, limit).map_err(EntryError::Result)
    }

    /// How the caller decodes the result.
    #[inline]
    pub const fn decoder(&self) -> fn(&[u8]) -> Result<T, wire::Error> {
        self.decode
    }
}

fn encode<T: Serialize>(value: &T, out: &mut Vec<u8>, limit: usize) -> Result<(), wire::Error> {
    wire::encode(value, out, limit)
}

fn decode_next<T: DeserializeOwned>(input: &mut Decoder<'_>) -> Result<T, wire::Error> {
    T::deserialize(input)
}

fn decode_whole<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, wire::Error> {
    let mut input = Decoder::new(bytes);
    let value = T::deserialize(&mut input)?;
    input.finish()?;
    Ok(value)
}
