//! The command line's definition: every command, its arguments and their parsers (clap).

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use anyhow::Result;
use clap::builder::{PossibleValuesParser, TypedValueParser as _};
use clap::{Args, Parser, Subcommand};
use serde_json::Value;

use crate::builder::Language;
use crate::retry::RetryOn;
use crate::store::{Durability, Micros, RunFilter, Status};
use crate::worker::MAX_CONCURRENCY;
use hypergraph_core::worker::MIN_HEARTBEAT;

/// Durable task runtime: every task is a WebAssembly component, every run is recorded.
#[derive(Parser, Debug)]
#[command(name = "hypergraph", version, about, long_about = None)]
pub struct Cli {
    /// The database: a SQLite file path or sqlite:// URL, or a postgres:// URL
    /// [default: $XDG_DATA_HOME/hypergraph/hypergraph.db].
    #[arg(long, global = true, env = "HYPERGRAPH_DB")]
    pub(crate) db: Option<String>,

    /// Where compiled components are cached [default: `hypergraph-cache` beside the database].
    #[arg(long, global = true, env = "HYPERGRAPH_CACHE_DIR")]
    pub(crate) cache_dir: Option<PathBuf>,

    /// What an acknowledged write survives. `strict`: a crash of the process and of the machine
    /// (SQLite synchronous=FULL, PostgreSQL synchronous_commit=on). `relaxed`: a crash of the
    /// process; a power loss (or a PostgreSQL server crash) may lose the last acknowledged
    /// commits, whose steps then run again.
    #[arg(
        long,
        global = true,
        env = "HYPERGRAPH_DURABILITY",
        default_value = "strict",
        value_parser = PossibleValuesParser::new(["strict", "relaxed"])
            .map(|s| s.parse::<Durability>().expect("a listed durability"))
    )]
    pub(crate) durability: Durability,

    /// More logging on stderr (-v: info, -vv: debug); RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub(crate) verbose: u8,

    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Subcommand, Debug)]
pub(crate) enum Command {
    /// Deploy a component (.wasm or .wat) under a name; redeploying makes a new version.
    Deploy(Box<DeployArgs>),
    /// List deployed tasks with their WIT signatures.
    Tasks(JsonFlag),
    /// Submit a run of a task; with --wait, execute it here and print its result.
    Run(RunArgs),
    /// Inspect runs.
    #[command(subcommand)]
    Runs(RunsCommand),
    /// Execute queued runs until stopped (Ctrl-C) or, with --until-idle, until none is left.
    Worker(WorkerArgs),
    /// Run the workers that execute queued steps, workflows included, until Ctrl-C or SIGTERM.
    /// Safe to kill at any moment: unfinished steps are claimed again when their lease expires,
    /// or sooner, once the killed worker's heartbeat has been missing long enough to call it
    /// dead. Prints the database, worker id and concurrency at startup; -v logs every claim and
    /// completion.
    Serve(ServeArgs),
    /// The worker processes (`serve`, `worker`) using this database: alive or not, what they
    /// hold and what they completed.
    #[command(subcommand)]
    Workers(WorkersCommand),
    /// External events that workflows wait for.
    #[command(subcommand)]
    Events(EventsCommand),
    /// Replay a bundle written by `runs export`, offline, on any machine: no database is opened or
    /// created. Exits 1 when it diverges.
    Replay(BundleArgs),
    /// Replay the newest runs of a deployment against a candidate component: the deploy gate.
    /// Exits 1 when any run diverges.
    CheckUpgrade(CheckUpgradeArgs),
    /// Build a task project (Rust, Python, JavaScript or C) into a component; prints its path.
    Build(BuildArgs),
    /// Create a task project that builds and runs unchanged: `new python my-task`.
    New(NewArgs),
    /// Build, deploy and run the examples on the embedded SQLite database, then show the runs.
    Demo(DemoArgs),
    /// The database itself: backups, and moving an embedded database into PostgreSQL.
    #[command(subcommand)]
    Db(DbCommand),
}

