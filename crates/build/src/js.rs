//! JavaScript task projects -> components, with ComponentizeJS (SpiderMonkey).
//!
//! A project is `package.json` (its `main` names the ES module implementing the world, default
//! `index.js` or `app.js`) plus `wit/world.wit`. The module exports one function per world export
//! (and `export const <interface> = {...}` for exported interfaces). The SDK is imported as
//! `hypergraph-guest`, `hypergraph-guest/http` and `hypergraph-guest/workflow`: the build copies
//! the project into a staging directory with the SDK (from `guest-sdk/js`) beside it and points
//! those imports at it (ComponentizeJS resolves relative imports only), then runs
//! `componentize-js <entry> --wit <wit> -n <world> -d fetch-event -o <out>` (no incoming-HTTP
//! export: a task is called by the host, not by HTTP).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::assets::JS_SDK;
use crate::project::{self, copy_tree, write_file, Project};
use crate::{BuildOptions, Language};

/// The ComponentizeJS release `scripts/toolchains.sh` installs.
pub const COMPONENTIZE_JS_VERSION: &str = "0.23.0";

/// Where the SDK goes inside the staged sources.
const SDK_DIR: &str = "_hypergraph_guest";

/// `import ... from '<specifier>'` of the SDK -> its file.
const SDK_MODULES: &[(&str, &str)] = &[
    ("hypergraph-guest", "index.js"),
    ("hypergraph-guest/http", "http.js"),
    ("hypergraph-guest/workflow", "workflow.js"),
];

pub(super) fn build(dir: &Path, opts: &BuildOptions) -> Result<PathBuf> {
    let project = Project::open(dir, Language::JavaScript, opts)?;
    let entry = entry_module(&project.dir)?;
    let mut extra: Vec<&[u8]> = JS_SDK.iter().map(|(_, t)| t.as_bytes()).collect();
    extra.push(COMPONENTIZE_JS_VERSION.as_bytes());
    let digest = project.inputs_digest(Language::JavaScript, &extra)?;
    if project.up_to_date(&digest) {
        return Ok(project.output());
    }
    let toolchain = project::toolchain(Language::JavaScript)?;
    let wit = project.stage_wit()?;
    let src = project.stage("src")?;
    copy_tree(&project.dir, &src, &|rel| !rel.starts_with("wit"))?;
    for (path, text) in JS_SDK {
        write_file(&src.join(SDK_DIR).join(path), text.as_bytes())?;
    }
    rewrite_imports(&src, &src)?;
    let built = project.partial_output();
    let mut cmd = Command::new(toolchain.join("node_modules/.bin/componentize-js"));
    cmd.current_dir(&src)
        .arg(&entry)
        .arg("--wit")
        .arg(&wit)
        .arg("-n")
        .arg(&project.world)
        .args(["-d", "fetch-event"])
        .arg("-o")
        .arg(&built);
    project::run(cmd, "componentize-js")?;
    project.finish(&built, &digest)
}

/// The entry module: `main` of `package.json`, else `index.js`, else `app.js`.
fn entry_module(dir: &Path) -> Result<String> {
    let manifest = dir.join("package.json");
    if manifest.is_file() {
        let text = std::fs::read_to_string(&manifest)
            .with_context(|| format!("reading {}", manifest.display()))?;
        let doc: serde_json::Value = serde_json::from_str(&text)
            .with_context(|| format!("{} is not valid JSON", manifest.display()))?;
        if let Some(main) = doc.get("main").and_then(|m| m.as_str()) {
            if !dir.join(main).is_file() {
                bail!(
                    "{}: `main` names {main}, which does not exist",
                    manifest.display()
                );
            }
            return Ok(main.to_string());
        }
    }
    for candidate in ["index.js", "app.js"] {
        if dir.join(candidate).is_file() {
            return Ok(candidate.to_string());
        }
    }
    bail!(
        "{} has no entry module: set `main` in package.json, or add index.js",
        dir.display()
    )
}

/// Points the SDK imports of every staged `.js`/`.mjs` file at the staged SDK.
fn rewrite_imports(root: &Path, dir: &Path) -> Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            if !path.ends_with(SDK_DIR) {
                rewrite_imports(root, &path)?;
            }
            continue;
        }
        if !path.extension().is_some_and(|e| e == "js" || e == "mjs") {
            continue;
        }
        let text = std::fs::read_to_string(&path)?;
        let depth = path
            .strip_prefix(root)
            .map(|rel| rel.components().count() - 1)
            .unwrap_or(0);
        let rewritten = rewrite_source(&text, depth);
        if rewritten != text {
            std::fs::write(&path, rewritten)?;
        }
    }
    Ok(())
}

/// `text` with each quoted SDK specifier replaced by the relative path of its staged file, for a
/// file `depth` directories below the staging root.
fn rewrite_source(text: &str, depth: usize) -> String {
    let up = if depth == 0 {
        "./".to_string()
    } else {
        "../".repeat(depth)
    };
    let mut out = text.to_string();
    // Longest specifiers first, so `hypergraph-guest` does not match inside the others.
    let mut modules = SDK_MODULES.to_vec();
    modules.sort_by_key(|(spec, _)| std::cmp::Reverse(spec.len()));
    for (spec, file) in modules {
        for quote in ['\'', '"'] {
            out = out.replace(
                &format!("{quote}{spec}{quote}"),
                &format!("{quote}{up}{SDK_DIR}/{file}{quote}"),
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rewrites_sdk_imports_only() {
        let src = "import { log } from 'hypergraph-guest';\n\
                   import * as wf from \"hypergraph-guest/workflow\";\n\
                   import x from './hypergraph-guest-local.js';\n";
        assert_eq!(
            rewrite_source(src, 0),
            "import { log } from './_hypergraph_guest/index.js';\n\
             import * as wf from \"./_hypergraph_guest/workflow.js\";\n\
             import x from './hypergraph-guest-local.js';\n"
        );
        assert!(rewrite_source(src, 2).contains("'../../_hypergraph_guest/index.js'"));
    }
}
