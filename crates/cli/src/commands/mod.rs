//! The command handlers, one module per group of commands. Each handler takes its parsed
//! arguments ([`crate::args`]), prints its result (one JSON document with `--json`) and returns
//! the process's exit code: 0, or 1 when a run waited for, replayed or checked did not succeed.

pub(crate) mod db;
pub(crate) mod deploy;
pub(crate) mod events;
pub(crate) mod project;
pub(crate) mod replay;
pub(crate) mod run;
pub(crate) mod runs;
pub(crate) mod worker;
pub(crate) mod workers;
