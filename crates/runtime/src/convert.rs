//! Conversion between JSON and WIT values, WIT rendering and the task catalogue of a component.
//!
//! A task's parameters and results are WIT types; the API speaks JSON. This module converts JSON
//! to [`Val`] against a [`Type`] (failing with a [`ConvertError`] that names the JSON path, the
//! expected WIT type and what was found), converts [`Val`] back to JSON, renders types and
//! function signatures as WIT text, and lists the exported functions of a component as tasks.
//!
//! # JSON mapping
//!
//! | WIT | JSON |
//! | --- | --- |
//! | `bool`, `string` | a boolean, a string |
//! | `char` | a string of exactly one Unicode scalar value |
//! | `u8` .. `u32`, `s8` .. `s32` | an integral number in range (`3.0` and `1e3` are integral, `1.5` is not) |
//! | `u64`, `s64` | the same, or a decimal string such as `"18446744073709551615"`; output is a number when the magnitude is at most 2^53 and a decimal string beyond, so it survives JavaScript and other f64-based JSON readers |
//! | `f32`, `f64` | a number, or one of the strings `"NaN"`, `"inf"`, `"-inf"` (emitted the same way) |
//! | `list<T>`, `list<T, N>` | an array (exactly `N` long for the fixed-length form); `list<u8>` also accepts a base64 string (standard alphabet, padding optional) and is emitted as an array |
//! | `map<K, V>` | an object when keys are written as JSON strings (`string`, `char`, `enum`, `u64`/`s64` keys), or an array of `[key, value]` pairs; output uses an object when every key renders as a string |
//! | `record` | an object keyed by the kebab-case field names; unknown fields are an error; a missing `option` field is `none`, any other missing field is an error |
//! | `tuple<..>` | an array of exactly the tuple's length |
//! | `option<T>` | `null` for `none`, else the value of `T`; when `T` is itself an option, `some(x)` is written `{"some": x}` so that `some(none)` (`{"some": null}`) differs from `none` (`null`) |
//! | `result<T, E>` | `{"ok": T}` or `{"err": E}`; a missing payload is `null`, e.g. `{"ok": null}` for `result<_, string>` |
//! | `enum` | the case name |
//! | `variant` | `{"case": payload}`, or the bare case name when the case has no payload (`{"case": null}` is accepted for it too) |
//! | `flags` | an array of flag names (duplicates are ignored) |
//! | `own`, `borrow`, `future`, `stream`, `error-context` | rejected: handles cannot cross a task boundary |

use std::fmt::{self, Write as _};

use base64::Engine as _;
use serde_json::{Map, Number, Value};
use wasmtime::component::types::{ComponentFunc, ComponentItem, Type};
use wasmtime::component::{Component, ComponentExportIndex, Val};
use wasmtime::Engine;

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
enum Path<'a> {
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

fn boundary_note(ty: &Type) -> &'static str {
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

/// Renders a type as WIT text, e.g. `list<option<u32>>` or `result<string, string>`.
///
/// Records, variants, enums and flags carry no names in wasmtime's types, so they are rendered
/// structurally: `record { a: u32, b-c: string }`, `variant { a, b(u32) }`, `enum { low, high }`,
/// `flags { read, write }`. Resource handles render as `own<resource>` / `borrow<resource>`.
pub fn render_type(ty: &Type) -> String {
    let mut out = String::new();
    write_type(&mut out, ty);
    out
}

fn write_type(out: &mut String, ty: &Type) {
    let simple = match ty {
        Type::Bool => "bool",
        Type::S8 => "s8",
        Type::U8 => "u8",
        Type::S16 => "s16",
        Type::U16 => "u16",
        Type::S32 => "s32",
        Type::U32 => "u32",
        Type::S64 => "s64",
        Type::U64 => "u64",
        Type::Float32 => "f32",
        Type::Float64 => "f64",
        Type::Char => "char",
        Type::String => "string",
        Type::ErrorContext => "error-context",
        Type::Own(_) => "own<resource>",
        Type::Borrow(_) => "borrow<resource>",
        _ => "",
    };
    out.push_str(simple);
    match ty {
        Type::List(list) => generic(out, "list", &[list.ty()]),
        Type::FixedLengthList(list) => {
            out.push_str("list<");
            write_type(out, &list.ty());
            let _ = write!(out, ", {}>", list.len());
        }
        Type::Map(map) => generic(out, "map", &[map.key(), map.value()]),
        Type::Option(option) => generic(out, "option", &[option.ty()]),
        Type::Tuple(tuple) => generic(out, "tuple", &tuple.types().collect::<Vec<_>>()),
        Type::Result(result) => match (result.ok(), result.err()) {
            (None, None) => out.push_str("result"),
            (Some(ok), None) => generic(out, "result", &[ok]),
            (ok, Some(err)) => {
                out.push_str("result<");
                match ok {
                    Some(ok) => write_type(out, &ok),
                    None => out.push('_'),
                }
                out.push_str(", ");
                write_type(out, &err);
                out.push('>');
            }
        },
        Type::Future(future) => {
            generic(out, "future", &future.ty().into_iter().collect::<Vec<_>>())
        }
        Type::Stream(stream) => {
            generic(out, "stream", &stream.ty().into_iter().collect::<Vec<_>>())
        }
        Type::Record(record) => {
            let fields = record.fields().map(|f| (f.name, Some(f.ty)));
            body(out, "record", fields, ": ", "")
        }
        Type::Variant(variant) => {
            let cases = variant.cases().map(|c| (c.name, c.ty));
            body(out, "variant", cases, "(", ")")
        }
        Type::Enum(enum_) => body(out, "enum", enum_.names().map(|n| (n, None)), "", ""),
        Type::Flags(flags) => body(out, "flags", flags.names().map(|n| (n, None)), "", ""),
        _ => {}
    }
}

