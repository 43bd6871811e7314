//! Builds a Rust guest crate into a Hypergraph task component (`hypergraph build <dir>` on a
//! directory holding a `Cargo.toml`).
//!
//! # Contract
//!
//! [`build_rust`] takes the directory of a Rust crate whose `Cargo.toml` declares a `cdylib`
//! library (the usual shape of a task crate) or, failing that, a binary. It runs `cargo build` for
//! the `wasm32-wasip2` target and returns the path of the produced `.wasm` file, which is a
//! WebAssembly **component** (checked before returning), ready for `hypergraph deploy`.
//!
//! The toolchain is picked automatically (see [`detect_toolchain`]):
//!
//! 1. **rustup**: when `rustup target list --installed` (run in the crate directory, so a
//!    `rust-toolchain.toml` is honoured) lists `wasm32-wasip2`, plain
//!    `cargo build --target wasm32-wasip2` is used.
//! 2. **Debian**: otherwise, Debian's `rustc-web`/`cargo-web` 1.96 in `/usr/bin` rebuild `std` for
//!    the target (`-Zbuild-std`, enabled with `RUSTC_BOOTSTRAP=1`), linking with
//!    `wasm-component-ld` (from `PATH` or `$CARGO_HOME/bin`), LLVM 19's `wasm-ld` and Debian's
//!    `wasi-libc`. The first build in a target directory compiles `std` (1–3 minutes); later ones
//!    take seconds.
//!
//! If neither is usable, the build installs the Debian toolchain first, as the other languages
//! install theirs: the embedded `scripts/toolchains.sh rust` (apt packages and
//! `cargo install wasm-component-ld`; rustup's servers need not be reachable). If that fails too,
//! the error says what is missing and to run `scripts/setup.sh` (or
//! `rustup target add wasm32-wasip2`).
//!
//! The target directory is [`BuildOptions::target_dir`], else the environment variable
//! `HYPERGRAPH_GUEST_TARGET_DIR`, else cargo's own choice (`CARGO_TARGET_DIR`, the crate's
//! workspace, ...). Sharing one target directory between guests builds `std` only once.
//!
//! cargo's progress and diagnostics go to this process's stderr as they happen. The call blocks
//! until cargo exits: from async code, call it from `spawn_blocking`.

use std::ffi::{OsStr, OsString};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{anyhow, bail, Context, Result};

use crate::BuildOptions;

/// The Rust target every guest is built for. Its output is a component importing WASI 0.2.
pub const GUEST_TARGET: &str = "wasm32-wasip2";

/// Environment variable naming the default target directory of guest builds.
pub const TARGET_DIR_ENV: &str = "HYPERGRAPH_GUEST_TARGET_DIR";

/// The command that installs a guest toolchain on a machine without one.
pub const SETUP_COMMAND: &str = "scripts/setup.sh";

/// Debian's `rustc-web` toolchain (packages `rustc-web cargo-web rust-web-src
/// libstd-rust-web-dev`).
const DEBIAN_RUSTC: &str = "/usr/bin/rustc";
const DEBIAN_RUSTDOC: &str = "/usr/bin/rustdoc";
const DEBIAN_CARGO: &str = "/usr/bin/cargo";
/// The std sources `-Zbuild-std` compiles (package `rust-web-src`).
const DEBIAN_STD_SRC: &str = "/usr/lib/rustlib/src/rust/library/Cargo.lock";
/// The core-module linker `wasm-component-ld` drives (package `lld-19`).
const DEBIAN_WASM_LD: &str = "/usr/lib/llvm-19/bin/wasm-ld";
/// libc for `wasm32-wasi` (package `wasi-libc`); std links against it.
const DEBIAN_WASI_LIBC_DIR: &str = "/usr/lib/wasm32-wasi";
/// Oldest rustc that builds the guests (wit-bindgen 0.48 needs 1.82).
const MIN_RUSTC_MINOR: u32 = 82;

/// A toolchain able to build `wasm32-wasip2` components.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Toolchain {
    /// rustup's toolchain with the `wasm32-wasip2` target installed; `cargo` from `PATH`.
    Rustup,
    /// Debian's rustc/cargo, rebuilding std for the target.
    Debian {
        /// Path of the `wasm-component-ld` linker.
        component_ld: PathBuf,
    },
}

impl std::fmt::Display for Toolchain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Toolchain::Rustup => write!(f, "rustup ({GUEST_TARGET} target)"),
            Toolchain::Debian { component_ld } => write!(
                f,
                "Debian rustc ({DEBIAN_RUSTC}, -Zbuild-std, linker {})",
                component_ld.display()
            ),
        }
    }
}

