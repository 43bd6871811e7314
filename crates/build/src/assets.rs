//! Files the builders need, compiled into the binary so that an installed `hypergraph` builds
//! guests anywhere: the host's WIT packages (supplied to every task project's world), the guest
//! SDKs for Python, JavaScript, C and Go, the Go runtime overlay, and the toolchain installer
//! script.

/// The WIT packages the host provides, as `(path under wit/deps/, text)`: `hypergraph:task` and
/// `hypergraph:workflow` together, and the vendored WASI 0.2 packages they include.
pub(crate) const HOST_WIT: &[(&str, &str)] = &[
    ("hypergraph/task.wit", include_str!("../../../wit/task.wit")),
    (
        "hypergraph/workflow.wit",
        include_str!("../../../wit/workflow.wit"),
    ),
    ("cli/cli.wit", include_str!("../../../wit/deps/cli/cli.wit")),
    (
        "clocks/clocks.wit",
        include_str!("../../../wit/deps/clocks/clocks.wit"),
    ),
    (
        "filesystem/filesystem.wit",
        include_str!("../../../wit/deps/filesystem/filesystem.wit"),
    ),
    (
        "http/http.wit",
        include_str!("../../../wit/deps/http/http.wit"),
    ),
    ("io/io.wit", include_str!("../../../wit/deps/io/io.wit")),
    (
        "random/random.wit",
        include_str!("../../../wit/deps/random/random.wit"),
    ),
    (
        "sockets/sockets.wit",
        include_str!("../../../wit/deps/sockets/sockets.wit"),
    ),
];

/// The Python SDK (`guest-sdk/python`), as `(path under the package directory, text)`.
pub(crate) const PYTHON_SDK: &[(&str, &str)] = &[
    (
        "__init__.py",
        include_str!("../../../guest-sdk/python/hypergraph_guest/__init__.py"),
    ),
    (
        "_bindings.py",
        include_str!("../../../guest-sdk/python/hypergraph_guest/_bindings.py"),
    ),
    (
        "_json.py",
        include_str!("../../../guest-sdk/python/hypergraph_guest/_json.py"),
    ),
    (
        "context.py",
        include_str!("../../../guest-sdk/python/hypergraph_guest/context.py"),
    ),
    (
        "http.py",
        include_str!("../../../guest-sdk/python/hypergraph_guest/http.py"),
    ),
    (
        "kv.py",
        include_str!("../../../guest-sdk/python/hypergraph_guest/kv.py"),
    ),
    (
        "log.py",
        include_str!("../../../guest-sdk/python/hypergraph_guest/log.py"),
    ),
    (
        "workflow.py",
        include_str!("../../../guest-sdk/python/hypergraph_guest/workflow.py"),
    ),
];

/// The JavaScript SDK (`guest-sdk/js`): the ES modules behind `hypergraph-guest`,
/// `hypergraph-guest/http` and `hypergraph-guest/workflow`.
pub(crate) const JS_SDK: &[(&str, &str)] = &[
    ("index.js", include_str!("../../../guest-sdk/js/index.js")),
    ("json.js", include_str!("../../../guest-sdk/js/json.js")),
    ("http.js", include_str!("../../../guest-sdk/js/http.js")),
    (
        "workflow.js",
        include_str!("../../../guest-sdk/js/workflow.js"),
    ),
];

/// The C SDK (`guest-sdk/c`): a header and its helpers over the wit-bindgen bindings.
pub(crate) const C_SDK: &[(&str, &str)] = &[
    (
        "hypergraph.h",
        include_str!("../../../guest-sdk/c/hypergraph.h"),
    ),
    (
        "hypergraph.c",
        include_str!("../../../guest-sdk/c/hypergraph.c"),
    ),
];

/// The Go SDK (`guest-sdk/go`): the module `hypergraph.local/guest`, as `(path, text)`.
pub(super) const GO_SDK: &[(&str, &str)] = &[
    ("go.mod", include_str!("../../../guest-sdk/go/go.mod")),
    ("abi.go", include_str!("../../../guest-sdk/go/abi.go")),
    ("task.go", include_str!("../../../guest-sdk/go/task.go")),
    ("http.go", include_str!("../../../guest-sdk/go/http.go")),
    (
        "memory_wasm.s",
        include_str!("../../../guest-sdk/go/memory_wasm.s"),
    ),
    (
        "workflow/workflow.go",
        include_str!("../../../guest-sdk/go/workflow/workflow.go"),
    ),
];

/// Go's runtime files `hypergraph build` replaces (`go build -overlay`), as `(file name under
/// $GOROOT/src/runtime, text)`: see [`super::go`].
pub(super) const GO_RUNTIME_OVERLAY: &[(&str, &str)] = &[
    ("mem_wasm.go", include_str!("go_runtime/mem_wasm.go")),
    ("mem_sbrk.go", include_str!("go_runtime/mem_sbrk.go")),
];

/// `scripts/toolchains.sh`: installs a language's pinned toolchain, or does nothing when it is
/// there, and prints where it is.
pub(crate) const TOOLCHAINS_SCRIPT: &str = include_str!("../../../scripts/toolchains.sh");
