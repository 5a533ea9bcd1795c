//! The wire format of process tasks' arguments and results: a compact serde format.
//!
//! Both ends are the same program, so the format needs no schema and no versioning:
//! integers are LEB128 varints (signed ones zigzagged), floats little-endian, strings,
//! byte strings, sequences and maps a varint length then their contents, options a
//! tag byte, enums a varint variant index, structs and tuples their fields in order.
//! Like other compact formats it is not self-describing (`deserialize_any`, and so
//! untagged enums and `#[serde(flatten)]`, are refused with a message saying so).
//!
//! Why not postcard, which this crate used before: its error type drops the message of
//! a `Serialize` or `Deserialize` impl (`Error::custom("...")` becomes "Serde
//! Serialization Error"), and users need that message. This format keeps it, and
//! encodes into a buffer with a size limit that stops serializing the moment the
//! limit is passed (a 64 MiB argument over a 1 MiB limit is refused after about
//! 1 MiB of work, not after all of it).

use std::fmt;

use serde::de::{self, DeserializeSeed, IntoDeserializer, Visitor};
use serde::ser::{self, Serialize};

/// Why a value could not be encoded or decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// A message from a `Serialize` or `Deserialize` impl (serde's derives included).
    Message(String),
    /// The encoding would exceed `limit` bytes; encoding stopped there.
    TooLarge {
        /// The limit, in bytes.
        limit: usize,
    },
    /// The input ended inside a value.
    UnexpectedEnd,
    /// The input is not what this format writes (a bad tag, varint or UTF-8).
    Invalid(&'static str),
    /// Input left over after the last value.
    TrailingBytes(usize),
    /// A type that needs a self-describing format.
    NotSelfDescribing,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Message(message) => f.write_str(message),
            Error::TooLarge { limit } => write!(f, "the encoding exceeds {limit} bytes"),
            Error::UnexpectedEnd => f.write_str("the data ended inside a value"),
            Error::Invalid(what) => write!(f, "invalid data: {what}"),
            Error::TrailingBytes(count) => write!(f, "{count} bytes left after the value"),
            Error::NotSelfDescribing => f.write_str(
                "the type needs a self-describing format (`deserialize_any`: untagged enums, \
                 `#[serde(flatten)]`, `serde_json::Value`...), which process tasks do not use",
            ),
        }
    }
}

impl std::error::Error for Error {}

impl ser::Error for Error {
    fn custom<T: fmt::Display>(message: T) -> Self {
        Error::Message(message.to_string())
    }
}

impl de::Error for Error {
    fn custom<T: fmt::Display>(message: T) -> Self {
        Error::Message(message.to_string())
    }
}

type Result<T> = std::result::Result<T, Error>;

/// Appends the encoding of `value` to `out`, failing as soon as `out` would grow past
/// `limit` bytes in all.
pub(crate) fn encode<T: Serialize + ?Sized>(
    value: &T,
    out: &mut Vec<u8>,
    limit: usize,
) -> Result<()> {
    value.serialize(&mut Encoder { out, limit })
}

/// Decodes a whole value from `input` (nothing may be left over).
#[cfg(test)]
pub(crate) fn decode<'de, T: de::Deserialize<'de>>(input: &'de [u8]) -> Result<T> {
    let mut decoder = Decoder::new(input);
    let value = T::deserialize(&mut decoder)?;
    decoder.finish()?;
    Ok(value)
}

/// Writes values into a buffer with a size limit.
pub(crate) struct Encoder<'a> {
    out: &'a mut Vec<u8>,
    limit: usize,
}

impl<'a> Encoder<'a> {
    #[inline]
    fn room(&self, more: usize) -> Result<()> {
        if more > self.limit.saturating_sub(self.out.len()) {
            Err(Error::TooLarge { limit: self.limit })
        } else {
            Ok(())
        }
    }

    #[inline]
    fn bytes(&mut self, bytes: &[u8]) -> Result<()> {
        self.room(bytes.len())?;
        self.out.extend_from_slice(bytes);
        Ok(())
    }