#[derive(Subcommand, Debug)]
pub(crate) enum DbCommand {
    /// Copy the database, as of one moment, into a new file with SQLite's online backup; other
    /// processes may go on using it meanwhile. The copy is a complete database (`--db <file>`).
    Backup(BackupArgs),
    /// Copy a SQLite database, its whole history, into an empty PostgreSQL database or schema:
    /// components, deployments (every version), runs, steps, attempts, journals, logs, events,
    /// key-value data and workers. The source is read as of one moment (other processes may go
    /// on using it, but what they write afterwards is not copied: stop the workers first); the
    /// target is written in one transaction, all or nothing, and must hold no Hypergraph data.
    /// Then point every machine at the target with --db postgres://...
    Copy(CopyArgs),
}

#[derive(Args, Debug)]
pub(crate) struct CopyArgs {
    /// The SQLite database to copy: a file path or sqlite:// URL. It must exist; it is migrated
    /// to this hypergraph's schema first, like any database it opens.
    #[arg(long)]
    pub(crate) from: String,
    /// The PostgreSQL database to copy into: postgres://user@host/db, with ?schema=NAME for a
    /// schema of its own (created if missing). It must hold no Hypergraph data.
    #[arg(long)]
    pub(crate) to: String,
    #[command(flatten)]
    pub(crate) json: JsonFlag,
}

#[derive(Args, Debug)]
pub(crate) struct BackupArgs {
    /// The new file to write (it must not exist).
    pub(crate) file: PathBuf,
    #[command(flatten)]
    pub(crate) json: JsonFlag,
}

