//! JSON to WIT values and back, against a task's types (see the mapping in [`super`]).

use std::fmt;

use base64::Engine as _;
use serde_json::{Map, Number, Value};
use wasmtime::component::types::{ComponentFunc, Type};
use wasmtime::component::Val;

use super::naming::suggest;
use super::signature::{render_params, render_type};

/// A JSON value did not match the WIT type it was converted against.
///
/// Displays as `input at <path>: expected <expected>, found <found>`, for example
/// `input at $.order.items[2].quantity: expected u32, found -1 (out of range)`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("input at {path}: expected {expected}, found {found}")]
pub struct ConvertError {
    /// JSONPath of the offending value in the input: `$` for the whole input, `.name` for an
    /// object key (`["key"]` when the key is not a plain identifier), `[i]` for an array index.
    pub path: String,
    /// What was expected there, usually a WIT type rendered by [`render_type`].
    pub expected: String,
    /// A short description of what was found, e.g. `a string "abc"` or `-1 (out of range)`.
    pub found: String,
}

impl ConvertError {
    fn new(path: Path<'_>, expected: impl Into<String>, found: impl Into<String>) -> Self {
        ConvertError {
            path: path.to_string(),
            expected: expected.into(),
            found: found.into(),
        }
    }

    fn at(path: Path<'_>, ty: &Type, found: impl Into<String>) -> Self {
        Self::new(path, render_type(ty), found)
    }
}

/// A JSON path, built on the stack while descending and only rendered when an error occurs.
#[derive(Clone, Copy)]
pub(super) enum Path<'a> {
    Root,
    Key(&'a Path<'a>, &'a str),
    Index(&'a Path<'a>, usize),
}

impl fmt::Display for Path<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Path::Root => f.write_str("$"),
            Path::Key(parent, key) => {
                let plain = !key.is_empty()
                    && key
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
                if plain {
                    write!(f, "{parent}.{key}")
                } else {
                    write!(f, "{parent}[{}]", Value::from(*key))
                }
            }
            Path::Index(parent, index) => write!(f, "{parent}[{index}]"),
        }
    }
}

/// Largest magnitude up to which every integer is exactly representable as an f64 (2^53).
const MAX_SAFE_INTEGER: u64 = 1 << 53;

/// Converts `json` to a [`Val`] of type `ty`, following the JSON mapping in the module docs.
///
/// Errors name the JSON path from the root of `json` (`$`).
pub fn json_to_val(json: &Value, ty: &Type) -> Result<Val, ConvertError> {
    to_val(json, ty, Path::Root)
}

