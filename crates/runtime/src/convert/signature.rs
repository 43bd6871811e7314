//! WIT rendering of types and function signatures, and the task catalogue of a component: its
//! exported functions, checked to have no handles in their signatures.

use std::fmt::Write as _;

use wasmtime::component::types::{ComponentFunc, ComponentItem, Type};
use wasmtime::component::{Component, ComponentExportIndex};
use wasmtime::Engine;

use super::value::boundary_note;

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
pub(super) fn render_params(func: &ComponentFunc) -> String {
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