/// Builds the Rust guest crate in `crate_dir` into a component and returns the path of the
/// `.wasm` file.
///
/// Errors, each saying what to do: `crate_dir` missing or not a directory, no `Cargo.toml`, a
/// manifest without a `cdylib` or binary target, no usable toolchain, `cargo` failing (with its
/// exit status; the compiler's messages were already streamed to stderr), or an output that is
/// not a component.
pub fn build_rust(crate_dir: &Path, opts: &BuildOptions) -> Result<PathBuf> {
    let crate_dir = check_crate_dir(crate_dir)?;
    let toolchain = match detect_toolchain(&crate_dir) {
        Ok(toolchain) => toolchain,
        Err(missing) => {
            eprintln!(
                "hypergraph: no toolchain builds {GUEST_TARGET} components yet; installing \
                 Debian's (scripts/toolchains.sh rust)"
            );
            super::project::toolchain(super::Language::Rust)
                .map_err(|e| anyhow!("{missing:#}\n\n{e:#}"))?;
            detect_toolchain(&crate_dir)?
        }
    };
    let target_dir = resolve_target_dir(
        opts.target_dir.as_deref(),
        std::env::var_os(TARGET_DIR_ENV).as_deref(),
    )
    .map(|dir| std::path::absolute(&dir).unwrap_or(dir));

    let metadata = run_metadata(&toolchain, &crate_dir)?;
    let guest = parse_metadata(&metadata, &crate_dir.join("Cargo.toml"))?;
    let target_dir = match target_dir {
        Some(dir) => dir,
        None => metadata_target_dir(&metadata)?,
    };

    let inv = cargo_build_invocation(
        &toolchain,
        opts.release,
        &opts.features,
        &target_dir,
        &guest.selector,
        std::env::var_os("RUSTFLAGS").as_deref(),
        std::env::var_os("CARGO_ENCODED_RUSTFLAGS").as_deref(),
    );
    let mut cmd = inv.command(&crate_dir);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let mut child = cmd
        .spawn()
        .with_context(|| format!("cannot start `{}` (toolchain: {toolchain})", inv.program))?;

    // stdout carries cargo's JSON messages (diagnostics are rendered to stderr); they name the
    // files each target produced.
    let mut reported = Vec::new();
    let stdout = child.stdout.take().expect("stdout is piped");
    for line in BufReader::new(stdout).lines() {
        let line = line.context("reading cargo's output")?;
        match artifact_files(&line, &guest.package_id, guest.selector.kind()) {
            Some(files) => reported.extend(files),
            None if line.starts_with('{') => {}
            // Not a cargo message (a build script or wrapper printing to stdout): pass it on.
            None => {
                let _ = writeln!(std::io::stderr(), "{line}");
            }
        }
    }
    let status = child.wait().context("waiting for cargo")?;
    if !status.success() {
        bail!(
            "building guest crate `{}` in {} failed: cargo exited with {status} \
             (the compiler's messages are above)",
            guest.package_name,
            crate_dir.display()
        );
    }

    let expected = artifact_path(&target_dir, opts.release, &guest.artifact_file);
    let wasm = reported
        .into_iter()
        .find(|p| p.extension() == Some(OsStr::new("wasm")))
        .unwrap_or(expected);
    let bytes = std::fs::read(&wasm).with_context(|| {
        format!(
            "cargo succeeded but the component {} cannot be read",
            wasm.display()
        )
    })?;
    match wasm_kind(&bytes) {
        WasmKind::Component => Ok(wasm),
        WasmKind::CoreModule => bail!(
            "{} is a core WebAssembly module, not a component: the linker was not \
             wasm-component-ld (toolchain: {toolchain})",
            wasm.display()
        ),
        WasmKind::NotWasm => bail!("{} is not a WebAssembly file", wasm.display()),
    }
}

/// Picks the toolchain for building a guest in `crate_dir`: rustup's if it has the
/// `wasm32-wasip2` target, else Debian's if all its pieces are installed. The error lists what is
/// missing and names [`SETUP_COMMAND`].
pub fn detect_toolchain(crate_dir: &Path) -> Result<Toolchain> {
    let rustup_targets = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .current_dir(crate_dir)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map(|out| String::from_utf8_lossy(&out.stdout).into_owned());
    let home_bin = cargo_home().map(|home| home.join("bin"));
    let component_ld = find_executable(
        "wasm-component-ld",
        std::env::var_os("PATH").as_deref(),
        home_bin.as_deref(),
        |p| p.is_file(),
    );
    let debian = probe_debian(component_ld, |p| p.exists(), debian_rustc_minor);
    select_toolchain(rustup_targets.as_deref(), debian)
}

/// What `build_rust` needs to know about the guest crate.
#[derive(Debug, Clone, PartialEq, Eq)]
struct GuestCrate {
    package_name: String,
    package_id: String,
    selector: TargetSelector,
    /// File name of the artifact in `<target>/wasm32-wasip2/<profile>/`.
    artifact_file: String,
}

/// Which target of the package is built.
#[derive(Debug, Clone, PartialEq, Eq)]
enum TargetSelector {
    /// The `cdylib` library (`--lib`).
    Lib,
    /// The named binary (`--bin <name>`).
    Bin(String),
}