fn to_val(json: &Value, ty: &Type, path: Path<'_>) -> Result<Val, ConvertError> {
    let mismatch = || ConvertError::at(path, ty, describe(json));
    Ok(match ty {
        Type::Bool => Val::Bool(json.as_bool().ok_or_else(mismatch)?),
        Type::String => Val::String(json.as_str().ok_or_else(mismatch)?.to_string()),
        Type::Char => {
            let s = json.as_str().ok_or_else(mismatch)?;
            let mut chars = s.chars();
            match (chars.next(), chars.next()) {
                (Some(c), None) => Val::Char(c),
                _ => {
                    let note = format!("{} (not exactly one character)", describe(json));
                    return Err(ConvertError::at(path, ty, note));
                }
            }
        }
        Type::U8 => Val::U8(int(json, ty, path)?),
        Type::U16 => Val::U16(int(json, ty, path)?),
        Type::U32 => Val::U32(int(json, ty, path)?),
        Type::U64 => Val::U64(int(json, ty, path)?),
        Type::S8 => Val::S8(int(json, ty, path)?),
        Type::S16 => Val::S16(int(json, ty, path)?),
        Type::S32 => Val::S32(int(json, ty, path)?),
        Type::S64 => Val::S64(int(json, ty, path)?),
        Type::Float32 => {
            let f = float(json).ok_or_else(mismatch)?;
            let narrowed = f as f32;
            if f.is_finite() && narrowed.is_infinite() {
                let note = format!("{} (out of range)", describe(json));
                return Err(ConvertError::at(path, ty, note));
            }
            Val::Float32(narrowed)
        }
        Type::Float64 => Val::Float64(float(json).ok_or_else(mismatch)?),
        Type::List(list) => {
            let elem = list.ty();
            match json {
                Value::String(s) if elem == Type::U8 => {
                    let bytes = BASE64.decode(s).map_err(|e| {
                        let note = format!("{} (not valid base64: {e})", describe(json));
                        ConvertError::at(path, ty, note)
                    })?;
                    Val::List(bytes.into_iter().map(Val::U8).collect())
                }
                Value::Array(items) => Val::List(elements(items, &elem, path)?),
                _ => return Err(mismatch()),
            }
        }
        Type::FixedLengthList(list) => {
            let items = json.as_array().ok_or_else(mismatch)?;
            if items.len() != list.len() as usize {
                let note = format!("{} (needs exactly {})", describe(json), list.len());
                return Err(ConvertError::at(path, ty, note));
            }
            Val::FixedLengthList(elements(items, &list.ty(), path)?)
        }
        Type::Map(map) => {
            let (key_ty, value_ty) = (map.key(), map.value());
            let mut entries = Vec::new();
            match json {
                Value::Object(object) => {
                    for (key, value) in object {
                        let at = Path::Key(&path, key);
                        let key = to_val(&Value::String(key.clone()), &key_ty, at)?;
                        entries.push((key, to_val(value, &value_ty, at)?));
                    }
                }
                Value::Array(pairs) => {
                    for (i, pair) in pairs.iter().enumerate() {
                        let at = Path::Index(&path, i);
                        let Some([key, value]) = pair.as_array().map(Vec::as_slice) else {
                            let note = format!("{} (map entries are [key, value])", describe(pair));
                            return Err(ConvertError::at(at, ty, note));
                        };
                        entries.push((
                            to_val(key, &key_ty, Path::Index(&at, 0))?,
                            to_val(value, &value_ty, Path::Index(&at, 1))?,
                        ));
                    }
                }
                _ => return Err(mismatch()),
            }
            Val::Map(entries)
        }
        Type::Record(record) => {
            let object = json.as_object().ok_or_else(mismatch)?;
            let fields: Vec<_> = record.fields().collect();
            if let Some(unknown) = object
                .keys()
                .find(|k| fields.iter().all(|f| f.name != k.as_str()))
            {
                let names: Vec<&str> = fields.iter().map(|f| f.name).collect();
                let note = format!(
                    "unknown field {} (fields: {})",
                    Value::from(unknown.as_str()),
                    names.join(", ")
                );
                return Err(ConvertError::at(path, ty, note));
            }
            let mut values = Vec::with_capacity(fields.len());
            for field in &fields {
                let at = Path::Key(&path, field.name);
                let value = match object.get(field.name) {
                    Some(value) => to_val(value, &field.ty, at)?,
                    None if matches!(field.ty, Type::Option(_)) => Val::Option(None),
                    None => return Err(ConvertError::at(at, &field.ty, "nothing (missing field)")),
                };
                values.push((field.name.to_string(), value));
            }
            Val::Record(values)
        }
        Type::Tuple(tuple) => {
            let items = json.as_array().ok_or_else(mismatch)?;
            if items.len() != tuple.types().len() {
                let note = format!("{} (needs exactly {})", describe(json), tuple.types().len());
                return Err(ConvertError::at(path, ty, note));
            }
            let values = items.iter().zip(tuple.types()).enumerate();
            Val::Tuple(
                values
                    .map(|(i, (item, ty))| to_val(item, &ty, Path::Index(&path, i)))
                    .collect::<Result<_, _>>()?,
            )
        }
        Type::Variant(variant) => {
            let (name, payload) = match json {
                Value::String(name) => (name.as_str(), None),
                Value::Object(object) if object.len() == 1 => {
                    let (name, payload) = object.iter().next().expect("one entry");
                    (name.as_str(), Some(payload))
                }
                _ => {
                    let note = format!(
                        "{} (a variant is {{\"case\": payload}}, or \"case\" without payload)",
                        describe(json)
                    );
                    return Err(ConvertError::at(path, ty, note));
                }
            };
            let Some(case) = variant.cases().find(|c| c.name == name) else {
                let cases: Vec<&str> = variant.cases().map(|c| c.name).collect();
                let note = format!(
                    "unknown case {} (cases: {})",
                    Value::from(name),
                    cases.join(", ")
                );
                return Err(ConvertError::at(path, ty, note));
            };
            let at = Path::Key(&path, name);
            let payload = match (case.ty, payload) {
                (None, None | Some(Value::Null)) => None,
                (None, Some(other)) => {
                    return Err(ConvertError::new(
                        at,
                        "null (this case has no payload)",
                        describe(other),
                    ))
                }
                (Some(payload_ty), Some(payload)) => {
                    Some(Box::new(to_val(payload, &payload_ty, at)?))
                }
                (Some(payload_ty), None) => {
                    let note = format!(
                        "{} (case {name} needs a payload: {{\"{name}\": {}}})",
                        describe(json),
                        render_type(&payload_ty)
                    );
                    return Err(ConvertError::at(path, ty, note));
                }
            };
            Val::Variant(name.to_string(), payload)
        }
        Type::Enum(enum_) => {
            let name = json.as_str().ok_or_else(mismatch)?;
            if !enum_.names().any(|n| n == name) {
                let cases: Vec<&str> = enum_.names().collect();
                let note = format!(
                    "unknown case {} (cases: {})",
                    Value::from(name),
                    cases.join(", ")
                );
                return Err(ConvertError::at(path, ty, note));
            }
            Val::Enum(name.to_string())
        }
        Type::Option(option) => {
            let inner = option.ty();
            if json.is_null() {
                Val::Option(None)
            } else if matches!(inner, Type::Option(_)) {
                let Some(some) = json
                    .as_object()
                    .filter(|o| o.len() == 1)
                    .and_then(|o| o.get("some"))
                else {
                    let note = format!(
                        "{} (a nested option's some(x) is written {{\"some\": x}})",
                        describe(json)
                    );
                    return Err(ConvertError::at(path, ty, note));
                };
                Val::Option(Some(Box::new(to_val(
                    some,
                    &inner,
                    Path::Key(&path, "some"),
                )?)))
            } else {
                Val::Option(Some(Box::new(to_val(json, &inner, path)?)))
            }
        }
        Type::Result(result) => {
            let entry = json
                .as_object()
                .filter(|o| o.len() == 1)
                .and_then(|o| o.iter().next());
            let (key, payload_ty, payload) = match entry {
                Some((key, payload)) if key == "ok" => (key, result.ok(), payload),
                Some((key, payload)) if key == "err" => (key, result.err(), payload),
                _ => {
                    let note = format!(
                        "{} (a result is {{\"ok\": ..}} or {{\"err\": ..}})",
                        describe(json)
                    );
                    return Err(ConvertError::at(path, ty, note));
                }
            };
            let at = Path::Key(&path, key);
            let payload = match payload_ty {
                Some(payload_ty) => Some(Box::new(to_val(payload, &payload_ty, at)?)),
                None if payload.is_null() => None,
                None => {
                    return Err(ConvertError::new(
                        at,
                        "null (no payload)",
                        describe(payload),
                    ))
                }
            };
            Val::Result(if key == "ok" {
                Ok(payload)
            } else {
                Err(payload)
            })
        }
        Type::Flags(flags) => {
            let items = json.as_array().ok_or_else(mismatch)?;
            let mut set: Vec<String> = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                let at = Path::Index(&path, i);
                let name = item
                    .as_str()
                    .ok_or_else(|| ConvertError::at(at, ty, describe(item)))?;
                if !flags.names().any(|n| n == name) {
                    let names: Vec<&str> = flags.names().collect();
                    let note = format!(
                        "unknown flag {} (flags: {})",
                        Value::from(name),
                        names.join(", ")
                    );
                    return Err(ConvertError::at(at, ty, note));
                }
                if !set.iter().any(|n| n == name) {
                    set.push(name.to_string());
                }
            }
            Val::Flags(set)
        }
        Type::Own(_) | Type::Borrow(_) | Type::Future(_) | Type::Stream(_) | Type::ErrorContext => {
            let note = format!("{} ({})", describe(json), boundary_note(ty));
            return Err(ConvertError::at(path, ty, note));
        }
    })
}

