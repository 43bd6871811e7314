//! What the Python, JavaScript and C builders share: reading a task project (its directory, name
//! and world), staging the WIT it builds against, installing the toolchain, skipping builds whose
//! inputs did not change, and running the tools.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{anyhow, bail, Context, Result};
use sha2::{Digest as _, Sha256};

use crate::assets::{HOST_WIT, TOOLCHAINS_SCRIPT};
use crate::rust::{resolve_target_dir, wasm_kind, WasmKind, TARGET_DIR_ENV};
use crate::{BuildOptions, Language};

/// Bump when a builder changes what it produces from the same inputs: stale outputs rebuild.
const BUILDER_VERSION: &str = "1";

/// Directories of a project that are never inputs of its build.
const SKIPPED_DIRS: &[&str] = &[
    "target",
    "node_modules",
    "__pycache__",
    ".git",
    ".venv",
    "venv",
    "build",
    "dist",
];

/// A task project in some language other than Rust.
#[derive(Debug, Clone)]
pub(super) struct Project {
    /// The project directory, canonical.
    pub dir: PathBuf,
    /// The directory name, as a file-name-safe string: names the output file.
    pub name: String,
    /// The world declared in the project's `wit/`.
    pub world: String,
    /// Where the build writes its staging files and the component.
    pub out_dir: PathBuf,
}

impl Project {
    /// Reads the project in `dir`: it must have a `wit/` whose `.wit` files declare exactly one
    /// world (the task's, which includes `hypergraph:task/task` or `hypergraph:task/workflow`).
    pub fn open(dir: &Path, language: Language, opts: &BuildOptions) -> Result<Project> {
        let dir = std::fs::canonicalize(dir)
            .with_context(|| format!("task project directory {} does not exist", dir.display()))?;
        if !dir.is_dir() {
            bail!("{} is not a directory", dir.display());
        }
        let name: String = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "task".into())
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let world = project_world(&dir)?;
        let out_dir = match resolve_target_dir(
            opts.target_dir.as_deref(),
            std::env::var_os(TARGET_DIR_ENV).as_deref(),
        ) {
            // A shared target directory: one folder per project, told apart by its path.
            Some(target) => {
                let hash = hex::encode(&Sha256::digest(dir.to_string_lossy().as_bytes())[..4]);
                std::path::absolute(&target)
                    .unwrap_or(target)
                    .join(format!("{}-guests", language.slug()))
                    .join(format!("{name}-{hash}"))
            }
            None => dir.join("target").join("hypergraph"),
        };
        Ok(Project {
            dir,
            name,
            world,
            out_dir,
        })
    }

    /// The component this build writes.
    pub fn output(&self) -> PathBuf {
        self.out_dir.join(format!("{}.wasm", self.name))
    }

    /// Where the tool writes the component before [`Project::finish`] moves it into place.
    pub fn partial_output(&self) -> PathBuf {
        self.out_dir
            .join("stage")
            .join(format!("{}.wasm", self.name))
    }

    /// A fresh staging directory `<out_dir>/stage/<what>`.
    pub fn stage(&self, what: &str) -> Result<PathBuf> {
        let dir = self.out_dir.join("stage").join(what);
        if dir.exists() {
            std::fs::remove_dir_all(&dir).with_context(|| format!("clearing {}", dir.display()))?;
        }
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(dir)
    }

    /// Writes the WIT the build uses into a fresh staging directory and returns it: the project's
    /// own `wit/` (its world), plus the host's packages under `deps/` (hypergraph:task,
    /// hypergraph:workflow and WASI 0.2), so a project never copies WIT dependencies by hand.
    pub fn stage_wit(&self) -> Result<PathBuf> {
        let wit = self.stage("wit")?;
        copy_tree(&self.dir.join("wit"), &wit, &|_| true)?;
        for (path, text) in HOST_WIT {
            write_file(&wit.join("deps").join(path), text.as_bytes())?;
        }
        Ok(wit)
    }

    /// The digest of everything the build reads: the project's files (build outputs,
    /// dependencies and caches excluded), the embedded WIT and SDK, the toolchain and options.
    pub fn inputs_digest(&self, language: Language, extra: &[&[u8]]) -> Result<String> {
        let mut files = Vec::new();
        list_files(&self.dir, &self.dir, &mut files)?;
        files.sort();
        let mut hasher = Sha256::new();
        hasher.update(BUILDER_VERSION);
        hasher.update(language.slug());
        for (path, text) in HOST_WIT {
            hasher.update(path);
            hasher.update(text);
        }
        for part in extra {
            hasher.update((part.len() as u64).to_le_bytes());
            hasher.update(part);
        }
        for rel in files {
            let bytes = std::fs::read(self.dir.join(&rel))
                .with_context(|| format!("reading {}", self.dir.join(&rel).display()))?;
            hasher.update(rel.to_string_lossy().as_bytes());
            hasher.update((bytes.len() as u64).to_le_bytes());
            hasher.update(&bytes);
        }
        Ok(hex::encode(hasher.finalize()))
    }

    fn stamp_path(&self) -> PathBuf {
        self.out_dir.join(format!("{}.inputs", self.name))
    }

    /// True when the component exists and was built from inputs with this digest.
    pub fn up_to_date(&self, digest: &str) -> bool {
        self.output().is_file()
            && std::fs::read_to_string(self.stamp_path()).is_ok_and(|s| s.trim() == digest)
    }

    /// Moves a freshly built component into place (checking that it is a component) and
    /// records the digest of its inputs.
    pub fn finish(&self, built: &Path, digest: &str) -> Result<PathBuf> {
        let bytes = std::fs::read(built)
            .with_context(|| format!("the build produced no component at {}", built.display()))?;
        match wasm_kind(&bytes) {
            WasmKind::Component => {}
            WasmKind::CoreModule => bail!(
                "{} is a core WebAssembly module, not a component",
                built.display()
            ),
            WasmKind::NotWasm => bail!("{} is not a WebAssembly file", built.display()),
        }
        let output = self.output();
        std::fs::rename(built, &output)
            .with_context(|| format!("moving the component to {}", output.display()))?;
        write_file(&self.stamp_path(), digest.as_bytes())?;
        Ok(output)
    }
}