#[derive(Args, Debug)]
pub(crate) struct JsonFlag {
    /// Print one JSON document instead of text.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Args, Debug)]
pub(crate) struct DeployArgs {
    /// The component file (binary .wasm or .wat text), or a DAG workflow file (.toml).
    pub(crate) file: PathBuf,
    /// Deployment name; tasks are named `<name>/<function>`. For a DAG file (`.toml`) it is the
    /// workflow's name [default: the file's `name`].
    #[arg(long)]
    pub(crate) name: Option<String>,
    /// Memory cap per instance, e.g. `64MiB`, `1GiB` or bytes [default: 256MiB].
    #[arg(long, value_parser = parse_bytes)]
    pub(crate) memory: Option<u64>,
    /// Execution deadline per attempt, e.g. `500ms`, `30s`, `5m` [default: 60s].
    #[arg(long, value_parser = humantime::parse_duration)]
    pub(crate) timeout: Option<Duration>,
    /// Log lines kept per attempt [default: 1000].
    #[arg(long)]
    pub(crate) max_log_lines: Option<u32>,
    /// Longest log line kept; longer ones are cut, e.g. `64KiB` [default: 64KiB].
    #[arg(long, value_parser = parse_bytes)]
    pub(crate) max_log_line: Option<u64>,
    /// Log bytes kept per attempt [default: 1MiB].
    #[arg(long, value_parser = parse_bytes)]
    pub(crate) max_log_bytes: Option<u64>,
    /// Largest input accepted, in bytes of JSON [default: 16MiB, at most 64MiB].
    #[arg(long, value_parser = parse_bytes)]
    pub(crate) max_input: Option<u64>,
    /// Largest output (or error value) of an attempt, in bytes of JSON [default: 16MiB].
    #[arg(long, value_parser = parse_bytes)]
    pub(crate) max_output: Option<u64>,
    /// Key-value bytes (keys and values) one attempt may write [default: 16MiB].
    #[arg(long, value_parser = parse_bytes)]
    pub(crate) max_kv_write: Option<u64>,
    /// Lost leases (worker died or stalled) a step survives before it fails [default: 3].
    #[arg(long)]
    pub(crate) max_lost_leases: Option<u32>,
    /// Host the tasks may send HTTP requests to (repeatable): `host`, `host:port` or
    /// `*.domain` [default: none].
    #[arg(long = "allow-http", value_name = "HOST")]
    pub(crate) allow_http: Vec<String>,
    /// Attempts per step, the first included [default: 1, no retries].
    #[arg(long)]
    pub(crate) max_attempts: Option<u32>,
    /// Delay before the first retry, doubling per retry, with jitter [default: 1s].
    #[arg(long, value_parser = humantime::parse_duration)]
    pub(crate) backoff: Option<Duration>,
    /// Longest delay between retries [default: 60s].
    #[arg(long, value_parser = humantime::parse_duration)]
    pub(crate) max_backoff: Option<Duration>,
    /// Longest a step may wait in the queue before it starts, e.g. `5m` [default: unbounded].
    #[arg(long, value_parser = humantime::parse_duration)]
    pub(crate) schedule_to_start: Option<Duration>,
    /// Longest a whole run may take, e.g. `1h`; then it fails and its unfinished steps are
    /// cancelled [default: unbounded].
    #[arg(long, value_parser = humantime::parse_duration)]
    pub(crate) run_timeout: Option<Duration>,
    /// Which failures are retried, comma-separated: trap, timeout, retryable (application errors
    /// marked retryable), application (every application error) [default: trap,timeout,retryable].
    #[arg(long, value_delimiter = ',', value_parser = parse_retry_on)]
    pub(crate) retry_on: Option<Vec<RetryOn>>,
    #[command(flatten)]
    pub(crate) json: JsonFlag,
}

#[derive(Args, Debug)]
pub(crate) struct RunArgs {
    /// Task name: `<deployment>/<function>` or `<deployment>/<interface>.<function>`.
    pub(crate) task: String,
    /// Input JSON: an object keyed by parameter name (or the bare value for one parameter);
    /// `@file` reads it from a file, `-` from stdin.
    #[arg(long, short)]
    pub(crate) input: Option<String>,
    /// Submit one run per line of this JSON Lines file (`-` for stdin), each line an input as
    /// `--input` takes it; all are validated and enqueued in one transaction (none if any line
    /// is wrong, and the error names the line). Prints the run ids in line order.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["input", "wait"])]
    pub(crate) inputs: Option<String>,
    /// Metadata tag `key=value` (repeatable), for filtering with `runs list --meta`.
    #[arg(long = "meta", value_parser = parse_key_value)]
    pub(crate) meta: Vec<(String, String)>,
    /// Execute the run in this process and wait for its result.
    #[arg(long)]
    pub(crate) wait: bool,
    /// With --wait: give up waiting after this long (the run keeps its state).
    #[arg(long, value_parser = humantime::parse_duration, requires = "wait")]
    pub(crate) wait_timeout: Option<Duration>,
    #[command(flatten)]
    pub(crate) json: JsonFlag,
}

#[derive(Subcommand, Debug)]
pub(crate) enum RunsCommand {
    /// List runs, newest first.
    List(ListArgs),
    /// Show one run: steps, attempts, timings, worker, digest, input, output, error.
    Show(ShowArgs),
    /// Print a run's captured log lines.
    Logs(RunIdArgs),
    /// Re-execute a run against its journal (no clock, randomness or network is consulted) and
    /// report `identical` or the first divergence. Exits 1 when it diverges.
    Replay(ReplayArgs),
    /// Write a self-contained replay bundle of a run: component, task signature, inputs,
    /// journals, outputs, errors, logs and metadata, versioned and checksummed.
    Export(ExportArgs),
    /// Cancel a run and every unfinished step of it, children included; running attempts are
    /// interrupted within a second.
    Cancel(RunIdArgs),
    /// Re-run failed (or cancelled) runs from their failed steps, reusing the outputs of every
    /// completed step: the runs given by id, or every run matching the filters (failed runs by
    /// default). A worker (`serve`, `worker`) executes them.
    Resume(ResumeArgs),
}

#[derive(Args, Debug)]
pub(crate) struct ResumeArgs {
    /// Run ids; without any, the filters select the runs (failed runs unless --status says).
    pub(crate) ids: Vec<String>,
    /// Move the runs to the newest version of their deployments instead of the pinned one.
    #[arg(long)]
    pub(crate) latest: bool,
    #[command(flatten)]
    pub(crate) filter: FilterArgs,
    #[command(flatten)]
    pub(crate) json: JsonFlag,
}

#[derive(Subcommand, Debug)]
pub(crate) enum EventsCommand {
    /// Send an event: every workflow waiting for this name wakes up with the payload.
    Send(SendEventArgs),
}

#[derive(Args, Debug)]
pub(crate) struct SendEventArgs {
    /// The event name workflows wait for.
    pub(crate) name: String,
    /// The payload, JSON [default: null]; `@file` reads it from a file, `-` from stdin.
    #[arg(long)]
    pub(crate) payload: Option<String>,
    #[command(flatten)]
    pub(crate) json: JsonFlag,
}

#[derive(Subcommand, Debug)]
pub(crate) enum WorkersCommand {
    /// List the workers seen lately (and any worker still holding a step): id, host, pid,
    /// version, concurrency, start, last heartbeat, state, the steps it holds and the attempts
    /// it completed in the last minute. A worker is `live` while it heartbeats, `stale` once it
    /// missed 3 heartbeat intervals, `dead` after 6 (its steps are then claimed again by other
    /// workers), `stopped` after a clean shutdown.
    List(WorkersListArgs),
}

#[derive(Args, Debug)]
pub(crate) struct WorkersListArgs {
    /// Only workers whose last heartbeat is within this long (`10m`, `2h`, `7days`); workers
    /// holding steps are listed whenever they were last seen.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "1h")]
    pub(crate) since: Duration,
    #[command(flatten)]
    pub(crate) json: JsonFlag,
}

#[derive(Args, Debug)]
pub(crate) struct ServeArgs {
    /// Steps executed at once (1 to 1024).
    #[arg(long, default_value_t = 32, value_parser = parse_concurrency)]
    pub(crate) concurrency: usize,
    /// How long a claimed step stays leased without renewal: after a crash, its steps are
    /// claimed again at most this long after the last renewal (sooner once the worker is found
    /// dead: see --heartbeat).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "30s")]
    pub(crate) lease: Duration,
    /// How long a workflow joining a few unfinished children waits for them in place (keeping
    /// its instance) before it suspends; `0s` suspends at once.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "200ms")]
    pub(crate) linger: Duration,
    #[command(flatten)]
    pub(crate) heartbeat: HeartbeatArg,
}

/// How often a worker records that it is alive.
#[derive(Args, Debug)]
pub(crate) struct HeartbeatArg {
    /// How often this worker records a heartbeat in the database (at least 100ms). It is shown
    /// `stale` after 3 intervals without one and `dead` after 6, and a dead worker's steps are
    /// claimed again by others without waiting for their leases to expire.
    #[arg(
        long = "heartbeat",
        value_name = "INTERVAL",
        value_parser = parse_heartbeat,
        default_value = "2s",
        env = "HYPERGRAPH_HEARTBEAT"
    )]
    pub(crate) every: Duration,
}