    #[inline]
    fn varint(&mut self, mut value: u128) -> Result<()> {
        let mut buffer = [0u8; 19];
        let mut length = 0;
        loop {
            let byte = (value & 0x7f) as u8;
            value >>= 7;
            if value == 0 {
                buffer[length] = byte;
                length += 1;
                break;
            }
            buffer[length] = byte | 0x80;
            length += 1;
        }
        self.bytes(&buffer[..length])
    }

    #[inline]
    fn signed(&mut self, value: i128) -> Result<()> {
        self.varint(((value << 1) ^ (value >> 127)) as u128)
    }

    #[inline]
    fn length(&mut self, length: usize) -> Result<()> {
        self.varint(length as u128)
    }

    /// Starts a sequence or map: with a known length, the length now; without one, its
    /// position, to insert the count there once the elements are written.
    fn compound<'e>(&'e mut self, length: Option<usize>) -> Result<Compound<'e, 'a>> {
        let start = match length {
            Some(length) => {
                self.length(length)?;
                None
            }
            None => Some(self.out.len()),
        };
        Ok(Compound {
            encoder: self,
            start,
            count: 0,
        })
    }
}

/// A sequence, map, tuple or struct being written.
pub(crate) struct Compound<'e, 'a> {
    encoder: &'e mut Encoder<'a>,
    /// Where the elements of a sequence or map of unknown length start.
    start: Option<usize>,
    /// How many elements (map entries) were written.
    count: usize,
}

impl Compound<'_, '_> {
    #[inline]
    fn element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<()> {
        self.count += 1;
        value.serialize(&mut *self.encoder)
    }

    fn end(self) -> Result<()> {
        let Some(start) = self.start else {
            return Ok(());
        };
        // The length goes before the elements: encode it at the end, then move it there.
        let end = self.encoder.out.len();
        self.encoder.length(self.count)?;
        let length_bytes = self.encoder.out.len() - end;
        self.encoder.out[start..].rotate_right(length_bytes);
        Ok(())
    }
}

impl<'e, 'a> ser::Serializer for &'e mut Encoder<'a> {
    type Ok = ();
    type Error = Error;
    type SerializeSeq = Compound<'e, 'a>;
    type SerializeTuple = Compound<'e, 'a>;
    type SerializeTupleStruct = Compound<'e, 'a>;
    type SerializeTupleVariant = Compound<'e, 'a>;
    type SerializeMap = Compound<'e, 'a>;
    type SerializeStruct = Compound<'e, 'a>;
    type SerializeStructVariant = Compound<'e, 'a>;

    #[inline]
    fn is_human_readable(&self) -> bool {
        false
    }

    #[inline]
    fn serialize_bool(self, value: bool) -> Result<()> {
        self.bytes(&[u8::from(value)])
    }

    #[inline]
    fn serialize_i8(self, value: i8) -> Result<()> {
        self.bytes(&value.to_le_bytes())
    }

    #[inline]
    fn serialize_i16(self, value: i16) -> Result<()> {
        self.signed(value.into())
    }

    #[inline]
    fn serialize_i32(self, value: i32) -> Result<()> {
        self.signed(value.into())
    }

    #[inline]
    fn serialize_i64(self, value: i64) -> Result<()> {
        self.signed(value.into())
    }

    #[inline]
    fn serialize_i128(self, value: i128) -> Result<()> {
        self.signed(value)
    }

    #[inline]
    fn serialize_u8(self, value: u8) -> Result<()> {
        // One call per byte of a `Vec<u8>` (serde writes it as a sequence): a push.
        self.room(1)?;
        self.out.push(value);
        Ok(())
    }

    #[inline]
    fn serialize_u16(self, value: u16) -> Result<()> {
        self.varint(value.into())
    }

    #[inline]
    fn serialize_u32(self, value: u32) -> Result<()> {
        self.varint(value.into())
    }

    #[inline]
    fn serialize_u64(self, value: u64) -> Result<()> {
        self.varint(value.into())
    }

    #[inline]
    fn serialize_u128(self, value: u128) -> Result<()> {
        self.varint(value)
    }

    #[inline]
    fn serialize_f32(self, value: f32) -> Result<()> {
        self.bytes(&value.to_le_bytes())
    }

    #[inline]
    fn serialize_f64(self, value: f64) -> Result<()> {
        self.bytes(&value.to_le_bytes())
    }