/// The standard base64 alphabet, accepting input with or without padding.
const BASE64: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    base64::engine::GeneralPurposeConfig::new()
        .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
);

fn elements(items: &[Value], ty: &Type, path: Path<'_>) -> Result<Vec<Val>, ConvertError> {
    let items = items.iter().enumerate();
    items
        .map(|(i, item)| to_val(item, ty, Path::Index(&path, i)))
        .collect()
}

/// Reads an integer of type `ty` (whose Rust counterpart is `T`) from a JSON number, or for
/// 64-bit types also from a decimal string.
fn int<T: TryFrom<i128>>(json: &Value, ty: &Type, path: Path<'_>) -> Result<T, ConvertError> {
    let fail = |why: &str| ConvertError::at(path, ty, format!("{} ({why})", describe(json)));
    let wide: i128 = match json {
        Value::Number(n) => match (n.as_u64(), n.as_i64(), n.as_f64()) {
            (Some(u), _, _) => u.into(),
            (_, Some(i), _) => i.into(),
            (_, _, Some(f)) if f.fract() == 0.0 && f.abs() < 1e30 => f as i128,
            (_, _, Some(f)) if f.fract() == 0.0 => return Err(fail("out of range")),
            _ => return Err(fail("not an integer")),
        },
        Value::String(s) if matches!(ty, Type::U64 | Type::S64) => {
            s.parse().map_err(|_| fail("not a decimal integer"))?
        }
        _ => return Err(ConvertError::at(path, ty, describe(json))),
    };
    T::try_from(wide).map_err(|_| fail("out of range"))
}