impl TargetSelector {
    fn kind(&self) -> &'static str {
        match self {
            TargetSelector::Lib => "cdylib",
            TargetSelector::Bin(_) => "bin",
        }
    }
}

/// A program, its arguments and environment: what [`build_rust`] runs, kept as data so that it
/// can be checked without running it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Invocation {
    program: String,
    args: Vec<OsString>,
    env: Vec<(String, OsString)>,
    env_remove: Vec<String>,
}

impl Invocation {
    fn command(&self, dir: &Path) -> Command {
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.args).current_dir(dir);
        for key in &self.env_remove {
            cmd.env_remove(key);
        }
        for (key, value) in &self.env {
            cmd.env(key, value);
        }
        cmd
    }
}

/// Checks that `dir` is a directory holding a `Cargo.toml`; returns it made absolute.
fn check_crate_dir(dir: &Path) -> Result<PathBuf> {
    if !dir.exists() {
        bail!("guest crate directory {} does not exist", dir.display());
    }
    if !dir.is_dir() {
        bail!(
            "{} is not a directory: pass the directory of a Rust guest crate (the one holding \
             its Cargo.toml)",
            dir.display()
        );
    }
    if !dir.join("Cargo.toml").is_file() {
        bail!(
            "{} has no Cargo.toml: a guest crate is a Rust crate with `crate-type = [\"cdylib\"]` \
             (see guest-sdk/README.md)",
            dir.display()
        );
    }
    std::fs::canonicalize(dir).with_context(|| format!("resolving {}", dir.display()))
}

pub(super) fn cargo_home() -> Option<PathBuf> {
    std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| Path::new(&home).join(".cargo")))
}

/// Finds `name` in the directories of `path_var`, then in `fallback_dir`.
fn find_executable(
    name: &str,
    path_var: Option<&OsStr>,
    fallback_dir: Option<&Path>,
    is_file: impl Fn(&Path) -> bool,
) -> Option<PathBuf> {
    let from_path = path_var
        .map(|p| std::env::split_paths(p).collect::<Vec<_>>())
        .unwrap_or_default();
    from_path
        .into_iter()
        .chain(fallback_dir.map(Path::to_path_buf))
        .map(|dir| dir.join(name))
        .find(|candidate| is_file(candidate))
}

/// The minor version of `/usr/bin/rustc` (`rustc 1.96.0 ...` gives 96), if it runs.
fn debian_rustc_minor() -> Option<u32> {
    let out = Command::new(DEBIAN_RUSTC)
        .arg("--version")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    parse_rustc_minor(&String::from_utf8_lossy(&out.stdout))
}

fn parse_rustc_minor(version: &str) -> Option<u32> {
    let number = version.split_whitespace().nth(1)?;
    let mut parts = number.split('.');
    if parts.next()? != "1" {
        return None;
    }
    parts.next()?.parse().ok()
}

/// Checks the pieces of the Debian toolchain; `Err` lists the missing ones.
fn probe_debian(
    component_ld: Option<PathBuf>,
    exists: impl Fn(&Path) -> bool,
    rustc_minor: impl FnOnce() -> Option<u32>,
) -> std::result::Result<Toolchain, Vec<String>> {
    let mut missing = Vec::new();
    let files = [
        (DEBIAN_CARGO, "cargo-web"),
        (DEBIAN_RUSTDOC, "rustc-web"),
        (DEBIAN_STD_SRC, "rust-web-src"),
        (DEBIAN_WASM_LD, "lld-19"),
    ];
    if exists(Path::new(DEBIAN_RUSTC)) {
        match rustc_minor() {
            Some(minor) if minor >= MIN_RUSTC_MINOR => {}
            Some(minor) => missing.push(format!(
                "{DEBIAN_RUSTC} is 1.{minor}, older than 1.{MIN_RUSTC_MINOR} (apt package rustc-web)"
            )),
            None => missing.push(format!("a working {DEBIAN_RUSTC} (apt package rustc-web)")),
        }
    } else {
        missing.push(format!("{DEBIAN_RUSTC} (apt package rustc-web)"));
    }
    for (file, package) in files {
        if !exists(Path::new(file)) {
            missing.push(format!("{file} (apt package {package})"));
        }
    }
    if !exists(&Path::new(DEBIAN_WASI_LIBC_DIR).join("libc.a")) {
        missing.push(format!(
            "{DEBIAN_WASI_LIBC_DIR}/libc.a (apt package wasi-libc)"
        ));
    }
    match component_ld {
        Some(component_ld) if missing.is_empty() => Ok(Toolchain::Debian { component_ld }),
        Some(_) => Err(missing),
        None => {
            missing.push(
                "wasm-component-ld on PATH or in $CARGO_HOME/bin \
                 (cargo install wasm-component-ld --version 0.5.31 --locked)"
                    .to_string(),
            );
            Err(missing)
        }
    }
}