    #[inline]
    fn serialize_char(self, value: char) -> Result<()> {
        self.varint(u32::from(value).into())
    }

    #[inline]
    fn serialize_str(self, value: &str) -> Result<()> {
        self.serialize_bytes(value.as_bytes())
    }

    #[inline]
    fn serialize_bytes(self, value: &[u8]) -> Result<()> {
        self.length(value.len())?;
        self.bytes(value)
    }

    #[inline]
    fn serialize_none(self) -> Result<()> {
        self.bytes(&[0])
    }

    #[inline]
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<()> {
        self.bytes(&[1])?;
        value.serialize(self)
    }

    #[inline]
    fn serialize_unit(self) -> Result<()> {
        Ok(())
    }

    #[inline]
    fn serialize_unit_struct(self, _: &'static str) -> Result<()> {
        Ok(())
    }

    #[inline]
    fn serialize_unit_variant(self, _: &'static str, index: u32, _: &'static str) -> Result<()> {
        self.varint(index.into())
    }

    #[inline]
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        value: &T,
    ) -> Result<()> {
        value.serialize(self)
    }

    #[inline]
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        index: u32,
        _: &'static str,
        value: &T,
    ) -> Result<()> {
        self.varint(index.into())?;
        value.serialize(self)
    }

    #[inline]
    fn serialize_seq(self, length: Option<usize>) -> Result<Self::SerializeSeq> {
        self.compound(length)
    }

    #[inline]
    fn serialize_tuple(self, length: usize) -> Result<Self::SerializeTuple> {
        let _ = length; // known from the type on both ends
        Ok(Compound {
            encoder: self,
            start: None,
            count: 0,
        })
    }

    #[inline]
    fn serialize_tuple_struct(
        self,
        _: &'static str,
        length: usize,
    ) -> Result<Self::SerializeTupleStruct> {
        self.serialize_tuple(length)
    }

    #[inline]
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        index: u32,
        _: &'static str,
        length: usize,
    ) -> Result<Self::SerializeTupleVariant> {
        self.varint(index.into())?;
        self.serialize_tuple(length)
    }

    #[inline]
    fn serialize_map(self, length: Option<usize>) -> Result<Self::SerializeMap> {
        self.compound(length)
    }

    #[inline]
    fn serialize_struct(self, _: &'static str, length: usize) -> Result<Self::SerializeStruct> {
        self.serialize_tuple(length)
    }

    #[inline]
    fn serialize_struct_variant(
        self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        length: usize,
    ) -> Result<Self::SerializeStructVariant> {
        self.serialize_tuple_variant(name, index, variant, length)
    }
}

impl ser::SerializeSeq for Compound<'_, '_> {
    type Ok = ();
    type Error = Error;

    #[inline]
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<()> {
        self.element(value)
    }

    fn end(self) -> Result<()> {
        Compound::end(self)
    }
}

impl ser::SerializeTuple for Compound<'_, '_> {
    type Ok = ();
    type Error = Error;

    #[inline]
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<()> {
        self.element(value)
    }

    fn end(self) -> Result<()> {
        Compound::end(self)
    }
}

impl ser::SerializeTupleStruct for Compound<'_, '_> {
    type Ok = ();
    type Error = Error;

    #[inline]
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<()> {
        self.element(value)
    }

    fn end(self) -> Result<()> {
        Compound::end(self)
    }
}

impl ser::SerializeTupleVariant for Compound<'_, '_> {
    type Ok = ();
    type Error = Error;

    #[inline]
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<()> {
        self.element(value)
    }

    fn end(self) -> Result<()> {
        Compound::end(self)
    }
}

impl ser::SerializeMap for Compound<'_, '_> {
    type Ok = ();
    type Error = Error;

    #[inline]
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<()> {
        self.element(key)
    }

    #[inline]
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<()> {
        // An entry counts once: its key counted it.
        value.serialize(&mut *self.encoder)
    }

    fn end(self) -> Result<()> {
        Compound::end(self)
    }
}

impl ser::SerializeStruct for Compound<'_, '_> {
    type Ok = ();
    type Error = Error;

    #[inline]
    fn serialize_field<T: Serialize + ?Sized>(&mut self, _: &'static str, value: &T) -> Result<()> {
        self.element(value)
    }