/// Reads a float from a JSON number or one of the strings `"NaN"`, `"inf"`, `"-inf"`.
fn float(json: &Value) -> Option<f64> {
    match json {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => match s.as_str() {
            "NaN" => Some(f64::NAN),
            "inf" => Some(f64::INFINITY),
            "-inf" => Some(f64::NEG_INFINITY),
            _ => None,
        },
        _ => None,
    }
}

pub(super) fn boundary_note(ty: &Type) -> &'static str {
    match ty {
        Type::Own(_) | Type::Borrow(_) => "resources cannot cross a task boundary",
        Type::Future(_) => "futures cannot cross a task boundary",
        Type::Stream(_) => "streams cannot cross a task boundary",
        _ => "error-contexts cannot cross a task boundary",
    }
}

/// Describes a JSON value for an error message: `null`, `true`, `-1`, `a string "abc"`,
/// `an array of 3 elements`, `an object with keys "a", "b"`.
fn describe(json: &Value) -> String {
    match json {
        Value::Null | Value::Bool(_) | Value::Number(_) => json.to_string(),
        Value::String(s) if s.chars().count() > 40 => {
            let head: String = s.chars().take(40).collect();
            format!(
                "a string {}... ({} characters)",
                Value::from(head),
                s.chars().count()
            )
        }
        Value::String(_) => format!("a string {json}"),
        Value::Array(items) if items.len() == 1 => "an array of 1 element".to_string(),
        Value::Array(items) => format!("an array of {} elements", items.len()),
        Value::Object(object) if object.is_empty() => "an empty object".to_string(),
        Value::Object(object) => {
            let keys: Vec<String> = object
                .keys()
                .take(5)
                .map(|k| Value::from(k.as_str()).to_string())
                .collect();
            let more = if object.len() > 5 { ", ..." } else { "" };
            format!("an object with keys {}{more}", keys.join(", "))
        }
    }
}

