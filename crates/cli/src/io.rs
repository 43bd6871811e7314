//! Input and output of the command line: the `out!`/`outln!` macros and [`write_stdout`] (a
//! closed pipe ends the process with status 141), [`print_json`], and reading JSON arguments and
//! component files.

use std::path::Path;

use anyhow::{Context as _, Result};
use serde_json::Value;

use crate::limits::{format_bytes, MAX_PAYLOAD_LIMIT};

/// `print!` to stdout through [`write_stdout`].
macro_rules! out {
    ($($arg:tt)*) => { $crate::io::write_stdout(format_args!($($arg)*)) };
}

/// `println!` to stdout through [`write_stdout`].
macro_rules! outln {
    () => { $crate::io::write_stdout(format_args!("\n")) };
    ($($arg:tt)*) => { $crate::io::write_stdout(format_args!("{}\n", format_args!($($arg)*))) };
}

/// Writes to stdout; a closed pipe ends the process with status 141 instead of a panic.
pub(crate) fn write_stdout(args: std::fmt::Arguments) {
    use std::io::Write as _;
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = stdout.write_fmt(args).and_then(|()| stdout.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(141);
        }
        eprintln!("error: cannot write to stdout: {e}");
        std::process::exit(2);
    }
}

/// Prints `value` as pretty JSON on its own line: the one document of a `--json` command.
pub(crate) fn print_json(value: &impl serde::Serialize) {
    outln!(
        "{}",
        serde_json::to_string_pretty(value).expect("values serialize")
    );
}

/// The `--input` JSON of a run (see [`read_json_arg`]), `null` when it is not given.
pub(crate) fn read_input(input: Option<String>) -> Result<Value> {
    match input {
        Some(text) => read_json_arg(&text, "--input"),
        None => Ok(Value::Null),
    }
}

/// Reads the JSON value of argument `flag`: the text itself, `@file` for a file's contents or `-`
/// for stdin. Text longer than any deployment accepts is refused before it is parsed.
pub(crate) fn read_json_arg(text: &str, flag: &str) -> Result<Value> {
    use std::io::Read as _;
    let too_big = || {
        anyhow::anyhow!(
            "{flag} is larger than {}, the most any deployment accepts",
            format_bytes(MAX_PAYLOAD_LIMIT)
        )
    };
    let text = if text == "-" {
        let mut buffer = String::new();
        std::io::stdin()
            .take(MAX_PAYLOAD_LIMIT + 1)
            .read_to_string(&mut buffer)
            .with_context(|| format!("reading {flag} from stdin"))?;
        buffer
    } else if let Some(path) = text.strip_prefix('@') {
        let size = std::fs::metadata(path)
            .with_context(|| format!("reading the {flag} file `{path}`"))?
            .len();
        if size > MAX_PAYLOAD_LIMIT {
            return Err(too_big());
        }
        std::fs::read_to_string(path)
            .with_context(|| format!("reading the {flag} file `{path}`"))?
    } else {
        text.to_string()
    };
    if text.len() as u64 > MAX_PAYLOAD_LIMIT {
        return Err(too_big());
    }
    serde_json::from_str(&text).map_err(|e| {
        anyhow::anyhow!("{flag} is not valid JSON ({e}); for a string, quote it: {flag} '\"text\"'")
    })
}

/// The bytes of the component file at `path`.
pub(crate) fn read_component(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read component file `{}`", path.display()))
}