    fn skip_field(&mut self, key: &'static str) -> Result<()> {
        Err(Error::Message(format!(
            "field `{key}` is skipped when serializing (`skip_serializing_if`), which a format \
             without field names cannot decode: skip it always or never"
        )))
    }

    fn end(self) -> Result<()> {
        Compound::end(self)
    }
}

impl ser::SerializeStructVariant for Compound<'_, '_> {
    type Ok = ();
    type Error = Error;

    #[inline]
    fn serialize_field<T: Serialize + ?Sized>(&mut self, _: &'static str, value: &T) -> Result<()> {
        self.element(value)
    }

    fn skip_field(&mut self, key: &'static str) -> Result<()> {
        ser::SerializeStruct::skip_field(self, key)
    }

    fn end(self) -> Result<()> {
        Compound::end(self)
    }
}

/// Reads values from a buffer.
#[derive(Debug)]
pub struct Decoder<'de> {
    input: &'de [u8],
}

impl<'de> Decoder<'de> {
    /// A decoder of `input`.
    pub fn new(input: &'de [u8]) -> Self {
        Decoder { input }
    }

    /// Succeeds if every byte was read.
    pub(crate) fn finish(&self) -> Result<()> {
        match self.input.len() {
            0 => Ok(()),
            left => Err(Error::TrailingBytes(left)),
        }
    }

    #[inline]
    fn take(&mut self, count: usize) -> Result<&'de [u8]> {
        if count > self.input.len() {
            return Err(Error::UnexpectedEnd);
        }
        let (taken, rest) = self.input.split_at(count);
        self.input = rest;
        Ok(taken)
    }

    #[inline]
    fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let bytes = self.take(N)?;
        let mut array = [0u8; N];
        array.copy_from_slice(bytes);
        Ok(array)
    }

    #[inline]
    fn byte(&mut self) -> Result<u8> {
        Ok(self.array::<1>()?[0])
    }

    fn varint(&mut self, bits: u32) -> Result<u128> {
        let mut value: u128 = 0;
        let mut shift = 0u32;
        loop {
            let byte = self.byte()?;
            let part = u128::from(byte & 0x7f);
            if shift >= bits || part >> (bits - shift).min(127) != 0 {
                return Err(Error::Invalid("a varint longer than its type"));
            }
            value |= part << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
            shift += 7;
        }
    }

    fn unsigned<T: TryFrom<u128>>(&mut self, bits: u32) -> Result<T> {
        T::try_from(self.varint(bits)?).map_err(|_| Error::Invalid("an integer out of range"))
    }

    fn signed<T: TryFrom<i128>>(&mut self, bits: u32) -> Result<T> {
        let zigzag = self.varint(bits)?;
        let value = (zigzag >> 1) as i128 ^ -((zigzag & 1) as i128);
        T::try_from(value).map_err(|_| Error::Invalid("an integer out of range"))
    }

    fn length(&mut self) -> Result<usize> {
        self.unsigned(64)
    }

    fn bytes(&mut self) -> Result<&'de [u8]> {
        let length = self.length()?;
        self.take(length)
    }

    fn str(&mut self) -> Result<&'de str> {
        std::str::from_utf8(self.bytes()?).map_err(|_| Error::Invalid("a string that is not UTF-8"))
    }
}