/// The toolchain choice: rustup's when `rustup_targets` (the output of
/// `rustup target list --installed`, if it ran) lists `wasm32-wasip2`, else Debian's.
fn select_toolchain(
    rustup_targets: Option<&str>,
    debian: std::result::Result<Toolchain, Vec<String>>,
) -> Result<Toolchain> {
    if rustup_targets.is_some_and(|out| out.lines().any(|l| l.trim() == GUEST_TARGET)) {
        return Ok(Toolchain::Rustup);
    }
    debian.map_err(|missing| {
        let rustup = match rustup_targets {
            Some(_) => format!("rustup has no {GUEST_TARGET} target"),
            None => "rustup is not installed".to_string(),
        };
        anyhow!(
            "no toolchain can build {GUEST_TARGET} components: {rustup}, and the Debian \
             toolchain is missing:\n  - {}\nRun `{SETUP_COMMAND}` from the Hypergraph repository \
             (or `rustup target add {GUEST_TARGET}`), then build again.",
            missing.join("\n  - ")
        )
    })
}

/// `opts.target_dir`, else `$HYPERGRAPH_GUEST_TARGET_DIR` if set and non-empty, else `None`
/// (cargo's default).
pub(super) fn resolve_target_dir(option: Option<&Path>, env: Option<&OsStr>) -> Option<PathBuf> {
    option
        .map(Path::to_path_buf)
        .or_else(|| env.filter(|v| !v.is_empty()).map(PathBuf::from))
}

/// Where cargo puts the artifact: `<target_dir>/wasm32-wasip2/<release|debug>/<file>`.
fn artifact_path(target_dir: &Path, release: bool, file: &str) -> PathBuf {
    let profile_dir = if release { "release" } else { "debug" };
    target_dir.join(GUEST_TARGET).join(profile_dir).join(file)
}

fn cargo_program(toolchain: &Toolchain) -> &'static str {
    match toolchain {
        Toolchain::Rustup => "cargo",
        Toolchain::Debian { .. } => DEBIAN_CARGO,
    }
}

/// Environment of every cargo call on the Debian path: cargo must use Debian's rustc (rustup's on
/// `PATH` cannot compile Debian's std sources) and may use nightly flags.
fn debian_env() -> Vec<(String, OsString)> {
    vec![
        ("RUSTC".into(), DEBIAN_RUSTC.into()),
        ("RUSTDOC".into(), DEBIAN_RUSTDOC.into()),
        ("RUSTC_BOOTSTRAP".into(), "1".into()),
    ]
}