/// Converts a [`Val`] to JSON, the inverse of [`json_to_val`]: `json_to_val(&val_to_json(v), ty)`
/// yields `v` again for every value `v` of type `ty` (map entries and flags aside, whose order
/// may change).
///
/// `Val` carries no type, so a few choices are made from the value alone: `u64`/`s64` beyond
/// ±2^53 become decimal strings; NaN and infinities become `"NaN"`, `"inf"`, `"-inf"`; a map
/// becomes an object when every key converts to a JSON string, else an array of pairs. Handles
/// (resources, futures, streams, error-contexts), which [`task_exports`] keeps out of task
/// signatures, become the placeholder strings `"<resource>"`, `"<future>"`, `"<stream>"` and
/// `"<error-context>"`.
pub fn val_to_json(val: &Val) -> Value {
    match val {
        Val::Bool(b) => Value::Bool(*b),
        Val::S8(n) => Value::from(*n),
        Val::U8(n) => Value::from(*n),
        Val::S16(n) => Value::from(*n),
        Val::U16(n) => Value::from(*n),
        Val::S32(n) => Value::from(*n),
        Val::U32(n) => Value::from(*n),
        Val::S64(n) if n.unsigned_abs() <= MAX_SAFE_INTEGER => Value::from(*n),
        Val::U64(n) if *n <= MAX_SAFE_INTEGER => Value::from(*n),
        Val::S64(n) => Value::String(n.to_string()),
        Val::U64(n) => Value::String(n.to_string()),
        // `Display` of an f32 is its shortest round-tripping decimal, so 0.1f32 becomes 0.1
        // rather than 0.10000000149011612.
        Val::Float32(f) => float_to_json(f.to_string().parse().unwrap_or(f64::from(*f))),
        Val::Float64(f) => float_to_json(*f),
        Val::Char(c) => Value::String(c.to_string()),
        Val::String(s) => Value::String(s.clone()),
        Val::List(items) | Val::Tuple(items) | Val::FixedLengthList(items) => {
            Value::Array(items.iter().map(val_to_json).collect())
        }
        Val::Map(entries) => {
            let entries: Vec<(Value, Value)> = entries
                .iter()
                .map(|(k, v)| (val_to_json(k), val_to_json(v)))
                .collect();
            if entries.iter().all(|(k, _)| k.is_string()) {
                let object = entries.into_iter().map(|(k, v)| match k {
                    Value::String(k) => (k, v),
                    _ => unreachable!("all keys are strings"),
                });
                Value::Object(object.collect())
            } else {
                let pairs = entries.into_iter().map(|(k, v)| Value::Array(vec![k, v]));
                Value::Array(pairs.collect())
            }
        }
        Val::Record(fields) => Value::Object(
            fields
                .iter()
                .map(|(name, value)| (name.clone(), val_to_json(value)))
                .collect(),
        ),
        Val::Variant(name, None) | Val::Enum(name) => Value::String(name.clone()),
        Val::Variant(name, Some(payload)) => single(name, val_to_json(payload)),
        Val::Option(None) => Value::Null,
        Val::Option(Some(inner)) if matches!(**inner, Val::Option(_)) => {
            single("some", val_to_json(inner))
        }
        Val::Option(Some(inner)) => val_to_json(inner),
        Val::Result(Ok(payload)) => {
            single("ok", payload.as_deref().map_or(Value::Null, val_to_json))
        }
        Val::Result(Err(payload)) => {
            single("err", payload.as_deref().map_or(Value::Null, val_to_json))
        }
        Val::Flags(names) => Value::Array(names.iter().map(|n| Value::String(n.clone())).collect()),
        Val::Resource(_) => Value::from("<resource>"),
        Val::Future(_) => Value::from("<future>"),
        Val::Stream(_) => Value::from("<stream>"),
        Val::ErrorContext(_) => Value::from("<error-context>"),
    }
}

