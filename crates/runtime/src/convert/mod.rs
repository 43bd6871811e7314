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
//!
//! The parts: [`value`](self) conversions (`value.rs`), WIT rendering and the task catalogue
//! (`signature.rs`), and name suggestions (`naming.rs`).

mod naming;
mod signature;
mod value;

pub use naming::suggest;
pub use signature::{
    is_internal_export, render_func, render_type, task_exports, TaskExport, INTERNAL_EXPORTS,
};
pub use value::{
    json_to_val, params_from_json, results_buffer, results_to_json, val_json_len, val_to_json,
    ConvertError,
};

#[cfg(test)]
mod tests;
