//! Python task projects -> components, with componentize-py.
//!
//! A project is `app.py` (the module whose `WitWorld` class implements the world's exports; another
//! module with `[tool.hypergraph] module = "..."` in `pyproject.toml`) plus `wit/world.wit`. The
//! build stages the WIT (the project's world plus the host's packages) and the SDK
//! (`hypergraph_guest`, from `guest-sdk/python`), then runs
//! `componentize-py -d <wit> -w <world> componentize <module> -p <project> -p <sdk> -o <out>`.
//! componentize-py snapshots the interpreter after importing the module, so module-level code
//! runs at build time and each run starts from that snapshot.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::assets::PYTHON_SDK;
use crate::project::{self, write_file, Project};
use crate::{BuildOptions, Language};

/// The componentize-py release `scripts/toolchains.sh` installs.
pub const COMPONENTIZE_PY_VERSION: &str = "0.25.1";

pub(super) fn build(dir: &Path, opts: &BuildOptions) -> Result<PathBuf> {
    let project = Project::open(dir, Language::Python, opts)?;
    let module = entry_module(&project.dir)?;
    let sdk_bytes: Vec<&[u8]> = PYTHON_SDK.iter().map(|(_, t)| t.as_bytes()).collect();
    let mut extra = sdk_bytes;
    extra.push(COMPONENTIZE_PY_VERSION.as_bytes());
    extra.push(module.as_bytes());
    let digest = project.inputs_digest(Language::Python, &extra)?;
    if project.up_to_date(&digest) {
        return Ok(project.output());
    }
    let toolchain = project::toolchain(Language::Python)?;
    let wit = project.stage_wit()?;
    let sdk = project.stage("python-sdk")?;
    for (path, text) in PYTHON_SDK {
        write_file(&sdk.join("hypergraph_guest").join(path), text.as_bytes())?;
    }
    let built = project.partial_output();
    let mut cmd = Command::new(toolchain.join("bin").join("componentize-py"));
    cmd.current_dir(&project.dir)
        .arg("-d")
        .arg(&wit)
        .arg("-w")
        .arg(&project.world)
        .arg("componentize")
        .arg(&module)
        .arg("-p")
        .arg(&project.dir)
        .arg("-p")
        .arg(&sdk)
        .arg("-o")
        .arg(&built);
    project::run(cmd, "componentize-py")?;
    project.finish(&built, &digest)
}

/// The module implementing the world: `[tool.hypergraph] module` of `pyproject.toml`, else `app`
/// (which must exist as `app.py`).
fn entry_module(dir: &Path) -> Result<String> {
    let pyproject = dir.join("pyproject.toml");
    if pyproject.is_file() {
        let text = std::fs::read_to_string(&pyproject)
            .with_context(|| format!("reading {}", pyproject.display()))?;
        let doc: toml::Table = text
            .parse()
            .with_context(|| format!("{} is not valid TOML", pyproject.display()))?;
        if let Some(module) = doc
            .get("tool")
            .and_then(|t| t.get("hypergraph"))
            .and_then(|t| t.get("module"))
        {
            return module.as_str().map(str::to_string).with_context(|| {
                format!(
                    "{}: [tool.hypergraph] module must be a string",
                    pyproject.display()
                )
            });
        }
    }
    if !dir.join("app.py").is_file() {
        bail!(
            "{} has no app.py: the task's module is app.py (its `WitWorld` class implements the \
             world's exports), or the module named by `[tool.hypergraph] module` in pyproject.toml",
            dir.display()
        );
    }
    Ok("app".into())
}