#[derive(Args, Debug)]
pub(crate) struct ExportArgs {
    /// The run id.
    pub(crate) id: String,
    /// The bundle file to write [default: <run id>.hgbundle].
    #[arg(long, short)]
    pub(crate) output: Option<PathBuf>,
    #[command(flatten)]
    pub(crate) json: JsonFlag,
}

#[derive(Args, Debug)]
pub(crate) struct BundleArgs {
    /// The bundle file.
    pub(crate) bundle: PathBuf,
    /// Replay against this component file instead of the one in the bundle.
    #[arg(long)]
    pub(crate) component: Option<PathBuf>,
    /// Longest an attempt may run in the replay, whatever the bundle's policy says.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "60s")]
    pub(crate) timeout: Duration,
    /// Most memory an instance may use in the replay, whatever the bundle's policy says.
    #[arg(long, value_parser = parse_bytes, default_value = "256MiB")]
    pub(crate) memory: u64,
    #[command(flatten)]
    pub(crate) json: JsonFlag,
}

#[derive(Args, Debug)]
pub(crate) struct ReplayArgs {
    /// The run id.
    pub(crate) id: String,
    /// Replay against this component file instead of the pinned one.
    #[arg(long, conflicts_with = "version")]
    pub(crate) component: Option<PathBuf>,
    /// Replay against this version of the run's deployment instead of the pinned one.
    #[arg(long)]
    pub(crate) version: Option<i64>,
    /// Instead of checking the run, re-run it from its failed steps (`runs resume <id>`).
    #[arg(long, conflicts_with_all = ["component", "version"])]
    pub(crate) resume: bool,
    /// With --resume: on the newest version of the deployment instead of the pinned one.
    #[arg(long, requires = "resume")]
    pub(crate) latest: bool,
    #[command(flatten)]
    pub(crate) json: JsonFlag,
}

#[derive(Args, Debug)]
pub(crate) struct CheckUpgradeArgs {
    /// The deployment whose runs to replay.
    pub(crate) deployment: String,
    /// The candidate component file (.wasm or .wat).
    pub(crate) component: PathBuf,
    /// How many of the newest runs to replay (in-flight runs are always included).
    #[arg(long, default_value_t = 20)]
    pub(crate) last: u32,
    #[command(flatten)]
    pub(crate) json: JsonFlag,
}