/// Writes `name<a, b>`, or just `name` without type arguments.
fn generic(out: &mut String, name: &str, args: &[Type]) {
    out.push_str(name);
    if !args.is_empty() {
        out.push('<');
        for (i, arg) in args.iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            write_type(out, arg);
        }
        out.push('>');
    }
}

/// Writes `kind { a, b<open>ty<close> }`.
fn body<'a>(
    out: &mut String,
    kind: &str,
    items: impl Iterator<Item = (&'a str, Option<Type>)>,
    open: &str,
    close: &str,
) {
    let _ = write!(out, "{kind} {{");
    for (i, (name, ty)) in items.enumerate() {
        out.push_str(if i == 0 { " " } else { ", " });
        out.push_str(name);
        if let Some(ty) = ty {
            out.push_str(open);
            write_type(out, &ty);
            out.push_str(close);
        }
    }
    out.push_str(" }");
}

/// Renders a function type as WIT text, e.g. `func(name: string, count: u32) -> result<string,
/// string>`; `func()` when it takes and returns nothing, `async func(..)` for async functions.
pub fn render_func(func: &ComponentFunc) -> String {
    let mut out = String::new();
    if func.async_() {
        out.push_str("async ");
    }
    out.push_str("func");
    out.push_str(&render_params(func));
    let results: Vec<Type> = func.results().collect();
    match results.as_slice() {
        [] => {}
        [one] => {
            out.push_str(" -> ");
            write_type(&mut out, one);
        }
        many => {
            out.push_str(" -> (");
            for (i, ty) in many.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_type(&mut out, ty);
            }
            out.push(')');
        }
    }
    out
}

/// `(name: string, count: u32)`
fn render_params(func: &ComponentFunc) -> String {
    let params: Vec<String> = func
        .params()
        .map(|(name, ty)| format!("{name}: {}", render_type(&ty)))
        .collect();
    format!("({})", params.join(", "))
}

/// One exported function of a component, i.e. one task.
#[derive(Debug, Clone)]
pub struct TaskExport {
    /// The task's name within its deployment: `greet` for a root export, `<iface>.<func>` for a
    /// function of an exported interface, where `<iface>` is the interface's short name (the
    /// part after the last `/` and before `@`), or its full export name when two exported
    /// interfaces share that short name.
    pub name: String,
    /// Full export name of the interface holding the function, e.g.
    /// `example:orders/pricing@0.1.0`; `None` for a root export.
    pub instance: Option<String>,
    /// The function's name within its interface (or the root).
    pub func: String,
    /// The function's type.
    pub ty: ComponentFunc,
    /// The function's type rendered by [`render_func`].
    pub signature: String,
}

impl TaskExport {
    /// Looks up the export index of this function in `component` (the one it was listed
    /// from). Pass it to `Instance::get_func` on each fresh instance; the lookup by index does
    /// no string comparisons, so do this once per compiled component.
    pub fn export_index(&self, component: &Component) -> Option<ComponentExportIndex> {
        let parent = match &self.instance {
            Some(instance) => Some(component.get_export_index(None, instance.as_str())?),
            None => None,
        };
        component.get_export_index(parent.as_ref(), self.func.as_str())
    }
}

/// Lists the tasks of `component`: its root function exports and the functions of its exported
/// interfaces, in export order (other exports, such as types, are skipped).
///
/// Fails when any such function has a resource handle (`own`/`borrow`, at any depth), a
/// `future`, a `stream` or an `error-context` in a parameter or result, naming the task and
/// the parameter or result: these cannot cross a task boundary.
pub fn task_exports(engine: &Engine, component: &Component) -> anyhow::Result<Vec<TaskExport>> {
    let component_ty = component.component_type();
    let mut found: Vec<(Option<String>, String, ComponentFunc)> = Vec::new();
    for (export, item) in component_ty.exports(engine) {
        match item.ty {
            ComponentItem::ComponentFunc(ty) => found.push((None, export.to_string(), ty)),
            ComponentItem::ComponentInstance(instance) => {
                for (func, item) in instance.exports(engine) {
                    if let ComponentItem::ComponentFunc(ty) = item.ty {
                        found.push((Some(export.to_string()), func.to_string(), ty));
                    }
                }
            }
            _ => {}
        }
    }

    // Exports a toolchain adds for itself are not tasks.
    found.retain(|(instance, func, _)| !is_internal_export(instance.as_deref(), func));
    let instances: Vec<String> = found.iter().filter_map(|(i, _, _)| i.clone()).collect();
    let mut tasks = Vec::with_capacity(found.len());
    for (instance, func, ty) in found {
        let name = match &instance {
            None => func.clone(),
            Some(full) => {
                let short = short_name(full);
                let shared = instances
                    .iter()
                    .any(|other| other != full && short_name(other) == short);
                format!("{}.{func}", if shared { full } else { short })
            }
        };
        check_boundary(&name, &ty)?;
        let signature = render_func(&ty);
        tasks.push(TaskExport {
            name,
            instance,
            func,
            ty,
            signature,
        });
    }
    Ok(tasks)
}

/// Exported interfaces that guest toolchains add for their own use, never tasks: `tasks` and
/// deploy do not list their functions and `run` refuses them as unknown tasks.
/// componentize-py exports `exports` with `init` (its interpreter initialisation); an
/// incoming-HTTP handler (`wasi:http/incoming-handler`, which ComponentizeJS adds unless told
/// not to) is how a component serves HTTP, not a task.
pub const INTERNAL_EXPORTS: &[(&str, &str)] = &[
    ("exports", "init"),
    ("wasi:http/incoming-handler", "handle"),
];