/// The single world declared by the `.wit` files directly in `<dir>/wit`.
fn project_world(dir: &Path) -> Result<String> {
    let wit = dir.join("wit");
    let entries = std::fs::read_dir(&wit).with_context(|| {
        format!(
            "{} has no wit/ directory: a task project declares its world in wit/world.wit \
             (`hypergraph new` makes one)",
            dir.display()
        )
    })?;
    let mut worlds = Vec::new();
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "wit"))
        .collect();
    paths.sort();
    for path in paths {
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        worlds.extend(world_names(&text));
    }
    match worlds.as_slice() {
        [one] => Ok(one.clone()),
        [] => bail!(
            "{} declares no world: add one that includes hypergraph:task/task@0.1.0 and \
             exports the task functions",
            wit.display()
        ),
        several => bail!(
            "{} declares several worlds ({}): a task project has exactly one",
            wit.display(),
            several.join(", ")
        ),
    }
}

/// The names of the worlds declared in WIT `text` (`world name {`).
pub(super) fn world_names(text: &str) -> Vec<String> {
    let mut names = Vec::new();
    for line in text.lines() {
        let line = line.split("//").next().unwrap_or("").trim();
        if let Some(rest) = line.strip_prefix("world ") {
            let name: String = rest
                .trim_start()
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '%')
                .collect();
            if !name.is_empty() {
                names.push(name.trim_start_matches('%').to_string());
            }
        }
    }
    names
}

/// Files of the project that are build inputs, relative to `root`.
fn list_files(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let entry = entry?;
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let kind = entry.file_type()?;
        if kind.is_dir() {
            if !SKIPPED_DIRS.contains(&name.as_ref()) {
                list_files(root, &path, out)?;
            }
        } else if kind.is_file() && !name.ends_with(".wasm") {
            out.push(path.strip_prefix(root).unwrap_or(&path).to_path_buf());
        }
    }
    Ok(())
}

/// Copies the files under `from` for which `keep` holds into `to`, skipping [`SKIPPED_DIRS`].
pub(super) fn copy_tree(from: &Path, to: &Path, keep: &dyn Fn(&Path) -> bool) -> Result<()> {
    let mut files = Vec::new();
    list_files(from, from, &mut files)?;
    for rel in files.into_iter().filter(|rel| keep(rel)) {
        let target = to.join(&rel);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::copy(from.join(&rel), &target).with_context(|| {
            format!(
                "copying {} to {}",
                from.join(&rel).display(),
                target.display()
            )
        })?;
    }
    Ok(())
}

/// Writes `bytes` to `path`, creating its directory.
pub(super) fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    std::fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))
}

/// Installs the toolchain of `language` if needed (the embedded `scripts/toolchains.sh`, pinned
/// versions, a no-op when present) and returns the directory it printed.
pub(super) fn toolchain(language: Language) -> Result<PathBuf> {
    let mut script = tempfile::Builder::new()
        .prefix("hypergraph-toolchains")
        .suffix(".sh")
        .tempfile()
        .context("creating a temporary file for the toolchain script")?;
    script.write_all(TOOLCHAINS_SCRIPT.as_bytes())?;
    script.flush()?;
    let out = Command::new("bash")
        .arg(script.path())
        .arg(language.slug())
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .context("cannot run bash to install the toolchain")?;
    if !out.status.success() {
        bail!(
            "installing the {language} toolchain failed ({}; the messages are above). It is \
             the repository's scripts/toolchains.sh {}: fix what it reports and build again",
            out.status,
            language.slug()
        );
    }
    let dir = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if dir.is_empty() {
        bail!("the toolchain script printed no directory");
    }
    Ok(PathBuf::from(dir))
}

/// Runs `cmd` with its output streamed to this process's stderr (stdout carries only the
/// component's path); `what` names it in the error.
pub(super) fn run(mut cmd: Command, what: &str) -> Result<()> {
    let status = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::from(std::io::stderr()))
        .stderr(Stdio::inherit())
        .status()
        .map_err(|e| anyhow!("cannot start {what} ({:?}): {e}", cmd.get_program()))?;
    if !status.success() {
        bail!("{what} failed ({status}); its messages are above");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_world_names() {
        let text = "package a:b;\n// world commented {\nworld greet {\n  include x;\n}\n\
                    world %other-one{}\n";
        assert_eq!(world_names(text), ["greet", "other-one"]);
        assert!(world_names("interface world-ish {}").is_empty());
    }
}