impl<'de> de::Deserializer<'de> for &mut Decoder<'de> {
    type Error = Error;

    #[inline]
    fn is_human_readable(&self) -> bool {
        false
    }

    #[inline]
    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value> {
        Err(Error::NotSelfDescribing)
    }

    #[inline]
    fn deserialize_ignored_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value> {
        Err(Error::NotSelfDescribing)
    }

    #[inline]
    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        match self.byte()? {
            0 => visitor.visit_bool(false),
            1 => visitor.visit_bool(true),
            _ => Err(Error::Invalid("a bool that is neither 0 nor 1")),
        }
    }

    #[inline]
    fn deserialize_i8<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        visitor.visit_i8(i8::from_le_bytes(self.array()?))
    }

    #[inline]
    fn deserialize_i16<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        visitor.visit_i16(self.signed(16)?)
    }

    #[inline]
    fn deserialize_i32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        visitor.visit_i32(self.signed(32)?)
    }

    #[inline]
    fn deserialize_i64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        visitor.visit_i64(self.signed(64)?)
    }

    #[inline]
    fn deserialize_i128<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        visitor.visit_i128(self.signed(128)?)
    }

    #[inline]
    fn deserialize_u8<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        visitor.visit_u8(self.byte()?)
    }

    #[inline]
    fn deserialize_u16<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        visitor.visit_u16(self.unsigned(16)?)
    }

    #[inline]
    fn deserialize_u32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        visitor.visit_u32(self.unsigned(32)?)
    }

    #[inline]
    fn deserialize_u64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        visitor.visit_u64(self.unsigned(64)?)
    }

    #[inline]
    fn deserialize_u128<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        visitor.visit_u128(self.unsigned(128)?)
    }

    #[inline]
    fn deserialize_f32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        visitor.visit_f32(f32::from_le_bytes(self.array()?))
    }

    #[inline]
    fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        visitor.visit_f64(f64::from_le_bytes(self.array()?))
    }

    #[inline]
    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        let code: u32 = self.unsigned(32)?;
        visitor.visit_char(char::from_u32(code).ok_or(Error::Invalid("a char out of range"))?)
    }

    #[inline]
    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        visitor.visit_borrowed_str(self.str()?)
    }

    #[inline]
    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.deserialize_str(visitor)
    }

    #[inline]
    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        visitor.visit_borrowed_bytes(self.bytes()?)
    }

    #[inline]
    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        self.deserialize_bytes(visitor)
    }

    #[inline]
    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        match self.byte()? {
            0 => visitor.visit_none(),
            1 => visitor.visit_some(self),
            _ => Err(Error::Invalid("an option tag that is neither 0 nor 1")),
        }
    }

    #[inline]
    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        visitor.visit_unit()
    }

    #[inline]
    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        visitor: V,
    ) -> Result<V::Value> {
        visitor.visit_unit()
    }

    #[inline]
    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        visitor: V,
    ) -> Result<V::Value> {
        visitor.visit_newtype_struct(self)
    }

    #[inline]
    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        let remaining = self.length()?;
        visitor.visit_seq(Elements {
            decoder: self,
            remaining,
        })
    }

    #[inline]
    fn deserialize_tuple<V: Visitor<'de>>(self, length: usize, visitor: V) -> Result<V::Value> {
        visitor.visit_seq(Elements {
            decoder: self,
            remaining: length,
        })
    }

    #[inline]
    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        length: usize,
        visitor: V,
    ) -> Result<V::Value> {
        self.deserialize_tuple(length, visitor)
    }

    #[inline]
    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        let remaining = self.length()?;
        visitor.visit_map(Elements {
            decoder: self,
            remaining,
        })
    }

    #[inline]
    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value> {
        self.deserialize_tuple(fields.len(), visitor)
    }

    #[inline]
    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value> {
        visitor.visit_enum(self)
    }

    #[inline]
    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        visitor.visit_u32(self.unsigned(32)?)
    }
}

/// The elements of a sequence, tuple or struct, or the entries of a map.
struct Elements<'a, 'de> {
    decoder: &'a mut Decoder<'de>,
    remaining: usize,
}

impl<'de> de::SeqAccess<'de> for Elements<'_, 'de> {
    type Error = Error;

    #[inline]
    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>> {
        if self.remaining == 0 {
            return Ok(None);
        }
        self.remaining -= 1;
        seed.deserialize(&mut *self.decoder).map(Some)
    }

    #[inline]
    fn size_hint(&self) -> Option<usize> {
        Some(self.remaining)
    }
}

impl<'de> de::MapAccess<'de> for Elements<'_, 'de> {
    type Error = Error;

    #[inline]
    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>> {
        de::SeqAccess::next_element_seed(self, seed)
    }

    #[inline]
    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value> {
        seed.deserialize(&mut *self.decoder)
    }

    #[inline]
    fn size_hint(&self) -> Option<usize> {
        Some(self.remaining)
    }
}

impl<'de> de::EnumAccess<'de> for &mut Decoder<'de> {
    type Error = Error;
    type Variant = Self;

    fn variant_seed<V: DeserializeSeed<'de>>(self, seed: V) -> Result<(V::Value, Self)> {
        let index: u32 = self.unsigned(32)?;
        let variant = seed.deserialize(IntoDeserializer::<Error>::into_deserializer(index))?;
        Ok((variant, self))
    }
}

