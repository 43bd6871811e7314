use serde_json::{json, Value};
use wasmtime::component::types::{ComponentFunc, ComponentItem, Type};
use wasmtime::component::{Component, Val};
use wasmtime::Engine;

use super::value::Path;
use super::*;

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
    let val = json_to_val(&input, &ty(kind)).unwrap_or_else(|e| panic!("{kind} from {input}: {e}"));
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
            format!("input at $.items: expected list<{item}>, found an object with keys \"sku\""),
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
            "input at $: expected char, found a string \"ab\" (not exactly one character)".into(),
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