/// True for a function of an [`INTERNAL_EXPORTS`] interface (any version of it).
pub fn is_internal_export(instance: Option<&str>, func: &str) -> bool {
    let Some(instance) = instance else {
        return false;
    };
    let unversioned = instance.split('@').next().unwrap_or(instance);
    INTERNAL_EXPORTS
        .iter()
        .any(|(name, f)| *name == unversioned && *f == func)
}

/// `example:orders/pricing@0.1.0` -> `pricing`.
fn short_name(export: &str) -> &str {
    let tail = export.rsplit('/').next().unwrap_or(export);
    tail.split('@').next().unwrap_or(tail)
}

fn check_boundary(task: &str, ty: &ComponentFunc) -> anyhow::Result<()> {
    let params = ty
        .params()
        .map(|(name, ty)| (format!("parameter `{name}`"), ty));
    let results = ty.results().map(|ty| ("the result".to_string(), ty));
    for (what, ty) in params.chain(results) {
        if let Some(handle) = find_handle(&ty) {
            anyhow::bail!(
                "task `{task}` cannot be deployed: {what} has type `{}`, which contains `{}`; {} \
                 (task parameters and results must be plain data)",
                render_type(&ty),
                render_type(&handle),
                boundary_note(&handle),
            );
        }
    }
    Ok(())
}

/// The first resource handle, future, stream or error-context inside `ty`, if any.
fn find_handle(ty: &Type) -> Option<Type> {
    let first = |types: Vec<Type>| types.iter().find_map(find_handle);
    match ty {
        Type::Own(_) | Type::Borrow(_) | Type::Future(_) | Type::Stream(_) | Type::ErrorContext => {
            Some(ty.clone())
        }
        Type::List(list) => find_handle(&list.ty()),
        Type::FixedLengthList(list) => find_handle(&list.ty()),
        Type::Option(option) => find_handle(&option.ty()),
        Type::Map(map) => first(vec![map.key(), map.value()]),
        Type::Tuple(tuple) => first(tuple.types().collect()),
        Type::Record(record) => first(record.fields().map(|f| f.ty).collect()),
        Type::Variant(variant) => first(variant.cases().filter_map(|c| c.ty).collect()),
        Type::Result(result) => first(result.ok().into_iter().chain(result.err()).collect()),
        _ => None,
    }
}

