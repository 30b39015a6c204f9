//! Custom-data values.

use std::borrow::Cow;

use super::Text;

/// A custom-data value.
///
/// Integers are written in the 9-byte 64-bit forms, floats as float64, bytes as msgpack
/// `bin`, as the reference client does.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// msgpack nil.
    Nil,
    /// A boolean.
    Bool(bool),
    /// A signed integer.
    Int(i64),
    /// An unsigned integer.
    UInt(u64),
    /// A 64-bit float.
    Float(f64),
    /// A string.
    Str(Text),
    /// Raw bytes.
    Bytes(Cow<'static, [u8]>),
    /// An array of values.
    Array(Vec<Value>),
    /// A map with string keys, written in this order. Keys must be unique.
    Map(Vec<(Text, Value)>),
}

macro_rules! value_from {
    ($($t:ty => $v:ident),* $(,)?) => {$(
        impl From<$t> for Value {
            fn from(v: $t) -> Self {
                Value::$v(v.into())
            }
        }
    )*};
}
value_from!(
    bool => Bool, i8 => Int, i16 => Int, i32 => Int, i64 => Int,
    u8 => UInt, u16 => UInt, u32 => UInt, u64 => UInt,
    f32 => Float, f64 => Float,
    &'static str => Str, String => Str, Text => Str,
    Vec<Value> => Array, Vec<(Text, Value)> => Map,
);

impl From<&'static [u8]> for Value {
    fn from(v: &'static [u8]) -> Self {
        Value::Bytes(Cow::Borrowed(v))
    }
}

impl From<Vec<u8>> for Value {
    fn from(v: Vec<u8>) -> Self {
        Value::Bytes(Cow::Owned(v))
    }
}