impl<'de> de::VariantAccess<'de> for &mut Decoder<'de> {
    type Error = Error;

    fn unit_variant(self) -> Result<()> {
        Ok(())
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value> {
        seed.deserialize(self)
    }

    fn tuple_variant<V: Visitor<'de>>(self, length: usize, visitor: V) -> Result<V::Value> {
        de::Deserializer::deserialize_tuple(self, length, visitor)
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value> {
        de::Deserializer::deserialize_tuple(self, fields.len(), visitor)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, HashSet};
    use std::fmt::Debug;

    use serde::de::DeserializeOwned;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use super::*;

    fn round_trip<T: Serialize + DeserializeOwned + PartialEq + Debug>(value: T) {
        let mut out = Vec::new();
        encode(&value, &mut out, usize::MAX).expect("encode");
        assert_eq!(decode::<T>(&out).expect("decode"), value);
    }

    #[derive(Serialize, Deserialize, PartialEq, Debug)]
    enum Shape {
        Empty,
        Circle(f64),
        Point(i32, i32),
        Rect { width: u32, height: u32 },
    }

    #[derive(Serialize, Deserialize, PartialEq, Debug)]
    struct Everything {
        flag: bool,
        small: (i8, u8, i16, u16),
        ints: (i32, u32, i64, u64, i128, u128),
        floats: (f32, f64),
        letter: char,
        text: String,
        bytes: Vec<u8>,
        maybe: Option<Box<Everything>>,
        shapes: Vec<Shape>,
        map: BTreeMap<String, Vec<u16>>,
        unit: (),
        newtype: Meters,
    }

    #[derive(Serialize, Deserialize, PartialEq, Debug)]
    struct Meters(u64);

    fn everything() -> Everything {
        Everything {
            flag: true,
            small: (i8::MIN, u8::MAX, i16::MIN, u16::MAX),
            ints: (i32::MIN, u32::MAX, i64::MIN, u64::MAX, i128::MIN, u128::MAX),
            floats: (f32::MIN_POSITIVE, -0.5),
            letter: '€',
            text: "naïve".into(),
            bytes: vec![0, 255, 7],
            maybe: Some(Box::new(Everything {
                flag: false,
                small: (0, 0, 0, 0),
                ints: (-1, 1, -1, 1, -1, 1),
                floats: (0.0, f64::MAX),
                letter: 'a',
                text: String::new(),
                bytes: Vec::new(),
                maybe: None,
                shapes: Vec::new(),
                map: BTreeMap::new(),
                unit: (),
                newtype: Meters(0),
            })),
            shapes: vec![
                Shape::Empty,
                Shape::Circle(1.5),
                Shape::Point(-3, 4),
                Shape::Rect {
                    width: 2,
                    height: 300,
                },
            ],
            map: BTreeMap::from([("a".into(), vec![1, 2]), ("b".into(), Vec::new())]),
            unit: (),
            newtype: Meters(u64::MAX / 3),
        }
    }

    #[test]
    fn every_kind_of_value_round_trips() {
        round_trip(everything());
        round_trip((0u64, 127u64, 128u64, 16_383u64, 16_384u64));
        round_trip((-64i64, 63i64, -65i64, 64i64));
        round_trip(HashSet::from([1u8, 2, 3]));
        round_trip(vec![Some(()), None]);
        round_trip(std::time::Duration::from_nanos(123_456_789));
    }

    #[test]
    fn small_values_are_small() {
        let mut out = Vec::new();
        encode(&(1u64, 300u32, -1i64, "ab"), &mut out, usize::MAX).expect("encode");
        assert_eq!(out, [1, 0xac, 0x02, 0x01, 2, b'a', b'b']);
    }

    /// A sequence whose length the serializer learns only at its end.
    struct Unsized(Vec<u32>);

    impl Serialize for Unsized {
        fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
            use serde::ser::SerializeSeq;
            let mut seq = serializer.serialize_seq(None)?;
            for item in &self.0 {
                seq.serialize_element(item)?;
            }
            seq.end()
        }
    }

    #[test]
    fn sequences_of_unknown_length_are_counted_at_their_end() {
        let items: Vec<u32> = (0..300).collect();
        let mut out = vec![9]; // something before it stays in place
        encode(&(Unsized(items.clone()), 5u8), &mut out, usize::MAX).expect("encode");
        assert_eq!(out[0], 9);
        let (decoded, after): (Vec<u32>, u8) = decode(&out[1..]).expect("decode");
        assert_eq!((decoded, after), (items, 5));
    }

    struct Refuses;

    impl Serialize for Refuses {
        fn serialize<S: Serializer>(&self, _: S) -> std::result::Result<S::Ok, S::Error> {
            Err(serde::ser::Error::custom("refused: the handle is closed"))
        }
    }

    #[derive(Debug)]
    struct Picky;

    impl<'de> Deserialize<'de> for Picky {
        fn deserialize<D: Deserializer<'de>>(
            deserializer: D,
        ) -> std::result::Result<Self, D::Error> {
            let n = u8::deserialize(deserializer)?;
            Err(serde::de::Error::custom(format!(
                "{n} is not a picky value"
            )))
        }
    }

    #[test]
    fn messages_of_user_impls_are_kept() {
        let mut out = Vec::new();
        let error = encode(&(1u8, Refuses), &mut out, usize::MAX).expect_err("refused");
        assert_eq!(error.to_string(), "refused: the handle is closed");
        let error = decode::<Picky>(&[7]).expect_err("picky");
        assert_eq!(error.to_string(), "7 is not a picky value");
        // serde's own messages too, e.g. a derived enum's unknown variant.
        let error = decode::<Shape>(&[9]).expect_err("no variant 9");
        assert!(
            error.to_string().contains("variant index 0 <= i < 4"),
            "{error}"
        );
    }

    /// Counts the elements it serializes.
    struct Counted<'a>(&'a std::cell::Cell<usize>, usize);

    impl Serialize for Counted<'_> {
        fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
            use serde::ser::SerializeSeq;
            let mut seq = serializer.serialize_seq(Some(self.1))?;
            for _ in 0..self.1 {
                self.0.set(self.0.get() + 1);
                seq.serialize_element(&[0u8; 64][..])?;
            }
            seq.end()
        }
    }

    #[test]
    fn encoding_stops_as_soon_as_the_limit_is_passed() {
        let count = std::cell::Cell::new(0);
        let mut out = Vec::new();
        // A million 65-byte elements against a 64 KiB limit.
        let error = encode(&Counted(&count, 1_000_000), &mut out, 64 << 10).expect_err("too large");
        assert_eq!(error, Error::TooLarge { limit: 64 << 10 });
        assert!(out.len() <= 64 << 10);
        assert!(count.get() < 1100, "stopped after {} elements", count.get());
    }

    #[test]
    fn malformed_input_is_an_error_never_a_panic() {
        let mut out = Vec::new();
        encode(&everything(), &mut out, usize::MAX).expect("encode");
        for cut in 0..out.len() {
            assert!(decode::<Everything>(&out[..cut]).is_err(), "cut at {cut}");
        }
        assert_eq!(decode::<u8>(&[1, 2]), Err(Error::TrailingBytes(1)));
        assert!(decode::<u64>(&[0xff; 11]).is_err());
        assert!(decode::<u8>(&[]).is_err());
        assert!(decode::<u16>(&[0xff, 0xff, 0x07]).is_err()); // 2^21 - 1 > u16::MAX
        assert!(decode::<bool>(&[2]).is_err());
        assert!(decode::<String>(&[2, 0xff, 0xfe]).is_err());
        assert!(decode::<char>(&[0x80, 0x80, 0xc4, 0x06]).is_err()); // a surrogate
        assert!(decode::<Vec<u8>>(&[0xff, 0xff, 0xff, 0xff, 0x0f]).is_err()); // 4 GiB claimed
        let error = decode::<serde_json_like::Untagged>(&[0]).expect_err("any");
        assert_eq!(error, Error::NotSelfDescribing);
    }

    mod serde_json_like {
        #[derive(serde::Deserialize, Debug)]
        #[serde(untagged)]
        pub(super) enum Untagged {
            #[allow(dead_code)]
            Number(u8),
        }
    }
}