/// The names in `candidates` closest to `name`, best first, at most 3: names equal to `name`
/// ignoring case come first, then the others within a Levenshtein distance (ignoring case) of
/// a third of `name`'s length (at least 2), nearest first, ties by name.
pub fn suggest(name: &str, candidates: &[String]) -> Vec<String> {
    let lower = name.to_lowercase();
    let limit = (lower.chars().count() / 3).max(2);
    let mut ranked: Vec<(usize, &String)> = candidates
        .iter()
        .map(|c| (strsim::levenshtein(&lower, &c.to_lowercase()), c))
        .filter(|(distance, _)| *distance <= limit)
        .collect();
    ranked.sort();
    ranked.dedup_by(|a, b| a.1 == b.1);
    ranked.into_iter().take(3).map(|(_, c)| c.clone()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_length_is_measured_without_converting() {
        let values = [
            Val::Bool(true),
            Val::U64(u64::MAX),
            Val::S64(-5),
            Val::Char('é'),
            Val::String("tab\t \"quoted\" \u{1} \\ ünïcode".into()),
            Val::List(vec![Val::U8(0), Val::U8(255), Val::U8(7)]),
            Val::List(vec![]),
            Val::Record(vec![
                ("a-b".into(), Val::Option(None)),
                ("c".into(), Val::Option(Some(Box::new(Val::Option(None))))),
            ]),
            Val::Variant("named".into(), Some(Box::new(Val::String("x".into())))),
            Val::Enum("low".into()),
            Val::Result(Ok(None)),
            Val::Result(Err(Some(Box::new(Val::Tuple(vec![
                Val::U32(1),
                Val::String("e".into()),
            ]))))),
            Val::Flags(vec!["read".into(), "exec".into()]),
            Val::Map(vec![(Val::String("k".into()), Val::U16(9))]),
        ];
        for value in &values {
            let text = val_to_json(value).to_string();
            assert_eq!(val_json_len(value), text.len() as u64, "{value:?}: {text}");
        }
    }

    /// Named types and one imported function per type kind: `<kind>: func(v: T) -> T`.
    const TYPES: &str = r#"
      (component
        (type $item' (record (field "sku" string) (field "quantity" u32) (field "note" (option string))))
        (import "item" (type $item (eq $item')))
        (type $order' (record (field "id" u64) (field "items" (list $item)) (field "rush-order" bool)))
        (import "order" (type $order (eq $order')))
        (type $level' (enum "low" "high"))
        (import "level" (type $level (eq $level')))
        (type $shape' (variant (case "none") (case "circle" f64) (case "named" string)))
        (import "shape" (type $shape (eq $shape')))
        (type $perms' (flags "read" "write" "exec"))
        (import "perms" (type $perms (eq $perms')))
        (type $wrap' (record (field "wrap" (option u32)) (field "other" (option u32))))
        (import "wrap" (type $wrap (eq $wrap')))
        (type $res-ss (result string (error string)))
        (type $res-unit (result))
        (type $res-err (result (error string)))
        (type $res-ok (result u32))
        (import "bool" (func (param "v" bool) (result bool)))
        (import "s8" (func (param "v" s8) (result s8)))
        (import "u8" (func (param "v" u8) (result u8)))
        (import "s16" (func (param "v" s16) (result s16)))
        (import "u16" (func (param "v" u16) (result u16)))
        (import "s32" (func (param "v" s32) (result s32)))
        (import "u32" (func (param "v" u32) (result u32)))
        (import "s64" (func (param "v" s64) (result s64)))
        (import "u64" (func (param "v" u64) (result u64)))
        (import "f32" (func (param "v" f32) (result f32)))
        (import "f64" (func (param "v" f64) (result f64)))
        (import "char" (func (param "v" char) (result char)))
        (import "string" (func (param "v" string) (result string)))
        (import "list-u32" (func (param "v" (list u32)) (result (list u32))))
        (import "list-u8" (func (param "v" (list u8)) (result (list u8))))
        (import "list-opt" (func (param "v" (list (option u32))) (result (list (option u32)))))
        (import "opt" (func (param "v" (option u32)) (result (option u32))))
        (import "opt-opt" (func (param "v" (option (option u32)))))
        (import "opt-opt-opt" (func (param "v" (option (option (option u32))))))
        (import "tuple" (func (param "v" (tuple u32 string))))
        (import "res-ss" (func (param "v" $res-ss) (result $res-ss)))
        (import "res-unit" (func (param "v" $res-unit)))
        (import "res-err" (func (param "v" $res-err)))
        (import "res-ok" (func (param "v" $res-ok)))
        (import "record" (func (param "v" $order) (result $order)))
        (import "enum" (func (param "v" $level) (result $level)))
        (import "variant" (func (param "v" $shape) (result $shape)))
        (import "flags" (func (param "v" $perms) (result $perms)))
        (import "none" (func))
        (import "greet" (func (param "name" string) (result string)))
        (import "place" (func (param "order" $order)))
        (import "wrapped" (func (param "wrap" $wrap)))
        (import "search" (func (param "query" string) (param "limit" (option u32))))
        (import "limit" (func (param "limit" (option u32))))
        (import "sig" (func (param "name" string) (param "count" u32) (result $res-ss)))
      )
    "#;

    fn engine() -> Engine {
        Engine::default()
    }

    fn funcs() -> Vec<(String, ComponentFunc)> {
        let engine = engine();
        let component = Component::new(&engine, TYPES).expect("valid test component");
        let ty = component.component_type();
        ty.imports(&engine)
            .filter_map(|(name, item)| match item.ty {
                ComponentItem::ComponentFunc(f) => Some((name.to_string(), f)),
                _ => None,
            })
            .collect()
    }

    fn func(name: &str) -> ComponentFunc {
        let found = funcs().into_iter().find(|(n, _)| n == name);
        found.unwrap_or_else(|| panic!("no import {name}")).1
    }

    /// The type of the first parameter of the imported function `name`.
    fn ty(name: &str) -> Type {
        func(name).params().next().expect("a parameter").1
    }

    fn round_trip(kind: &str, input: Value) -> Value {
        let val =
            json_to_val(&input, &ty(kind)).unwrap_or_else(|e| panic!("{kind} from {input}: {e}"));
        val_to_json(&val)
    }

    fn err(kind: &str, input: Value) -> String {
        match json_to_val(&input, &ty(kind)) {
            Ok(val) => panic!("{kind} from {input} gave {val:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn round_trips_every_kind() {
        let same = [
            ("bool", json!(true)),
            ("s8", json!(-128)),
            ("u8", json!(255)),
            ("s16", json!(-32768)),
            ("u16", json!(65535)),
            ("s32", json!(-5)),
            ("u32", json!(4294967295u32)),
            ("s64", json!(-9007199254740992i64)),
            ("s64", json!("-9223372036854775808")),
            ("u64", json!(9007199254740992u64)),
            ("u64", json!("9007199254740993")),
            ("u64", json!("18446744073709551615")),
            ("f32", json!(0.1)),
            ("f32", json!("NaN")),
            ("f64", json!(1.5)),
            ("f64", json!("NaN")),
            ("f64", json!("inf")),
            ("f64", json!("-inf")),
            ("f64", json!(-0.0)),
            ("char", json!("é")),
            ("string", json!("héllo \"world\"")),
            ("list-u32", json!([1, 2, 3])),
            ("list-u32", json!([])),
            ("list-u8", json!([0, 255])),
            ("list-opt", json!([1, null, 3])),
            ("opt", json!(null)),
            ("opt", json!(7)),
            ("opt-opt", json!(null)),
            ("opt-opt", json!({"some": null})),
            ("opt-opt", json!({"some": 5})),
            ("opt-opt-opt", json!({"some": {"some": null}})),
            ("opt-opt-opt", json!({"some": {"some": 5}})),
            ("tuple", json!([1, "a"])),
            ("res-ss", json!({"ok": "fine"})),
            ("res-ss", json!({"err": "bad"})),
            ("res-unit", json!({"ok": null})),
            ("res-unit", json!({"err": null})),
            ("res-err", json!({"ok": null})),
            ("res-err", json!({"err": "bad"})),
            ("res-ok", json!({"ok": 1})),
            ("res-ok", json!({"err": null})),
            ("enum", json!("high")),
            ("variant", json!("none")),
            ("variant", json!({"circle": 2.5})),
            ("variant", json!({"named": "x"})),
            ("flags", json!([])),
            ("flags", json!(["read", "exec"])),
            (
                "record",
                json!({"id": 1, "rush-order": false, "items": [
                    {"sku": "a", "quantity": 2, "note": null},
                    {"sku": "b", "quantity": 0, "note": "gift"},
                ]}),
            ),
        ];
        for (kind, input) in same {
            assert_eq!(round_trip(kind, input.clone()), input, "{kind}");
        }

        let normalized = [
            (
                "u64",
                json!(18446744073709551615u64),
                json!("18446744073709551615"),
            ),
            ("u64", json!("12"), json!(12)),
            ("u32", json!(3.0), json!(3)),
            ("u32", json!(1e3), json!(1000)),
            ("f64", json!(2), json!(2.0)),
            ("list-u8", json!("AQID"), json!([1, 2, 3])),
            ("list-u8", json!("AQI"), json!([1, 2])),
            ("list-u8", json!(""), json!([])),
            ("variant", json!({"none": null}), json!("none")),
            (
                "flags",
                json!(["exec", "read", "exec"]),
                json!(["exec", "read"]),
            ),
            (
                "record",
                json!({"id": 1, "rush-order": true, "items": [{"sku": "a", "quantity": 2}]}),
                json!({"id": 1, "rush-order": true, "items": [{"sku": "a", "quantity": 2, "note": null}]}),
            ),
        ];
        for (kind, input, output) in normalized {
            assert_eq!(round_trip(kind, input), output, "{kind}");
        }
    }

    #[test]
    fn builds_the_right_vals() {
        let val = |kind: &str, input: Value| json_to_val(&input, &ty(kind)).unwrap();
        assert_eq!(
            val("u64", json!("18446744073709551615")),
            Val::U64(u64::MAX)
        );
        assert_eq!(val("u64", json!(u64::MAX)), Val::U64(u64::MAX));
        assert_eq!(val("s64", json!(i64::MIN)), Val::S64(i64::MIN));
        assert_eq!(
            val("s64", json!("-9223372036854775808")),
            Val::S64(i64::MIN)
        );
        assert_eq!(val("f32", json!(0.1)), Val::Float32(0.1));
        assert_eq!(val("f32", json!("-inf")), Val::Float32(f32::NEG_INFINITY));
        assert!(matches!(val("f64", json!("NaN")), Val::Float64(f) if f.is_nan()));
        assert_eq!(
            val("list-u8", json!("AQID")),
            Val::List(vec![Val::U8(1), Val::U8(2), Val::U8(3)])
        );
        let some = |v: Val| Val::Option(Some(Box::new(v)));
        assert_eq!(val("opt-opt", json!(null)), Val::Option(None));
        assert_eq!(
            val("opt-opt", json!({"some": null})),
            some(Val::Option(None))
        );
        assert_eq!(val("opt-opt", json!({"some": 5})), some(some(Val::U32(5))));
        assert_eq!(
            val("res-unit", json!({"err": null})),
            Val::Result(Err(None))
        );
        assert_eq!(
            val("variant", json!({"circle": 1})),
            Val::Variant("circle".into(), Some(Box::new(Val::Float64(1.0))))
        );
        assert_eq!(
            val("variant", json!("none")),
            Val::Variant("none".into(), None)
        );
        assert_eq!(
            val("flags", json!(["write"])),
            Val::Flags(vec!["write".into()])
        );
        assert_eq!(
            val_to_json(&Val::S64(i64::MIN)),
            json!("-9223372036854775808")
        );
        assert_eq!(val_to_json(&Val::U64(1 << 53)), json!(9007199254740992u64));
        assert_eq!(
            val_to_json(&Val::U64((1 << 53) + 1)),
            json!("9007199254740993")
        );
        assert_eq!(val_to_json(&Val::Float32(f32::INFINITY)), json!("inf"));
        assert_eq!(
            val_to_json(&Val::Map(vec![(Val::String("a".into()), Val::U32(1))])),
            json!({"a": 1})
        );
        assert_eq!(
            val_to_json(&Val::Map(vec![(Val::U32(7), Val::Bool(true))])),
            json!([[7, true]])
        );
    }

    #[test]
    fn errors_name_the_path_and_the_expected_type() {
        let item = "record { sku: string, quantity: u32, note: option<string> }";
        let order = |items: Value| json!({"id": 1, "rush-order": false, "items": items});
        let ok_item = json!({"sku": "a", "quantity": 1});
        let cases = [
            (
                "record",
                order(json!([ok_item, ok_item, {"sku": "c", "quantity": -1}])),
                "input at $.items[2].quantity: expected u32, found -1 (out of range)".to_string(),
            ),
            (
                "record",
                order(json!([{"sku": 5, "quantity": 1}])),
                "input at $.items[0].sku: expected string, found 5".to_string(),
            ),
            (
                "record",
                order(json!([ok_item, {"sku": "b", "qty": 1}])),
                format!(
                    "input at $.items[1]: expected {item}, found unknown field \"qty\" \
                     (fields: sku, quantity, note)"
                ),
            ),
            (
                "record",
                order(json!([{"sku": "b"}])),
                "input at $.items[0].quantity: expected u32, found nothing (missing field)".into(),
            ),
            (
                "record",
                json!({"id": 1, "items": []}),
                "input at $.rush-order: expected bool, found nothing (missing field)".into(),
            ),
            (
                "record",
                order(json!({"sku": "a"})),
                format!(
                    "input at $.items: expected list<{item}>, found an object with keys \"sku\""
                ),
            ),
            (
                "list-u32",
                json!([1, "x"]),
                "input at $[1]: expected u32, found a string \"x\"".into(),
            ),
            (
                "list-opt",
                json!([null, 1.5]),
                "input at $[1]: expected u32, found 1.5 (not an integer)".into(),
            ),
            (
                "u8",
                json!(256),
                "input at $: expected u8, found 256 (out of range)".into(),
            ),
            (
                "u32",
                json!("5"),
                "input at $: expected u32, found a string \"5\"".into(),
            ),
            (
                "s64",
                json!("9223372036854775808"),
                "input at $: expected s64, found a string \"9223372036854775808\" (out of range)"
                    .into(),
            ),
            (
                "u64",
                json!("12abc"),
                "input at $: expected u64, found a string \"12abc\" (not a decimal integer)".into(),
            ),
            (
                "u64",
                json!(-1),
                "input at $: expected u64, found -1 (out of range)".into(),
            ),
            (
                "f32",
                json!(1e300),
                "input at $: expected f32, found 1e+300 (out of range)".into(),
            ),
            (
                "f64",
                json!("Infinity"),
                "input at $: expected f64, found a string \"Infinity\"".into(),
            ),
            (
                "char",
                json!("ab"),
                "input at $: expected char, found a string \"ab\" (not exactly one character)"
                    .into(),
            ),
            (
                "list-u8",
                json!("!!"),
                "input at $: expected list<u8>, found a string \"!!\" (not valid base64: \
                 Invalid symbol 33, offset 0.)"
                    .into(),
            ),
            (
                "enum",
                json!("mid"),
                "input at $: expected enum { low, high }, found unknown case \"mid\" \
                 (cases: low, high)"
                    .into(),
            ),
            (
                "variant",
                json!({"square": 1}),
                "input at $: expected variant { none, circle(f64), named(string) }, found \
                 unknown case \"square\" (cases: none, circle, named)"
                    .into(),
            ),
            (
                "variant",
                json!("circle"),
                "input at $: expected variant { none, circle(f64), named(string) }, found a \
                 string \"circle\" (case circle needs a payload: {\"circle\": f64})"
                    .into(),
            ),
            (
                "variant",
                json!({"none": 1}),
                "input at $.none: expected null (this case has no payload), found 1".into(),
            ),
            (
                "variant",
                json!({"circle": "big"}),
                "input at $.circle: expected f64, found a string \"big\"".into(),
            ),
            (
                "variant",
                json!({"circle": 1, "none": null}),
                "input at $: expected variant { none, circle(f64), named(string) }, found an \
                 object with keys \"circle\", \"none\" (a variant is {\"case\": payload}, or \
                 \"case\" without payload)"
                    .into(),
            ),
            (
                "flags",
                json!(["read", "delete"]),
                "input at $[1]: expected flags { read, write, exec }, found unknown flag \
                 \"delete\" (flags: read, write, exec)"
                    .into(),
            ),
            (
                "tuple",
                json!([1, "a", 2]),
                "input at $: expected tuple<u32, string>, found an array of 3 elements \
                 (needs exactly 2)"
                    .into(),
            ),
            (
                "tuple",
                json!([1]),
                "input at $: expected tuple<u32, string>, found an array of 1 element \
                 (needs exactly 2)"
                    .into(),
            ),
            (
                "tuple",
                json!([1, 2]),
                "input at $[1]: expected string, found 2".into(),
            ),
            (
                "res-ss",
                json!({"ok": 1}),
                "input at $.ok: expected string, found 1".into(),
            ),
            (
                "res-ss",
                json!({"value": "x"}),
                "input at $: expected result<string, string>, found an object with keys \
                 \"value\" (a result is {\"ok\": ..} or {\"err\": ..})"
                    .into(),
            ),
            (
                "res-err",
                json!({"ok": 1}),
                "input at $.ok: expected null (no payload), found 1".into(),
            ),
            (
                "opt-opt",
                json!(5),
                "input at $: expected option<option<u32>>, found 5 (a nested option's some(x) \
                 is written {\"some\": x})"
                    .into(),
            ),
            (
                "opt-opt",
                json!({"some": "x"}),
                "input at $.some: expected u32, found a string \"x\"".into(),
            ),
        ];
        for (kind, input, expected) in cases {
            assert_eq!(err(kind, input), expected);
        }

        let e = json_to_val(&json!(["a"]), &ty("flags")).unwrap_err();
        assert_eq!(e.path, "$[0]");
        assert_eq!(e.expected, "flags { read, write, exec }");
    }

    #[test]
    fn paths_quote_odd_keys() {
        let root = Path::Root;
        let key = Path::Key(&root, "a b");
        let index = Path::Index(&key, 3);
        assert_eq!(
            Path::Key(&index, "x-y_1").to_string(),
            "$[\"a b\"][3].x-y_1"
        );
    }

    #[test]
    fn params_from_json_rules() {
        let params = |name: &str, input: Value| params_from_json(&func(name), &input);
        let error = |name: &str, input: Value| params(name, input).unwrap_err().to_string();

        // Zero parameters.
        assert_eq!(params("none", json!(null)).unwrap(), vec![]);
        assert_eq!(params("none", json!({})).unwrap(), vec![]);
        assert_eq!(
            error("none", json!({"x": 1})),
            "input at $: expected no input (null or {}), found unknown parameter \"x\" \
             (the task takes none)"
        );
        assert_eq!(
            error("none", json!(5)),
            "input at $: expected no input (null or {}), found 5"
        );

        // One parameter: keyed or bare.
        let ada = vec![Val::String("Ada".into())];
        assert_eq!(params("greet", json!({"name": "Ada"})).unwrap(), ada);
        assert_eq!(params("greet", json!("Ada")).unwrap(), ada);
        assert_eq!(
            error("greet", json!({"name": 5})),
            "input at $.name: expected string, found 5"
        );
        assert_eq!(
            error("greet", json!({"nmae": "Ada"})),
            "input at $: expected an object of parameters (name: string), found unknown \
             parameter \"nmae\" (parameters: name; did you mean \"name\"?)"
        );
        assert_eq!(
            error("greet", json!({"name": "Ada", "extra": 1})),
            "input at $: expected an object of parameters (name: string), found unknown \
             parameter \"extra\" (parameters: name)"
        );
        assert_eq!(
            error("greet", json!(5)),
            "input at $: expected string, found 5"
        );

        // A record parameter is reported with bare paths unless keyed.
        assert_eq!(
            error(
                "place",
                json!({"id": 1, "items": [{"sku": 1}], "rush-order": true})
            ),
            "input at $.items[0].sku: expected string, found 1"
        );
        assert_eq!(
            error(
                "place",
                json!({"order": {"id": 1, "items": [{"sku": "a", "quantity": -1}], "rush-order": true}})
            ),
            "input at $.order.items[0].quantity: expected u32, found -1 (out of range)"
        );

        // A parameter `wrap` whose record type has a field `wrap`: keyed wins when valid.
        let wrap = |w: Option<u32>, o: Option<u32>| {
            let opt = |v: Option<u32>| Val::Option(v.map(|v| Box::new(Val::U32(v))));
            vec![Val::Record(vec![
                ("wrap".into(), opt(w)),
                ("other".into(), opt(o)),
            ])]
        };
        assert_eq!(
            params("wrapped", json!({"wrap": 5})).unwrap(),
            wrap(Some(5), None)
        );
        assert_eq!(
            params("wrapped", json!({"wrap": {"wrap": 5}})).unwrap(),
            wrap(Some(5), None)
        );
        assert_eq!(
            params("wrapped", json!({"wrap": {}})).unwrap(),
            wrap(None, None)
        );
        assert_eq!(
            params("wrapped", json!({"wrap": 1, "other": 2})).unwrap(),
            wrap(Some(1), Some(2))
        );

        // A single option parameter: absent in the keyed form means none.
        assert_eq!(params("limit", json!({})).unwrap(), vec![Val::Option(None)]);
        assert_eq!(
            params("limit", json!(null)).unwrap(),
            vec![Val::Option(None)]
        );
        assert_eq!(
            params("limit", json!(3)).unwrap(),
            vec![Val::Option(Some(Box::new(Val::U32(3))))]
        );

        // Several parameters: an object keyed by name, option parameters may be left out.
        let query = Val::String("q".into());
        assert_eq!(
            params("search", json!({"query": "q", "limit": 10})).unwrap(),
            vec![query.clone(), Val::Option(Some(Box::new(Val::U32(10))))]
        );
        assert_eq!(
            params("search", json!({"query": "q"})).unwrap(),
            vec![query, Val::Option(None)]
        );
        assert_eq!(
            error("search", json!({"limit": 1})),
            "input at $.query: expected string, found nothing (missing parameter)"
        );
        assert_eq!(
            error("search", json!(["q", 1])),
            "input at $: expected an object of parameters (query: string, limit: option<u32>), \
             found an array of 2 elements"
        );
        assert_eq!(
            error("search", json!({"query": "q", "limt": 1})),
            "input at $: expected an object of parameters (query: string, limit: option<u32>), \
             found unknown parameter \"limt\" (parameters: query, limit; did you mean \"limit\"?)"
        );
    }

    #[test]
    fn results_to_json_shapes() {
        assert_eq!(results_to_json(&[]), json!(null));
        assert_eq!(results_to_json(&[Val::U32(1)]), json!(1));
        assert_eq!(
            results_to_json(&[Val::U32(1), Val::String("a".into())]),
            json!([1, "a"])
        );
        assert_eq!(results_buffer(&func("none")).len(), 0);
        assert_eq!(results_buffer(&func("greet")).len(), 1);
    }

    #[test]
    fn renders_wit() {
        assert_eq!(
            render_func(&func("sig")),
            "func(name: string, count: u32) -> result<string, string>"
        );
        assert_eq!(render_func(&func("none")), "func()");
        assert_eq!(
            render_func(&func("search")),
            "func(query: string, limit: option<u32>)"
        );
        let rendered = [
            ("list-opt", "list<option<u32>>"),
            ("opt-opt", "option<option<u32>>"),
            ("tuple", "tuple<u32, string>"),
            ("res-unit", "result"),
            ("res-err", "result<_, string>"),
            ("res-ok", "result<u32>"),
            ("f32", "f32"),
            ("enum", "enum { low, high }"),
            ("variant", "variant { none, circle(f64), named(string) }"),
            ("flags", "flags { read, write, exec }"),
            (
                "record",
                "record { id: u64, items: list<record { sku: string, quantity: u32, \
                 note: option<string> }>, rush-order: bool }",
            ),
        ];
        for (kind, wit) in rendered {
            assert_eq!(render_type(&ty(kind)), wit);
        }
    }

    const TASKS: &str = r#"
      (component
        (core module $m
          (func (export "id") (param i32) (result i32) local.get 0)
          (func (export "nop")))
        (core instance $i (instantiate $m))
        (func $id (param "x" u32) (result u32) (canon lift (core func $i "id")))
        (func $nop (canon lift (core func $i "nop")))
        (export "greet" (func $nop))
        (instance $pricing (export "quote" (func $id)))
        (export "example:orders/pricing@0.1.0" (instance $pricing))
        (instance $billing (export "charge" (func $id)) (export "refund" (func $id)))
        (export "example:orders/billing" (instance $billing))
      )
    "#;

    #[test]
    fn task_exports_names_root_and_interface_functions() {
        let engine = engine();
        let component = Component::new(&engine, TASKS).unwrap();
        let tasks = task_exports(&engine, &component).unwrap();
        let summary: Vec<_> = tasks
            .iter()
            .map(|t| {
                (
                    t.name.as_str(),
                    t.instance.as_deref(),
                    t.func.as_str(),
                    t.signature.as_str(),
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                ("greet", None, "greet", "func()"),
                (
                    "pricing.quote",
                    Some("example:orders/pricing@0.1.0"),
                    "quote",
                    "func(x: u32) -> u32"
                ),
                (
                    "billing.charge",
                    Some("example:orders/billing"),
                    "charge",
                    "func(x: u32) -> u32"
                ),
                (
                    "billing.refund",
                    Some("example:orders/billing"),
                    "refund",
                    "func(x: u32) -> u32"
                ),
            ]
        );

        // The export index finds the function in a fresh instance; JSON in, JSON out.
        let quote = &tasks[1];
        let index = quote.export_index(&component).unwrap();
        let mut store = wasmtime::Store::new(&engine, ());
        let linker = wasmtime::component::Linker::new(&engine);
        let instance = linker.instantiate(&mut store, &component).unwrap();
        let f = instance.get_func(&mut store, index).unwrap();
        let params = params_from_json(&quote.ty, &json!({"x": 42})).unwrap();
        let mut results = results_buffer(&quote.ty);
        f.call(&mut store, &params, &mut results).unwrap();
        assert_eq!(results_to_json(&results), json!(42));
    }

    #[test]
    fn task_exports_disambiguates_shared_short_names() {
        let wat = r#"
          (component
            (core module $m (func (export "nop")))
            (core instance $i (instantiate $m))
            (func $nop (canon lift (core func $i "nop")))
            (instance $a (export "quote" (func $nop)))
            (instance $b (export "quote" (func $nop)))
            (instance $c (export "list" (func $nop)))
            (export "a:shop/pricing@1.0.0" (instance $a))
            (export "b:shop/pricing" (instance $b))
            (export "a:shop/catalog" (instance $c))
          )
        "#;
        let engine = engine();
        let component = Component::new(&engine, wat).unwrap();
        let names: Vec<String> = task_exports(&engine, &component)
            .unwrap()
            .into_iter()
            .map(|t| t.name)
            .collect();
        assert_eq!(
            names,
            [
                "a:shop/pricing@1.0.0.quote",
                "b:shop/pricing.quote",
                "catalog.list"
            ]
        );
    }

    #[test]
    fn task_exports_skip_toolchain_internals() {
        // componentize-py's `exports.init` and an incoming-HTTP handler are not tasks.
        let wat = r#"
          (component
            (core module $m (func (export "nop")))
            (core instance $i (instantiate $m))
            (func $nop (canon lift (core func $i "nop")))
            (instance $init (export "init" (func $nop)))
            (instance $other (export "other" (func $nop)) (export "init" (func $nop)))
            (export "exports" (instance $init))
            (export "app:x/other" (instance $other))
            (export "run" (func $nop))
          )
        "#;
        let engine = engine();
        let component = Component::new(&engine, wat).unwrap();
        let names: Vec<String> = task_exports(&engine, &component)
            .unwrap()
            .into_iter()
            .map(|t| t.name)
            .collect();
        assert_eq!(names, ["other.other", "other.init", "run"]);
        assert!(is_internal_export(Some("exports"), "init"));
        assert!(is_internal_export(
            Some("wasi:http/incoming-handler@0.2.3"),
            "handle"
        ));
        assert!(!is_internal_export(None, "init"));
    }

    #[test]
    fn task_exports_rejects_resources() {
        let wat = r#"
          (component
            (core module $m (func (export "f") (param i32 i32)))
            (core instance $i (instantiate $m))
            (type $r (resource (rep i32)))
            (export $r' "r" (type $r))
            (func $f (param "items" (option (own $r'))) (canon lift (core func $i "f")))
            (export "consume" (func $f))
          )
        "#;
        let engine = engine();
        let component = Component::new(&engine, wat).unwrap();
        let error = task_exports(&engine, &component).unwrap_err().to_string();
        assert_eq!(
            error,
            "task `consume` cannot be deployed: parameter `items` has type \
             `option<own<resource>>`, which contains `own<resource>`; resources cannot cross a \
             task boundary (task parameters and results must be plain data)"
        );

        let ComponentItem::ComponentFunc(consume) = component
            .component_type()
            .get_export(&engine, "consume")
            .unwrap()
            .ty
        else {
            panic!("consume is a function")
        };
        let items = consume.params().next().unwrap().1;
        assert_eq!(
            json_to_val(&json!(null), &items).unwrap(),
            Val::Option(None)
        );
        assert_eq!(
            json_to_val(&json!(1), &items).unwrap_err().to_string(),
            "input at $: expected own<resource>, found 1 (resources cannot cross a task boundary)"
        );
    }

    #[test]
    fn suggests_close_names() {
        let names: Vec<String> = [
            "demo/greet",
            "demo/great",
            "demo/pricing.quote",
            "other/greet",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(suggest("Demo/GREET", &names), ["demo/greet", "demo/great"]);
        assert_eq!(suggest("demo/greett", &names), ["demo/greet", "demo/great"]);
        assert_eq!(
            suggest("demo/pricing.qoute", &names),
            ["demo/pricing.quote"]
        );
        assert!(suggest("nothing-like-it", &names).is_empty());
    }
}
