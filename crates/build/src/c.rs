//! C task projects -> components, with wit-bindgen's C generator, clang and wasi-libc.
//!
//! A project is its `.c` files (in the project directory and under `src/`) plus `wit/world.wit`.
//! The build generates the world's bindings with `wit-bindgen c --rename-world task`, so every
//! project sees the same names whatever its world is called: `task.h`, the types `task_string_t`,
//! `task_list_u8_t`, ..., and one function `exports_task_<export>` to implement per export. The
//! SDK (`guest-sdk/c`: `hypergraph.h` and `hypergraph.c`) wraps the host interfaces; it is compiled
//! in with `HG_WORKFLOW` defined when the world imports `hypergraph:workflow`. Everything is
//! compiled by clang-14 for `wasm32-wasi` as a reactor and linked by `wasm-component-ld` (LLVM's
//! `wasm-ld`, then the WASI preview-1 reactor adapter), which makes the component.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::assets::C_SDK;
use crate::project::{self, write_file, Project};
use crate::{BuildOptions, Language};

/// The wit-bindgen-cli release `scripts/toolchains.sh` installs (the generator of the Rust SDK's
/// wit-bindgen 0.48.1, producing what wasm-component-ld 0.5.31 links).
pub const WIT_BINDGEN_VERSION: &str = "0.48.1";

/// The name every C project's world is generated under.
const WORLD_ALIAS: &str = "task";
/// LLVM's WebAssembly linker, which wasm-component-ld drives (apt package lld-19).
const WASM_LD: &str = "/usr/lib/llvm-19/bin/wasm-ld";

/// True when `dir` or its `src/` holds `.c` files.
pub(super) fn has_sources(dir: &Path) -> bool {
    !sources(dir).is_empty()
}

/// The `.c` files of the project, sorted: those in `dir` and, recursively, under `dir/src`.
fn sources(dir: &Path) -> Vec<PathBuf> {
    fn walk(dir: &Path, recurse: bool, out: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                if recurse {
                    walk(&path, true, out);
                }
            } else if path.extension().is_some_and(|e| e == "c") {
                out.push(path);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, false, &mut out);
    walk(&dir.join("src"), true, &mut out);
    out.sort();
    out
}

pub(super) fn build(dir: &Path, opts: &BuildOptions) -> Result<PathBuf> {
    let project = Project::open(dir, Language::C, opts)?;
    let sources = sources(&project.dir);
    if sources.is_empty() {
        bail!(
            "{} has no .c files (in it or under src/)",
            project.dir.display()
        );
    }
    let mut extra: Vec<&[u8]> = C_SDK.iter().map(|(_, t)| t.as_bytes()).collect();
    extra.push(WIT_BINDGEN_VERSION.as_bytes());
    extra.push(if opts.release { b"release" } else { b"debug" });
    let digest = project.inputs_digest(Language::C, &extra)?;
    if project.up_to_date(&digest) {
        return Ok(project.output());
    }
    let cargo_bin = project::toolchain(Language::C)?;
    let wit = project.stage_wit()?;
    let generated = project.stage("c-bindings")?;
    let mut bindgen = Command::new(tool(&cargo_bin, "wit-bindgen"));
    bindgen
        .arg("c")
        .arg(&wit)
        .args(["--world", &project.world])
        .args(["--rename-world", WORLD_ALIAS])
        // The vendored wasi:cli@0.2.12 world imports the feature-gated wasi:clocks/timezone.
        .args(["--features", "clocks-timezone"])
        .arg("--out-dir")
        .arg(&generated);
    project::run(bindgen, "wit-bindgen c")?;
    let sdk = project.stage("c-sdk")?;
    for (path, text) in C_SDK {
        write_file(&sdk.join(path), text.as_bytes())?;
    }
    let header = std::fs::read_to_string(generated.join(format!("{WORLD_ALIAS}.h")))
        .context("wit-bindgen generated no header")?;
    let workflow = header.contains("hypergraph_workflow_workflow_start");

    let built = project.partial_output();
    let mut cc = Command::new(clang());
    cc.current_dir(&project.dir)
        .args([
            "--target=wasm32-wasi",
            "--sysroot=/usr",
            "-mexec-model=reactor",
        ])
        .args(if opts.release {
            &["-O2"][..]
        } else {
            &["-O0", "-g"][..]
        })
        .args(["-Wall", "-Wno-unused-function"])
        .arg("-I")
        .arg(&generated)
        .arg("-I")
        .arg(&sdk)
        .arg("-I")
        .arg(&project.dir);
    if workflow {
        cc.arg("-DHG_WORKFLOW=1");
    }
    cc.args(&sources)
        .arg(generated.join(format!("{WORLD_ALIAS}.c")))
        .arg(generated.join(format!("{WORLD_ALIAS}_component_type.o")))
        .arg(sdk.join("hypergraph.c"))
        .arg(format!(
            "-fuse-ld={}",
            tool(&cargo_bin, "wasm-component-ld").display()
        ))
        .arg(format!("-Wl,--wasm-ld-path={WASM_LD}"))
        .arg("-o")
        .arg(&built);
    project::run(cc, "clang (compiling and linking the C task)")?;
    project.finish(&built, &digest)
}

/// `name` from `cargo_bin` (where the toolchain script installs it), else from `PATH`.
fn tool(cargo_bin: &Path, name: &str) -> PathBuf {
    let installed = cargo_bin.join(name);
    if installed.is_file() {
        installed
    } else {
        PathBuf::from(name)
    }
}

/// clang-14 (apt package clang-14), else a `clang` on `PATH`.
fn clang() -> PathBuf {
    let pinned = Path::new("/usr/bin/clang-14");
    if pinned.is_file() {
        pinned.to_path_buf()
    } else {
        PathBuf::from("clang")
    }
}
