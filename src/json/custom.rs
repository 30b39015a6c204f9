//! Custom data: plain JSON values, and typed ones (`{"$type": T, "$value": V}`) for what
//! plain JSON cannot say.

use serde_json::{Map, Number, Value as Json};

use super::JsonError;
use super::path::{Path, unknown_field, wrong_type};
use crate::record::{Text, Value};

pub(super) fn custom_map(
    map: Map<String, Json>,
    path: &Path<'_>,
) -> Result<Vec<(Text, Value)>, JsonError> {
    let mut out = Vec::with_capacity(map.len());
    for (key, v) in map {
        let value = custom_value(v, &path.key(&key))?;
        out.push((Text::Owned(key), value));
    }
    Ok(out)
}

fn custom_value(v: Json, path: &Path<'_>) -> Result<Value, JsonError> {
    Ok(match v {
        Json::Null => Value::Nil,
        Json::Bool(b) => Value::Bool(b),
        Json::Number(n) => number(&n, path)?,
        Json::String(s) => Value::Str(Text::Owned(s)),
        Json::Array(items) => Value::Array(
            items
                .into_iter()
                .enumerate()
                .map(|(i, item)| custom_value(item, &path.index(i)))
                .collect::<Result<_, _>>()?,
        ),
        Json::Object(m) if m.contains_key("$type") => typed(m, path)?,
        Json::Object(m) => Value::Map(custom_map(m, path)?),
    })
}

fn number(n: &Number, path: &Path<'_>) -> Result<Value, JsonError> {
    if let Some(i) = n.as_i64() {
        Ok(Value::Int(i))
    } else if let Some(u) = n.as_u64() {
        Ok(Value::UInt(u))
    } else {
        n.as_f64()
            .map(Value::Float)
            .ok_or_else(|| JsonError::InvalidNumber {
                field: path.render(),
                value: n.to_string(),
                expected: "a 64-bit number",
            })
    }
}

/// `{"$type": T, "$value": V}`.
fn typed(m: Map<String, Json>, path: &Path<'_>) -> Result<Value, JsonError> {
    let mut type_name = None;
    let mut value = None;
    for (key, v) in m {
        match key.as_str() {
            "$type" => match v {
                Json::String(s) => type_name = Some(s),
                other => return Err(wrong_type(&path.key("$type"), "a string", &other)),
            },
            "$value" => value = Some(v),
            _ => return Err(unknown_field(&path.key(&key))),
        }
    }
    // `typed` is only called when `$type` is present.
    let type_name = type_name.unwrap_or_default();
    let Some(value) = value else {
        return Err(JsonError::InvalidTypedValue {
            field: path.render(),
            type_name,
            reason: "$value is missing",
        });
    };
    typed_value(&type_name, value, path)
}

fn typed_value(type_name: &str, v: Json, path: &Path<'_>) -> Result<Value, JsonError> {
    let invalid = |reason: &'static str| JsonError::InvalidTypedValue {
        field: path.render(),
        type_name: type_name.to_owned(),
        reason,
    };
    match type_name {
        "int" | "int64" => signed(&v, i64::MIN, i64::MAX).map_err(&invalid),
        "int8" => signed(&v, i8::MIN.into(), i8::MAX.into()).map_err(&invalid),
        "int16" => signed(&v, i16::MIN.into(), i16::MAX.into()).map_err(&invalid),
        "int32" => signed(&v, i32::MIN.into(), i32::MAX.into()).map_err(&invalid),
        "uint" | "uint64" => unsigned(&v, u64::MAX).map_err(&invalid),
        "uint8" => unsigned(&v, u8::MAX.into()).map_err(&invalid),
        "uint16" => unsigned(&v, u16::MAX.into()).map_err(&invalid),
        "uint32" => unsigned(&v, u32::MAX.into()).map_err(&invalid),
        "float64" => float64(&v).map_err(&invalid),
        "map" => match v {
            Json::Object(m) => Ok(Value::Map(custom_map(m, path)?)),
            _ => Err(invalid("expected an object")),
        },
        "string" => match v {
            Json::String(s) => Ok(Value::Str(Text::Owned(s))),
            _ => Err(invalid("expected a string")),
        },
        "bool" => match v {
            Json::Bool(b) => Ok(Value::Bool(b)),
            _ => Err(invalid("expected a boolean")),
        },
        "bytes" | "[]byte" => base64_bytes(&v).map_err(&invalid),
        "float32" | "time" => Err(JsonError::Inexpressible {
            field: path.render(),
            type_name: type_name.to_owned(),
        }),
        _ => match type_name.strip_prefix("[]") {
            Some(element) => match v {
                Json::Array(items) => Ok(Value::Array(
                    items
                        .into_iter()
                        .enumerate()
                        .map(|(i, item)| typed_value(element, item, &path.index(i)))
                        .collect::<Result<_, _>>()?,
                )),
                _ => Err(invalid("expected an array")),
            },
            None => Err(JsonError::UnknownValueType {
                field: path.render(),
                type_name: type_name.to_owned(),
            }),
        },
    }
}

// The typed scalars below return why a value does not fit its type; `typed_value` adds
// the field and the type's name.

/// An integer within `min..=max`.
fn signed(v: &Json, min: i64, max: i64) -> Result<Value, &'static str> {
    match v {
        Json::Number(n) => match n.as_i64() {
            Some(i) if (min..=max).contains(&i) => Ok(Value::Int(i)),
            Some(_) => Err("out of range"),
            None if n.is_u64() => Err("out of range"),
            None => Err("expected an integer"),
        },
        _ => Err("expected an integer"),
    }
}

/// A non-negative integer up to `max`.
fn unsigned(v: &Json, max: u64) -> Result<Value, &'static str> {
    match v {
        Json::Number(n) => match n.as_u64() {
            Some(u) if u <= max => Ok(Value::UInt(u)),
            Some(_) => Err("out of range"),
            None if n.is_i64() => Err("out of range"),
            None => Err("expected an integer"),
        },
        _ => Err("expected an integer"),
    }
}

fn float64(v: &Json) -> Result<Value, &'static str> {
    match v {
        Json::Number(n) => n.as_f64().map(Value::Float).ok_or("expected a number"),
        // What Go's strconv.FormatFloat writes for the floats JSON has no number for.
        Json::String(s) => match s.as_str() {
            "NaN" => Ok(Value::Float(f64::NAN)),
            "+Inf" | "Inf" => Ok(Value::Float(f64::INFINITY)),
            "-Inf" => Ok(Value::Float(f64::NEG_INFINITY)),
            _ => Err("expected a number, NaN, +Inf or -Inf"),
        },
        _ => Err("expected a number"),
    }
}

fn base64_bytes(v: &Json) -> Result<Value, &'static str> {
    match v {
        Json::String(s) => decode_base64(s)
            .map(|b| Value::Bytes(b.into()))
            .ok_or("not standard base64"),
        _ => Err("expected a base64 string"),
    }
}

/// Decodes standard base64 (`A-Z a-z 0-9 + /`), padded or not; `None` for anything
/// else, including non-zero bits after the last byte.
pub(super) fn decode_base64(s: &str) -> Option<Vec<u8>> {
    let mut body = s.as_bytes();
    if body.len() % 4 == 0 {
        for _ in 0..2 {
            if let [rest @ .., b'='] = body {
                body = rest;
            }
        }
    }
    if body.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(body.len() / 4 * 3 + 2);
    let mut acc: u32 = 0;
    let mut bits = 0u32;
    for &c in body {
        let sextet = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(sextet);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    (acc == 0).then_some(out)
}