/// The length of [`val_to_json`]`(val)`'s compact JSON text (floats approximately), computed
/// without building it, so an oversized value can be refused before it is converted.
pub fn val_json_len(val: &Val) -> u64 {
    fn text(s: &str) -> u64 {
        let escaped: u64 = s
            .chars()
            .map(|c| match c {
                '"' | '\\' | '\n' | '\r' | '\t' | '\u{8}' | '\u{c}' => 2,
                c if (c as u32) < 0x20 => 6,
                c => c.len_utf8() as u64,
            })
            .sum();
        escaped + 2
    }
    fn digits(n: impl std::fmt::Display) -> u64 {
        n.to_string().len() as u64
    }
    fn items<'a>(values: impl Iterator<Item = &'a Val>) -> u64 {
        let (mut len, mut count) = (2, 0u64);
        for value in values {
            len += val_json_len(value);
            count += 1;
        }
        len + count.saturating_sub(1)
    }
    /// `{"key": value}`.
    fn single(key: &str, value: u64) -> u64 {
        2 + text(key) + 1 + value
    }
    match val {
        Val::Bool(true) => 4,
        Val::Bool(false) => 5,
        Val::S8(n) => digits(n),
        Val::U8(n) => digits(n),
        Val::S16(n) => digits(n),
        Val::U16(n) => digits(n),
        Val::S32(n) => digits(n),
        Val::U32(n) => digits(n),
        Val::S64(n) if n.unsigned_abs() <= MAX_SAFE_INTEGER => digits(n),
        Val::U64(n) if *n <= MAX_SAFE_INTEGER => digits(n),
        Val::S64(n) => digits(n) + 2,
        Val::U64(n) => digits(n) + 2,
        Val::Float32(f) => digits(f) + 2,
        Val::Float64(f) => digits(f) + 2,
        Val::Char(c) => text(c.encode_utf8(&mut [0; 4])),
        Val::String(s) => text(s),
        Val::List(values) | Val::Tuple(values) | Val::FixedLengthList(values) => {
            items(values.iter())
        }
        Val::Map(entries) => {
            let inner: u64 = entries
                .iter()
                .map(|(k, v)| val_json_len(k) + 1 + val_json_len(v))
                .sum();
            2 + inner + (entries.len() as u64).saturating_sub(1)
        }
        Val::Record(fields) => {
            let inner: u64 = fields
                .iter()
                .map(|(name, value)| text(name) + 1 + val_json_len(value))
                .sum();
            2 + inner + (fields.len() as u64).saturating_sub(1)
        }
        Val::Variant(name, None) | Val::Enum(name) => text(name),
        Val::Variant(name, Some(payload)) => single(name, val_json_len(payload)),
        Val::Option(None) => 4,
        Val::Option(Some(inner)) if matches!(**inner, Val::Option(_)) => {
            single("some", val_json_len(inner))
        }
        Val::Option(Some(inner)) => val_json_len(inner),
        Val::Result(Ok(payload)) => single("ok", payload.as_deref().map_or(4, val_json_len)),
        Val::Result(Err(payload)) => single("err", payload.as_deref().map_or(4, val_json_len)),
        Val::Flags(names) => {
            let inner: u64 = names.iter().map(|n| text(n)).sum();
            2 + inner + (names.len() as u64).saturating_sub(1)
        }
        Val::Resource(_) | Val::Future(_) | Val::Stream(_) | Val::ErrorContext(_) => 16,
    }
}

fn float_to_json(f: f64) -> Value {
    match Number::from_f64(f) {
        Some(n) => Value::Number(n),
        None if f.is_nan() => Value::from("NaN"),
        None if f > 0.0 => Value::from("inf"),
        None => Value::from("-inf"),
    }
}

fn single(key: &str, value: Value) -> Value {
    let mut object = Map::new();
    object.insert(key.to_string(), value);
    Value::Object(object)
}

