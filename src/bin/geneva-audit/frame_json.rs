//! Received frames as JSON: MessagePack values converted, optionally flattened.

use geneva_audit::agent::ReceivedFrame;
use geneva_audit::agent::rmpv::Value as Mp;
use serde_json::{Map, Value as Json};

pub fn frame_json(frame: &ReceivedFrame, flatten: bool) -> Json {
    let body = if flatten {
        let mut flat = Map::new();
        flatten_into(&mut flat, None, &frame.body);
        Json::Object(flat)
    } else {
        to_json(&frame.body)
    };
    let mut obj = Map::new();
    obj.insert("tag".into(), Json::String(frame.tag.clone()));
    obj.insert("ts".into(), Json::from(frame.ts));
    obj.insert("connection".into(), Json::from(frame.connection));
    obj.insert("body".into(), body);
    Json::Object(obj)
}

/// A map key as text: strings as they are, anything else as its JSON text.
fn key_text(key: &Mp) -> String {
    match key {
        Mp::String(s) => match s.as_str() {
            Some(s) => s.to_owned(),
            None => String::from_utf8_lossy(s.as_bytes()).into_owned(),
        },
        other => to_json(other).to_string(),
    }
}

/// Converts a MessagePack value to JSON: binary as base64 text, ext as
/// `{"$ext": type, "$data": base64}`, non-finite floats as null.
fn to_json(v: &Mp) -> Json {
    match v {
        Mp::Nil => Json::Null,
        Mp::Boolean(b) => Json::Bool(*b),
        Mp::Integer(i) => {
            if let Some(n) = i.as_i64() {
                Json::from(n)
            } else if let Some(n) = i.as_u64() {
                Json::from(n)
            } else {
                Json::Null
            }
        }
        Mp::F32(f) => serde_json::Number::from_f64(f64::from(*f)).map_or(Json::Null, Json::Number),
        Mp::F64(f) => serde_json::Number::from_f64(*f).map_or(Json::Null, Json::Number),
        Mp::String(s) => Json::String(match s.as_str() {
            Some(s) => s.to_owned(),
            None => String::from_utf8_lossy(s.as_bytes()).into_owned(),
        }),
        Mp::Binary(b) => Json::String(base64(b)),
        Mp::Array(items) => Json::Array(items.iter().map(to_json).collect()),
        Mp::Map(entries) => Json::Object(
            entries
                .iter()
                .map(|(k, v)| (key_text(k), to_json(v)))
                .collect(),
        ),
        Mp::Ext(ty, data) => {
            let mut obj = Map::new();
            obj.insert("$ext".into(), Json::from(*ty));
            obj.insert("$data".into(), Json::String(base64(data)));
            Json::Object(obj)
        }
    }
}

/// Nested maps and arrays become dotted keys: `CallerIdentities.UPN.0.Identity`. Empty
/// maps and arrays are kept as values so that they do not vanish.
fn flatten_into(out: &mut Map<String, Json>, prefix: Option<&str>, v: &Mp) {
    let join = |k: &str| match prefix {
        Some(p) => format!("{p}.{k}"),
        None => k.to_owned(),
    };
    match v {
        Mp::Map(entries) if !entries.is_empty() => {
            for (k, v) in entries {
                flatten_into(out, Some(&join(&key_text(k))), v);
            }
        }
        Mp::Array(items) if !items.is_empty() && prefix.is_some() => {
            for (i, v) in items.iter().enumerate() {
                flatten_into(out, Some(&join(&i.to_string())), v);
            }
        }
        other => {
            let key = prefix.map_or_else(String::new, str::to_owned);
            out.insert(key, to_json(other));
        }
    }
}

fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                let idx = usize::try_from((n >> (18 - 6 * i)) & 63).unwrap_or(0);
                s.push(char::from(ALPHABET[idx]));
            } else {
                s.push('=');
            }
        }
    }
    s
}
