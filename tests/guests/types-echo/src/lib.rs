//! Test guest: echoes one value of every WIT type kind, for the host's JSON <-> WIT tests.
//!
//! `count` increments a global and returns it, so a test can check that every invocation runs in a
//! fresh instance (it must return 1 every time).

use std::sync::atomic::{AtomicU32, Ordering};

hypergraph_guest::wit_bindgen::generate!({
    world: "hypergraph-tests:types-echo/types-echo",
    path: ["../../../wit", "wit"],
    features: ["clocks-timezone"],
    with: {
        "hypergraph:task/log@0.1.0": hypergraph_guest::bindings::log,
        "hypergraph:task/context@0.1.0": hypergraph_guest::bindings::context,
        "hypergraph:task/kv@0.1.0": hypergraph_guest::bindings::kv,
    },
    generate_all,
    runtime_path: "hypergraph_guest::wit_bindgen::rt",
});

static CALLS: AtomicU32 = AtomicU32::new(0);

struct Echo;

impl Guest for Echo {
    fn echo_bool(v: bool) -> bool {
        v
    }
    fn echo_s8(v: i8) -> i8 {
        v
    }
    fn echo_u8(v: u8) -> u8 {
        v
    }
    fn echo_s16(v: i16) -> i16 {
        v
    }
    fn echo_u16(v: u16) -> u16 {
        v
    }
    fn echo_s32(v: i32) -> i32 {
        v
    }
    fn echo_u32(v: u32) -> u32 {
        v
    }
    fn echo_s64(v: i64) -> i64 {
        v
    }
    fn echo_u64(v: u64) -> u64 {
        v
    }
    fn echo_f32(v: f32) -> f32 {
        v
    }
    fn echo_f64(v: f64) -> f64 {
        v
    }
    fn echo_char(v: char) -> char {
        v
    }
    fn echo_string(v: String) -> String {
        v
    }
    fn echo_list_u32(v: Vec<u32>) -> Vec<u32> {
        v
    }
    fn echo_list_u8(v: Vec<u8>) -> Vec<u8> {
        v
    }
    fn echo_record(v: Point) -> Point {
        v
    }
    fn echo_tuple(v: (u32, String, bool)) -> (u32, String, bool) {
        v
    }
    fn echo_variant(v: Shape) -> Shape {
        v
    }
    fn echo_enum(v: Color) -> Color {
        v
    }
    fn echo_option(v: Option<String>) -> Option<String> {
        v
    }
    fn echo_result(v: Result<String, String>) -> Result<String, String> {
        v
    }
    fn echo_flags(v: Permissions) -> Permissions {
        v
    }
    fn echo_nested(
        order: Order,
        shapes: Vec<Shape>,
        maybe_flags: Option<Permissions>,
        outcome: Result<Option<u32>, Shape>,
        pairs: Vec<(String, Color)>,
        bytes: Vec<u8>,
    ) -> Nested {
        Nested {
            order,
            shapes,
            maybe_flags,
            outcome,
            pairs,
            bytes,
        }
    }
    fn count() -> u32 {
        CALLS.fetch_add(1, Ordering::SeqCst) + 1
    }
}

export!(Echo);