fn run_metadata(toolchain: &Toolchain, crate_dir: &Path) -> Result<serde_json::Value> {
    let mut cmd = Command::new(cargo_program(toolchain));
    cmd.args(["metadata", "--no-deps", "--format-version", "1"])
        .arg("--manifest-path")
        .arg(crate_dir.join("Cargo.toml"))
        .current_dir(crate_dir)
        .stdin(Stdio::null());
    if matches!(toolchain, Toolchain::Debian { .. }) {
        cmd.envs(debian_env());
    }
    let out = cmd
        .output()
        .with_context(|| format!("cannot run `{} metadata`", cargo_program(toolchain)))?;
    if !out.status.success() {
        bail!(
            "cannot read {}/Cargo.toml: `cargo metadata` exited with {}:\n{}",
            crate_dir.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    serde_json::from_slice(&out.stdout).context("parsing the output of `cargo metadata`")
}

fn metadata_target_dir(metadata: &serde_json::Value) -> Result<PathBuf> {
    metadata["target_directory"]
        .as_str()
        .map(PathBuf::from)
        .ok_or_else(|| anyhow!("`cargo metadata` reported no target_directory"))
}

/// Finds the package of `manifest` in `cargo metadata` output and the target to build: its
/// `cdylib` library if any, else its binary (the one named like the package if there are several).
fn parse_metadata(metadata: &serde_json::Value, manifest: &Path) -> Result<GuestCrate> {
    let packages = metadata["packages"]
        .as_array()
        .ok_or_else(|| anyhow!("`cargo metadata` output has no packages"))?;
    let package = packages
        .iter()
        .find(|p| p["manifest_path"].as_str().map(Path::new) == Some(manifest))
        .ok_or_else(|| {
            anyhow!(
                "{} declares no package (a virtual workspace manifest?): pass the directory of \
                 the guest crate itself",
                manifest.display()
            )
        })?;
    let package_name = package["name"].as_str().unwrap_or_default().to_string();
    let package_id = package["id"].as_str().unwrap_or_default().to_string();
    let targets = package["targets"].as_array().cloned().unwrap_or_default();
    let has_kind = |t: &serde_json::Value, kind: &str| {
        t["kind"]
            .as_array()
            .is_some_and(|kinds| kinds.iter().any(|k| k == kind))
    };
    let name_of = |t: &serde_json::Value| t["name"].as_str().unwrap_or_default().to_string();

    if let Some(lib) = targets.iter().find(|t| has_kind(t, "cdylib")) {
        return Ok(GuestCrate {
            artifact_file: format!("{}.wasm", name_of(lib).replace('-', "_")),
            package_name,
            package_id,
            selector: TargetSelector::Lib,
        });
    }
    let bins: Vec<String> = targets
        .iter()
        .filter(|t| has_kind(t, "bin"))
        .map(name_of)
        .collect();
    let bin = match bins.as_slice() {
        [] => bail!(
            "guest crate `{package_name}` ({}) has neither a cdylib library nor a binary: add \
             `[lib] crate-type = [\"cdylib\"]` to its Cargo.toml",
            manifest.display()
        ),
        [only] => only.clone(),
        several => several
            .iter()
            .find(|b| **b == package_name)
            .cloned()
            .ok_or_else(|| {
                anyhow!(
                    "guest crate `{package_name}` has several binaries ({}) and no cdylib: make \
                     the task a `cdylib` library",
                    several.join(", ")
                )
            })?,
    };
    Ok(GuestCrate {
        artifact_file: format!("{bin}.wasm"),
        package_name,
        package_id,
        selector: TargetSelector::Bin(bin),
    })
}

/// The `cargo build` command for `toolchain`.
///
/// On the Debian path the linker and the target's rustflags are given with `--config`. Cargo lets
/// `RUSTFLAGS`/`CARGO_ENCODED_RUSTFLAGS` replace configured rustflags entirely, so when either is
/// set the needed flags are appended to it instead.
fn cargo_build_invocation(
    toolchain: &Toolchain,
    release: bool,
    features: &[String],
    target_dir: &Path,
    selector: &TargetSelector,
    env_rustflags: Option<&OsStr>,
    env_encoded_rustflags: Option<&OsStr>,
) -> Invocation {
    let mut args: Vec<OsString> = vec![
        "build".into(),
        "--target".into(),
        GUEST_TARGET.into(),
        "--message-format=json-render-diagnostics".into(),
        "--target-dir".into(),
        target_dir.into(),
    ];
    if release {
        args.push("--release".into());
    }
    if !features.is_empty() {
        args.push("--features".into());
        args.push(features.join(",").into());
    }
    match selector {
        TargetSelector::Lib => args.push("--lib".into()),
        TargetSelector::Bin(name) => {
            args.push("--bin".into());
            args.push(name.into());
        }
    }
    let mut env = Vec::new();
    let mut env_remove = Vec::new();
    if let Toolchain::Debian { component_ld } = toolchain {
        env = debian_env();
        args.push("-Zbuild-std=std,panic_abort".into());
        args.push("--config".into());
        args.push(
            format!(
                "target.{GUEST_TARGET}.linker={}",
                toml_string(&component_ld.to_string_lossy())
            )
            .into(),
        );
        let flags = [
            "-L".to_string(),
            format!("native={DEBIAN_WASI_LIBC_DIR}"),
            "-C".to_string(),
            format!("link-arg=--wasm-ld-path={DEBIAN_WASM_LD}"),
        ];
        let encoded = env_encoded_rustflags.filter(|v| !v.is_empty());
        let plain = env_rustflags.filter(|v| !v.is_empty());
        if encoded.is_some() || plain.is_some() {
            let mut all: Vec<String> = match (encoded, plain) {
                (Some(e), _) => e
                    .to_string_lossy()
                    .split('\x1f')
                    .map(str::to_string)
                    .collect(),
                (None, Some(p)) => p
                    .to_string_lossy()
                    .split_whitespace()
                    .map(str::to_string)
                    .collect(),
                (None, None) => Vec::new(),
            };
            all.extend(flags);
            env_remove.push("RUSTFLAGS".to_string());
            env.push(("CARGO_ENCODED_RUSTFLAGS".into(), all.join("\x1f").into()));
        } else {
            let list: Vec<String> = flags.iter().map(|f| toml_string(f)).collect();
            args.push("--config".into());
            args.push(format!("target.{GUEST_TARGET}.rustflags=[{}]", list.join(",")).into());
        }
    }
    Invocation {
        program: cargo_program(toolchain).to_string(),
        args,
        env,
        env_remove,
    }
}

/// A TOML basic string holding `s`.
fn toml_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The files of a `compiler-artifact` message for target kind `kind` of package `package_id`;
/// `None` for any other line.
fn artifact_files(line: &str, package_id: &str, kind: &str) -> Option<Vec<PathBuf>> {
    let msg: serde_json::Value = serde_json::from_str(line).ok()?;
    if msg["reason"] != "compiler-artifact" || msg["package_id"] != package_id {
        return None;
    }
    let kinds = msg["target"]["kind"].as_array()?;
    if !kinds.iter().any(|k| k == kind) {
        return None;
    }
    Some(
        msg["filenames"]
            .as_array()?
            .iter()
            .filter_map(|f| f.as_str().map(PathBuf::from))
            .collect(),
    )
}

/// What a `.wasm` file holds, from its 8-byte header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum WasmKind {
    Component,
    CoreModule,
    NotWasm,
}

pub(super) fn wasm_kind(bytes: &[u8]) -> WasmKind {
    match bytes {
        [0, b'a', b's', b'm', 1, 0, 0, 0, ..] => WasmKind::CoreModule,
        // Component binaries: version 0x0d (pre-1.0 encoding) or later, layer 1.
        [0, b'a', b's', b'm', _, _, 1, 0, ..] => WasmKind::Component,
        _ => WasmKind::NotWasm,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn debian(ld: &str) -> Toolchain {
        Toolchain::Debian {
            component_ld: PathBuf::from(ld),
        }
    }

    #[test]
    fn default_options_build_release_in_cargo_default_dir() {
        let opts = BuildOptions::default();
        assert!(opts.release);
        assert_eq!(opts.target_dir, None);
    }

    #[test]
    fn rustup_with_wasip2_wins() {
        let targets = "wasm32-unknown-unknown\nwasm32-wasip2\nx86_64-unknown-linux-gnu\n";
        let chosen = select_toolchain(Some(targets), Ok(debian("/x/wasm-component-ld"))).unwrap();
        assert_eq!(chosen, Toolchain::Rustup);
        let chosen = select_toolchain(Some(targets), Err(vec!["everything".into()])).unwrap();
        assert_eq!(chosen, Toolchain::Rustup);
    }

    #[test]
    fn debian_when_rustup_lacks_the_target() {
        let targets = "wasm32-wasip1\nx86_64-unknown-linux-gnu\n";
        let chosen = select_toolchain(Some(targets), Ok(debian("/ld"))).unwrap();
        assert_eq!(chosen, debian("/ld"));
        assert_eq!(
            select_toolchain(None, Ok(debian("/ld"))).unwrap(),
            debian("/ld")
        );
    }

    #[test]
    fn no_toolchain_names_setup_script_and_missing_pieces() {
        let err = select_toolchain(
            Some("x86_64-unknown-linux-gnu\n"),
            Err(vec!["/usr/bin/rustc (apt package rustc-web)".into()]),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("scripts/setup.sh"), "{err}");
        assert!(err.contains("rustup has no wasm32-wasip2 target"), "{err}");
        assert!(err.contains("rustc-web"), "{err}");
        let err = select_toolchain(None, Err(vec!["x".into()]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("rustup is not installed"), "{err}");
    }

    #[test]
    fn probe_debian_reports_each_missing_piece() {
        let all = |_: &Path| true;
        let ld = Some(PathBuf::from("/root/.cargo/bin/wasm-component-ld"));
        assert_eq!(
            probe_debian(ld.clone(), all, || Some(96)),
            Ok(debian("/root/.cargo/bin/wasm-component-ld"))
        );

        let missing =
            probe_debian(None, |p: &Path| p != Path::new(DEBIAN_WASM_LD), || Some(96)).unwrap_err();
        assert_eq!(missing.len(), 2, "{missing:?}");
        assert!(missing[0].contains("lld-19"));
        assert!(missing[1].contains("cargo install wasm-component-ld"));

        let old = probe_debian(ld.clone(), all, || Some(63)).unwrap_err();
        assert!(old[0].contains("1.63"), "{old:?}");

        let nothing = probe_debian(None, |_: &Path| false, || unreachable!()).unwrap_err();
        assert_eq!(nothing.len(), 7, "{nothing:?}");
    }

    #[test]
    fn rustc_version_parsing() {
        assert_eq!(
            parse_rustc_minor("rustc 1.96.0 (ac68faa20 2026-05-25) (built from a source tarball)"),
            Some(96)
        );
        assert_eq!(parse_rustc_minor("rustc 1.63.0"), Some(63));
        assert_eq!(parse_rustc_minor("garbage"), None);
    }

    #[test]
    fn executable_search_prefers_path_then_fallback() {
        let path = std::env::join_paths(["/a", "/b"]).unwrap();
        let exists_in_b = |p: &Path| p == Path::new("/b/tool");
        assert_eq!(
            find_executable(
                "tool",
                Some(&path),
                Some(Path::new("/home/.cargo/bin")),
                exists_in_b
            ),
            Some(PathBuf::from("/b/tool"))
        );
        let in_fallback = |p: &Path| p == Path::new("/home/.cargo/bin/tool");
        assert_eq!(
            find_executable(
                "tool",
                Some(&path),
                Some(Path::new("/home/.cargo/bin")),
                in_fallback
            ),
            Some(PathBuf::from("/home/.cargo/bin/tool"))
        );
        assert_eq!(find_executable("tool", None, None, |_| true), None);
    }

    #[test]
    fn target_dir_precedence() {
        let opt = Path::new("/opt-dir");
        let env = OsStr::new("/env-dir");
        assert_eq!(
            resolve_target_dir(Some(opt), Some(env)),
            Some(PathBuf::from("/opt-dir"))
        );
        assert_eq!(
            resolve_target_dir(None, Some(env)),
            Some(PathBuf::from("/env-dir"))
        );
        assert_eq!(resolve_target_dir(None, Some(OsStr::new(""))), None);
        assert_eq!(resolve_target_dir(None, None), None);
    }

    #[test]
    fn artifact_paths() {
        assert_eq!(
            artifact_path(Path::new("/t"), true, "types_echo.wasm"),
            PathBuf::from("/t/wasm32-wasip2/release/types_echo.wasm")
        );
        assert_eq!(
            artifact_path(Path::new("/t"), false, "greet.wasm"),
            PathBuf::from("/t/wasm32-wasip2/debug/greet.wasm")
        );
    }

    fn metadata(targets: serde_json::Value) -> serde_json::Value {
        serde_json::json!({
            "packages": [{
                "name": "types-echo",
                "id": "path+file:///g/types-echo#0.1.0",
                "manifest_path": "/g/types-echo/Cargo.toml",
                "targets": targets,
            }],
            "target_directory": "/g/types-echo/target",
        })
    }

    #[test]
    fn cdylib_artifact_is_underscored_lib_name() {
        let md = metadata(serde_json::json!([
            {"kind": ["cdylib"], "name": "types-echo"},
            {"kind": ["bin"], "name": "helper"},
        ]));
        let guest = parse_metadata(&md, Path::new("/g/types-echo/Cargo.toml")).unwrap();
        assert_eq!(guest.selector, TargetSelector::Lib);
        assert_eq!(guest.artifact_file, "types_echo.wasm");
        assert_eq!(guest.package_id, "path+file:///g/types-echo#0.1.0");
        assert_eq!(
            metadata_target_dir(&md).unwrap(),
            PathBuf::from("/g/types-echo/target")
        );
    }

    #[test]
    fn bin_artifact_keeps_its_name() {
        let md = metadata(serde_json::json!([{"kind": ["bin"], "name": "my-task"}]));
        let guest = parse_metadata(&md, Path::new("/g/types-echo/Cargo.toml")).unwrap();
        assert_eq!(guest.selector, TargetSelector::Bin("my-task".into()));
        assert_eq!(guest.artifact_file, "my-task.wasm");

        let md = metadata(serde_json::json!([
            {"kind": ["bin"], "name": "a"},
            {"kind": ["bin"], "name": "types-echo"},
        ]));
        let guest = parse_metadata(&md, Path::new("/g/types-echo/Cargo.toml")).unwrap();
        assert_eq!(guest.selector, TargetSelector::Bin("types-echo".into()));

        let md = metadata(serde_json::json!([
            {"kind": ["bin"], "name": "a"},
            {"kind": ["bin"], "name": "b"},
        ]));
        let err = parse_metadata(&md, Path::new("/g/types-echo/Cargo.toml")).unwrap_err();
        assert!(err.to_string().contains("several binaries (a, b)"), "{err}");
    }

    #[test]
    fn rlib_only_crate_is_rejected() {
        let md = metadata(serde_json::json!([{"kind": ["lib"], "name": "types_echo"}]));
        let err = parse_metadata(&md, Path::new("/g/types-echo/Cargo.toml")).unwrap_err();
        assert!(
            err.to_string().contains("crate-type = [\"cdylib\"]"),
            "{err}"
        );
    }

    #[test]
    fn virtual_manifest_is_rejected() {
        let md = metadata(serde_json::json!([]));
        let err = parse_metadata(&md, Path::new("/elsewhere/Cargo.toml")).unwrap_err();
        assert!(err.to_string().contains("declares no package"), "{err}");
    }

    #[test]
    fn rustup_invocation_is_plain_cargo() {
        let inv = cargo_build_invocation(
            &Toolchain::Rustup,
            true,
            &[],
            Path::new("/t"),
            &TargetSelector::Lib,
            None,
            None,
        );
        assert_eq!(inv.program, "cargo");
        let args: Vec<_> = inv.args.iter().map(|a| a.to_str().unwrap()).collect();
        assert_eq!(
            args,
            [
                "build",
                "--target",
                "wasm32-wasip2",
                "--message-format=json-render-diagnostics",
                "--target-dir",
                "/t",
                "--release",
                "--lib"
            ]
        );
        assert!(inv.env.is_empty());
    }

    #[test]
    fn debian_invocation_follows_toolchain_md() {
        let inv = cargo_build_invocation(
            &debian("/root/.cargo/bin/wasm-component-ld"),
            false,
            &[],
            Path::new("/t"),
            &TargetSelector::Bin("x".into()),
            None,
            None,
        );
        assert_eq!(inv.program, "/usr/bin/cargo");
        let args: Vec<_> = inv.args.iter().map(|a| a.to_str().unwrap()).collect();
        assert!(!args.contains(&"--release"));
        assert!(args.windows(2).any(|w| w == ["--bin", "x"]));
        assert!(args.contains(&"-Zbuild-std=std,panic_abort"));
        assert!(
            args.contains(&"target.wasm32-wasip2.linker=\"/root/.cargo/bin/wasm-component-ld\"")
        );
        assert!(args.contains(
            &"target.wasm32-wasip2.rustflags=[\"-L\",\"native=/usr/lib/wasm32-wasi\",\"-C\",\
              \"link-arg=--wasm-ld-path=/usr/lib/llvm-19/bin/wasm-ld\"]"
        ));
        let env: Vec<_> = inv
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.to_str().unwrap()))
            .collect();
        assert_eq!(
            env,
            [
                ("RUSTC", "/usr/bin/rustc"),
                ("RUSTDOC", "/usr/bin/rustdoc"),
                ("RUSTC_BOOTSTRAP", "1")
            ]
        );
    }

    #[test]
    fn features_are_passed_to_cargo() {
        let inv = cargo_build_invocation(
            &Toolchain::Rustup,
            true,
            &["a".into(), "b".into()],
            Path::new("/t"),
            &TargetSelector::Lib,
            None,
            None,
        );
        let args: Vec<String> = inv
            .args
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert!(
            args.windows(2).any(|w| w == ["--features", "a,b"]),
            "{args:?}"
        );
    }

    #[test]
    fn debian_invocation_keeps_user_rustflags() {
        let inv = cargo_build_invocation(
            &debian("/ld"),
            true,
            &[],
            Path::new("/t"),
            &TargetSelector::Lib,
            Some(OsStr::new("-C  opt-level=z")),
            None,
        );
        assert!(!inv
            .args
            .iter()
            .any(|a| a.to_str().unwrap().contains("rustflags")));
        assert_eq!(inv.env_remove, ["RUSTFLAGS"]);
        let encoded = inv
            .env
            .iter()
            .find(|(k, _)| k == "CARGO_ENCODED_RUSTFLAGS")
            .map(|(_, v)| v.to_str().unwrap().to_string())
            .unwrap();
        assert_eq!(
            encoded.split('\x1f').collect::<Vec<_>>(),
            [
                "-C",
                "opt-level=z",
                "-L",
                "native=/usr/lib/wasm32-wasi",
                "-C",
                "link-arg=--wasm-ld-path=/usr/lib/llvm-19/bin/wasm-ld"
            ]
        );
    }

    #[test]
    fn toml_strings_are_escaped() {
        assert_eq!(toml_string(r#"C:\a "b""#), r#""C:\\a \"b\"""#);
    }

    #[test]
    fn artifact_messages_are_filtered() {
        let id = "path+file:///g/greet#0.1.0";
        let line = r#"{"reason":"compiler-artifact","package_id":"path+file:///g/greet#0.1.0","target":{"kind":["cdylib"],"name":"greet"},"filenames":["/t/wasm32-wasip2/release/greet.wasm"],"fresh":true}"#;
        assert_eq!(
            artifact_files(line, id, "cdylib"),
            Some(vec![PathBuf::from("/t/wasm32-wasip2/release/greet.wasm")])
        );
        assert_eq!(artifact_files(line, id, "bin"), None);
        assert_eq!(artifact_files(line, "other", "cdylib"), None);
        assert_eq!(
            artifact_files(
                r#"{"reason":"build-finished","success":true}"#,
                id,
                "cdylib"
            ),
            None
        );
        assert_eq!(artifact_files("plain text", id, "cdylib"), None);
    }

    #[test]
    fn wasm_headers() {
        assert_eq!(wasm_kind(b"\0asm\x0d\0\x01\0rest"), WasmKind::Component);
        assert_eq!(wasm_kind(b"\0asm\x01\0\0\0rest"), WasmKind::CoreModule);
        assert_eq!(wasm_kind(b"\x7fELF"), WasmKind::NotWasm);
        assert_eq!(wasm_kind(b""), WasmKind::NotWasm);
    }

    #[test]
    fn crate_dir_errors_are_specific() {
        let missing = check_crate_dir(Path::new("/definitely/not/here")).unwrap_err();
        assert!(missing.to_string().contains("does not exist"), "{missing}");

        let dir = std::env::temp_dir().join(format!("hg-builder-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let no_manifest = check_crate_dir(&dir).unwrap_err();
        assert!(
            no_manifest.to_string().contains("has no Cargo.toml"),
            "{no_manifest}"
        );
        let file = dir.join("file.txt");
        std::fs::write(&file, "x").unwrap();
        let not_dir = check_crate_dir(&file).unwrap_err();
        assert!(
            not_dir.to_string().contains("is not a directory"),
            "{not_dir}"
        );
        std::fs::write(dir.join("Cargo.toml"), "[package]").unwrap();
        assert_eq!(
            check_crate_dir(&dir).unwrap(),
            std::fs::canonicalize(&dir).unwrap()
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