#[derive(Args, Debug)]
pub(crate) struct ListArgs {
    #[command(flatten)]
    pub(crate) filter: FilterArgs,
    #[command(flatten)]
    pub(crate) json: JsonFlag,
}

/// The flags that select runs, shared by every command that filters them (`runs list`, `runs
/// resume`); [`FilterArgs::to_filter`] is their one conversion to the store's [`RunFilter`].
#[derive(Args, Debug)]
pub(crate) struct FilterArgs {
    /// Only runs with this status (queued, running, succeeded, failed, cancelled)
    /// [default for `runs resume`: failed].
    #[arg(long)]
    pub(crate) status: Option<Status>,
    /// Only runs of this task, or of every task of this deployment.
    #[arg(long)]
    pub(crate) task: Option<String>,
    /// Only runs created within this long (`10m`, `2h`, `1day`) or since an RFC 3339 time.
    #[arg(long, value_parser = parse_since)]
    pub(crate) since: Option<Micros>,
    /// Only runs tagged `key=value` (repeatable; all must match).
    #[arg(long = "meta", value_parser = parse_key_value)]
    pub(crate) meta: Vec<(String, String)>,
    /// At most this many runs, newest first [default for `runs list`: 50; for `runs resume`:
    /// all].
    #[arg(long)]
    pub(crate) limit: Option<u32>,
}

impl FilterArgs {
    /// The store filter these flags select: every condition given, and at most `limit` runs
    /// (`default_limit` when `--limit` is not given; 0 leaves the count to the caller).
    pub(crate) fn to_filter(&self, default_limit: u32) -> RunFilter {
        RunFilter {
            status: self.status,
            task: self.task.clone(),
            since: self.since,
            meta: self.meta.clone(),
            limit: self.limit.unwrap_or(default_limit),
        }
    }
}

#[derive(Args, Debug)]
pub(crate) struct RunIdArgs {
    /// The run id.
    pub(crate) id: String,
    #[command(flatten)]
    pub(crate) json: JsonFlag,
}

#[derive(Args, Debug)]
pub(crate) struct ShowArgs {
    /// The run id.
    pub(crate) id: String,
    /// Show at most this many steps (0: all); the rest are counted by status.
    #[arg(long, default_value_t = 1000)]
    pub(crate) steps: u32,
    /// Only steps with this status (queued, running, waiting, succeeded, failed, cancelled).
    #[arg(long)]
    pub(crate) step_status: Option<Status>,
    #[command(flatten)]
    pub(crate) json: JsonFlag,
}

#[derive(Args, Debug)]
pub(crate) struct WorkerArgs {
    /// Steps executed at once (1 to 1024).
    #[arg(long, default_value_t = 32, value_parser = parse_concurrency)]
    pub(crate) concurrency: usize,
    /// Stop when there is nothing left to run instead of waiting for more.
    #[arg(long)]
    pub(crate) until_idle: bool,
    #[command(flatten)]
    pub(crate) heartbeat: HeartbeatArg,
    #[command(flatten)]
    pub(crate) json: JsonFlag,
}

#[derive(Args, Debug)]
pub(crate) struct BuildArgs {
    /// The task project directory: a Rust crate (Cargo.toml), a Python project (pyproject.toml,
    /// or app.py with a wit/), a JavaScript project (package.json), a Go module (go.mod) or C
    /// sources with a wit/.
    pub(crate) dir: PathBuf,
    /// The project's language (rust, python, js, c, go) [default: detected from its files].
    #[arg(long, value_parser = parse_language)]
    pub(crate) language: Option<Language>,
    /// Debug build instead of release.
    #[arg(long)]
    pub(crate) debug: bool,
    /// Cargo features of the guest crate to enable (comma-separated or repeated).
    #[arg(long, value_delimiter = ',')]
    pub(crate) features: Vec<String>,
    #[command(flatten)]
    pub(crate) json: JsonFlag,
}