/// Converts a task's JSON input to the parameter values of `func`, in declaration order.
///
/// The input is an object keyed by parameter name, e.g. `{"name": "Ada", "count": 2}`; errors
/// for a parameter's value carry the path `$.<param>...`. Unknown parameter names are an error;
/// a missing parameter is an error unless its type is an `option`, in which case it is `none`
/// (the same rule as for record fields).
///
/// - Zero parameters: `null` (pass `Value::Null` for absent input) and `{}` are accepted.
/// - One parameter `p`: the bare value is accepted too (its error paths start at `$`). The keyed
///   form is canonical and wins: an object with a `p` key is first read as keyed input and only
///   if that fails as the bare value, so `{"p": v}` always means `p = v` when `v` is valid for
///   `p` (even if `p`'s own type is a record with a field `p`). Any other input is read as the
///   bare value. When both readings fail, the keyed form's error is reported if the input has
///   a `p` key or `p`'s type is never written as an object (so `{"nmae": "Ada"}` for
///   `name: string` reports the unknown parameter), else the bare form's.
pub fn params_from_json(func: &ComponentFunc, input: &Value) -> Result<Vec<Val>, ConvertError> {
    let params: Vec<(&str, Type)> = func.params().collect();
    match (params.as_slice(), input) {
        ([], Value::Null) => Ok(Vec::new()),
        ([(name, ty)], _) => {
            let bare = || json_to_val(input, ty).map(|val| vec![val]);
            if input.as_object().is_some_and(|o| o.contains_key(*name)) {
                keyed_params(func, &params, input).or_else(|err| bare().map_err(|_| err))
            } else {
                bare().or_else(|err| match input.is_object() && !written_as_object(ty) {
                    true => keyed_params(func, &params, input),
                    false => Err(err),
                })
            }
        }
        _ => keyed_params(func, &params, input),
    }
}

fn keyed_params(
    func: &ComponentFunc,
    params: &[(&str, Type)],
    input: &Value,
) -> Result<Vec<Val>, ConvertError> {
    let expected = || match params {
        [] => "no input (null or {})".to_string(),
        _ => format!("an object of parameters {}", render_params(func)),
    };
    let Some(object) = input.as_object() else {
        return Err(ConvertError::new(Path::Root, expected(), describe(input)));
    };
    if let Some(unknown) = object
        .keys()
        .find(|k| params.iter().all(|(n, _)| *n != k.as_str()))
    {
        let names: Vec<String> = params.iter().map(|(n, _)| n.to_string()).collect();
        let known = if names.is_empty() {
            "the task takes none".to_string()
        } else {
            format!("parameters: {}", names.join(", "))
        };
        let hint = match suggest(unknown, &names).first() {
            Some(best) => format!("; did you mean {}?", Value::from(best.as_str())),
            None => String::new(),
        };
        let found = format!(
            "unknown parameter {} ({known}{hint})",
            Value::from(unknown.as_str())
        );
        return Err(ConvertError::new(Path::Root, expected(), found));
    }
    params
        .iter()
        .map(|(name, ty)| {
            let at = Path::Key(&Path::Root, name);
            match object.get(*name) {
                Some(value) => to_val(value, ty, at),
                None if matches!(ty, Type::Option(_)) => Ok(Val::Option(None)),
                None => Err(ConvertError::at(at, ty, "nothing (missing parameter)")),
            }
        })
        .collect()
}

/// Whether some value of `ty` is written as a JSON object.
fn written_as_object(ty: &Type) -> bool {
    match ty {
        Type::Record(_) | Type::Map(_) | Type::Variant(_) | Type::Result(_) => true,
        Type::Option(option) => {
            let inner = option.ty();
            matches!(inner, Type::Option(_)) || written_as_object(&inner)
        }
        _ => false,
    }
}

/// Converts the results of a call to JSON: `null` for none, the value itself for one, and an
/// array for several (only possible in components predating single results).
pub fn results_to_json(results: &[Val]) -> Value {
    match results {
        [] => Value::Null,
        [one] => val_to_json(one),
        many => Value::Array(many.iter().map(val_to_json).collect()),
    }
}

/// A results buffer of the right length for calling a function of type `func` with
/// `Func::call_async` (the placeholder values are overwritten by the call).
pub fn results_buffer(func: &ComponentFunc) -> Vec<Val> {
    vec![Val::Bool(false); func.results().len()]
}