#[derive(Args, Debug)]
pub(crate) struct NewArgs {
    /// The language: rust, python, js, c or go.
    #[arg(value_parser = parse_language)]
    pub(crate) language: Language,
    /// The directory to create (its name names the project, its world and its deployment).
    pub(crate) dir: PathBuf,
    /// A workflow project: its world includes hypergraph:task/workflow and it fans out children.
    #[arg(long)]
    pub(crate) workflow: bool,
}

#[derive(Args, Debug)]
pub(crate) struct DemoArgs {
    /// The examples directory [default: ./examples, else the one in the source tree].
    #[arg(long)]
    pub(crate) examples: Option<PathBuf>,
}

fn parse_language(s: &str) -> Result<Language, String> {
    s.parse()
}

fn parse_key_value(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("expected key=value, got `{s}`")),
    }
}

fn parse_bytes(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("expected a size like 64MiB or 1GiB, got `{s}`"))?;
    let factor: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        other => return Err(format!("unknown size unit `{other}`; use KiB, MiB or GiB")),
    };
    number
        .checked_mul(factor)
        .ok_or_else(|| format!("size `{s}` is too large"))
}

fn parse_since(s: &str) -> Result<Micros, String> {
    let to_micros = |t: SystemTime| {
        t.duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_micros() as Micros)
            .unwrap_or(0)
    };
    if let Ok(duration) = humantime::parse_duration(s) {
        return Ok(to_micros(SystemTime::now() - duration));
    }
    humantime::parse_rfc3339_weak(s)
        .map(to_micros)
        .map_err(|_| format!("expected a duration like 10m or 2h, or an RFC 3339 time, got `{s}`"))
}

fn parse_concurrency(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(n) if (1..=MAX_CONCURRENCY).contains(&n) => Ok(n),
        Ok(n) => Err(format!(
            "{n} is out of range: a worker runs 1 to {MAX_CONCURRENCY} steps at once \
             (run more processes for more)"
        )),
        Err(_) => Err(format!("expected a number of steps, got `{text}`")),
    }
}

fn parse_heartbeat(text: &str) -> Result<Duration, String> {
    let every = humantime::parse_duration(text)
        .map_err(|e| format!("expected a duration like 2s or 500ms, got `{text}`: {e}"))?;
    if every < MIN_HEARTBEAT {
        return Err(format!(
            "{text} is too short: a worker heartbeats at most every {}",
            humantime::format_duration(MIN_HEARTBEAT)
        ));
    }
    Ok(every)
}

fn parse_retry_on(text: &str) -> Result<RetryOn> {
    serde_json::from_value(Value::String(text.trim().to_string())).map_err(|_| {
        anyhow::anyhow!(
            "unknown failure kind `{text}`; expected trap, timeout, retryable or application"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_bytes("64MiB"), Ok(64 << 20));
        assert_eq!(parse_bytes("1g"), Ok(1 << 30));
        assert_eq!(parse_bytes("4096"), Ok(4096));
        assert!(parse_bytes("lots").is_err());
        assert!(parse_bytes("5 parsecs").is_err());
    }

    #[test]
    fn key_values() {
        assert_eq!(
            parse_key_value("env=prod=1"),
            Ok(("env".into(), "prod=1".into()))
        );
        assert!(parse_key_value("=x").is_err());
        assert!(parse_key_value("novalue").is_err());
    }

    #[test]
    fn since() {
        let hour_ago = parse_since("1h").unwrap();
        let now = crate::store::now_micros();
        assert!((now - hour_ago - 3_600_000_000).abs() < 5_000_000);
        assert_eq!(parse_since("1970-01-01T00:00:01Z"), Ok(1_000_000));
        assert!(parse_since("yesterday-ish").is_err());
    }

    #[test]
    fn heartbeats() {
        use hypergraph_core::worker::{DEAD_AFTER_BEATS, DEFAULT_HEARTBEAT, STALE_AFTER_BEATS};
        // The default of `--heartbeat`, and the thresholds its help and `workers --help` state.
        assert_eq!(parse_heartbeat("2s"), Ok(DEFAULT_HEARTBEAT));
        assert_eq!((STALE_AFTER_BEATS, DEAD_AFTER_BEATS), (3, 6));
        assert_eq!(parse_heartbeat("100ms"), Ok(MIN_HEARTBEAT));
        assert!(parse_heartbeat("10ms").unwrap_err().contains("too short"));
        assert!(parse_heartbeat("often").is_err());
    }

    #[test]
    fn cli_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
