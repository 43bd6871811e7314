//! The `hypergraph` command line.
//!
//! Every read command takes `--json` and then prints exactly one JSON document on stdout. Exit
//! codes: 0 success, 1 a run that was waited for failed, 2 any other error (bad input, unknown
//! task, unreachable database, ...), printed as `error: ...` on stderr. Output to a pipe closed
//! early (`hypergraph runs list | head -1`) ends the process quietly with status 141, like
//! SIGPIPE does for C tools.

/// `print!` to stdout through [`write_stdout`].
macro_rules! out {
    ($($arg:tt)*) => { $crate::write_stdout(format_args!($($arg)*)) };
}

/// `println!` to stdout through [`write_stdout`].
macro_rules! outln {
    () => { $crate::write_stdout(format_args!("\n")) };
    ($($arg:tt)*) => { $crate::write_stdout(format_args!("{}\n", format_args!($($arg)*))) };
}

mod demo;
mod ops;
mod render;

// The library crates, under the names the modules of this binary use.
use hypergraph_build as builder;
use hypergraph_runtime::{
    bundle, capabilities, engine, limits, registry, replay, resume, retry, scheduler, store,
    worker, Hypergraph,
};

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, Context as _, Result};
use clap::{Args, Parser, Subcommand};
use serde_json::{json, Value};

use crate::builder::{build_guest, BuildOptions, Language};
use crate::engine::{Engine, EngineOptions};
use crate::limits::{format_bytes, MAX_PAYLOAD_LIMIT};
use crate::replay::ReplayWith;
use crate::retry::{RetryOn, RetryPolicy};
use crate::scheduler::RunRequest;
use crate::store::location::DbLocation;
use crate::store::sqlite::SqliteStore;
use crate::store::{Micros, Policy, RunDetail, RunFilter, RunResult, Status, StepQuery};
use crate::worker::{Worker, WorkerOptions, MAX_CONCURRENCY};

/// Durable task runtime: every task is a WebAssembly component, every run is recorded.
#[derive(Parser, Debug)]
#[command(name = "hypergraph", version, about, long_about = None)]
pub struct Cli {
    /// The database: a SQLite file path or a sqlite:// URL
    /// [default: $XDG_DATA_HOME/hypergraph/hypergraph.db].
    #[arg(long, global = true, env = "HYPERGRAPH_DB")]
    db: Option<String>,

    /// Where compiled components are cached [default: `hypergraph-cache` beside the database].
    #[arg(long, global = true, env = "HYPERGRAPH_CACHE_DIR")]
    cache_dir: Option<PathBuf>,

    /// More logging on stderr (-v: info, -vv: debug); RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
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
    /// Safe to kill at any moment: unfinished steps are claimed again when their lease expires.
    Serve(ServeArgs),
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
    /// The database itself: backups.
    #[command(subcommand)]
    Db(DbCommand),
}

#[derive(Subcommand, Debug)]
enum DbCommand {
    /// Copy the database, as of one moment, into a new file with SQLite's online backup; other
    /// processes may go on using it meanwhile. The copy is a complete database (`--db <file>`).
    Backup(BackupArgs),
}

#[derive(Args, Debug)]
struct BackupArgs {
    /// The new file to write (it must not exist).
    file: PathBuf,
    #[command(flatten)]
    json: JsonFlag,
}

#[derive(Args, Debug)]
struct JsonFlag {
    /// Print one JSON document instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
struct DeployArgs {
    /// The component file (binary .wasm or .wat text), or a DAG workflow file (.toml).
    file: PathBuf,
    /// Deployment name; tasks are named `<name>/<function>`. For a DAG file (`.toml`) it is the
    /// workflow's name [default: the file's `name`].
    #[arg(long)]
    name: Option<String>,
    /// Memory cap per instance, e.g. `64MiB`, `1GiB` or bytes [default: 256MiB].
    #[arg(long, value_parser = parse_bytes)]
    memory: Option<u64>,
    /// Execution deadline per attempt, e.g. `500ms`, `30s`, `5m` [default: 60s].
    #[arg(long, value_parser = humantime::parse_duration)]
    timeout: Option<Duration>,
    /// Log lines kept per attempt [default: 1000].
    #[arg(long)]
    max_log_lines: Option<u32>,
    /// Longest log line kept; longer ones are cut, e.g. `64KiB` [default: 64KiB].
    #[arg(long, value_parser = parse_bytes)]
    max_log_line: Option<u64>,
    /// Log bytes kept per attempt [default: 1MiB].
    #[arg(long, value_parser = parse_bytes)]
    max_log_bytes: Option<u64>,
    /// Largest input accepted, in bytes of JSON [default: 16MiB, at most 64MiB].
    #[arg(long, value_parser = parse_bytes)]
    max_input: Option<u64>,
    /// Largest output (or error value) of an attempt, in bytes of JSON [default: 16MiB].
    #[arg(long, value_parser = parse_bytes)]
    max_output: Option<u64>,
    /// Key-value bytes (keys and values) one attempt may write [default: 16MiB].
    #[arg(long, value_parser = parse_bytes)]
    max_kv_write: Option<u64>,
    /// Lost leases (worker died or stalled) a step survives before it fails [default: 3].
    #[arg(long)]
    max_lost_leases: Option<u32>,
    /// Host the tasks may send HTTP requests to (repeatable): `host`, `host:port` or
    /// `*.domain` [default: none].
    #[arg(long = "allow-http", value_name = "HOST")]
    allow_http: Vec<String>,
    /// Attempts per step, the first included [default: 1, no retries].
    #[arg(long)]
    max_attempts: Option<u32>,
    /// Delay before the first retry, doubling per retry, with jitter [default: 1s].
    #[arg(long, value_parser = humantime::parse_duration)]
    backoff: Option<Duration>,
    /// Longest delay between retries [default: 60s].
    #[arg(long, value_parser = humantime::parse_duration)]
    max_backoff: Option<Duration>,
    /// Longest a step may wait in the queue before it starts, e.g. `5m` [default: unbounded].
    #[arg(long, value_parser = humantime::parse_duration)]
    schedule_to_start: Option<Duration>,
    /// Longest a whole run may take, e.g. `1h`; then it fails and its unfinished steps are
    /// cancelled [default: unbounded].
    #[arg(long, value_parser = humantime::parse_duration)]
    run_timeout: Option<Duration>,
    /// Which failures are retried, comma-separated: trap, timeout, retryable (application errors
    /// marked retryable), application (every application error) [default: trap,timeout,retryable].
    #[arg(long, value_delimiter = ',', value_parser = parse_retry_on)]
    retry_on: Option<Vec<RetryOn>>,
    #[command(flatten)]
    json: JsonFlag,
}

#[derive(Args, Debug)]
struct RunArgs {
    /// Task name: `<deployment>/<function>` or `<deployment>/<interface>.<function>`.
    task: String,
    /// Input JSON: an object keyed by parameter name (or the bare value for one parameter);
    /// `@file` reads it from a file, `-` from stdin.
    #[arg(long, short)]
    input: Option<String>,
    /// Metadata tag `key=value` (repeatable), for filtering with `runs list --meta`.
    #[arg(long = "meta", value_parser = parse_key_value)]
    meta: Vec<(String, String)>,
    /// Execute the run in this process and wait for its result.
    #[arg(long)]
    wait: bool,
    /// With --wait: give up waiting after this long (the run keeps its state).
    #[arg(long, value_parser = humantime::parse_duration, requires = "wait")]
    wait_timeout: Option<Duration>,
    #[command(flatten)]
    json: JsonFlag,
}

#[derive(Subcommand, Debug)]
enum RunsCommand {
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
struct ResumeArgs {
    /// Run ids; without any, the filters select the runs.
    ids: Vec<String>,
    /// Move the runs to the newest version of their deployments instead of the pinned one.
    #[arg(long)]
    latest: bool,
    /// With no ids: only runs with this status [default: failed].
    #[arg(long)]
    status: Option<Status>,
    /// With no ids: only runs of this task, or of every task of this deployment.
    #[arg(long)]
    task: Option<String>,
    /// With no ids: only runs created within this long (`10m`, `2h`) or since an RFC 3339 time.
    #[arg(long, value_parser = parse_since)]
    since: Option<Micros>,
    /// With no ids: only runs tagged `key=value` (repeatable; all must match).
    #[arg(long = "meta", value_parser = parse_key_value)]
    meta: Vec<(String, String)>,
    #[command(flatten)]
    json: JsonFlag,
}

#[derive(Subcommand, Debug)]
enum EventsCommand {
    /// Send an event: every workflow waiting for this name wakes up with the payload.
    Send(SendEventArgs),
}

#[derive(Args, Debug)]
struct SendEventArgs {
    /// The event name workflows wait for.
    name: String,
    /// The payload, JSON [default: null]; `@file` reads it from a file, `-` from stdin.
    #[arg(long)]
    payload: Option<String>,
    #[command(flatten)]
    json: JsonFlag,
}

#[derive(Args, Debug)]
struct ServeArgs {
    /// Steps executed at once (1 to 1024).
    #[arg(long, default_value_t = 32, value_parser = parse_concurrency)]
    concurrency: usize,
    /// How long a claimed step stays leased without renewal: after a crash, its steps are
    /// claimed again this long after the last renewal.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "30s")]
    lease: Duration,
    /// How long a workflow joining a few unfinished children waits for them in place (keeping
    /// its instance) before it suspends; `0s` suspends at once.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "200ms")]
    linger: Duration,
}

#[derive(Args, Debug)]
struct ExportArgs {
    /// The run id.
    id: String,
    /// The bundle file to write [default: <run id>.hgbundle].
    #[arg(long, short)]
    output: Option<PathBuf>,
    #[command(flatten)]
    json: JsonFlag,
}

#[derive(Args, Debug)]
struct BundleArgs {
    /// The bundle file.
    bundle: PathBuf,
    /// Replay against this component file instead of the one in the bundle.
    #[arg(long)]
    component: Option<PathBuf>,
    /// Longest an attempt may run in the replay, whatever the bundle's policy says.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "60s")]
    timeout: Duration,
    /// Most memory an instance may use in the replay, whatever the bundle's policy says.
    #[arg(long, value_parser = parse_bytes, default_value = "256MiB")]
    memory: u64,
    #[command(flatten)]
    json: JsonFlag,
}

#[derive(Args, Debug)]
struct ReplayArgs {
    /// The run id.
    id: String,
    /// Replay against this component file instead of the pinned one.
    #[arg(long, conflicts_with = "version")]
    component: Option<PathBuf>,
    /// Replay against this version of the run's deployment instead of the pinned one.
    #[arg(long)]
    version: Option<i64>,
    /// Instead of checking the run, re-run it from its failed steps (`runs resume <id>`).
    #[arg(long, conflicts_with_all = ["component", "version"])]
    resume: bool,
    /// With --resume: on the newest version of the deployment instead of the pinned one.
    #[arg(long, requires = "resume")]
    latest: bool,
    #[command(flatten)]
    json: JsonFlag,
}

#[derive(Args, Debug)]
struct CheckUpgradeArgs {
    /// The deployment whose runs to replay.
    deployment: String,
    /// The candidate component file (.wasm or .wat).
    component: PathBuf,
    /// How many of the newest runs to replay (in-flight runs are always included).
    #[arg(long, default_value_t = 20)]
    last: u32,
    #[command(flatten)]
    json: JsonFlag,
}

#[derive(Args, Debug)]
struct ListArgs {
    /// Only runs with this status (queued, running, succeeded, failed, cancelled).
    #[arg(long)]
    status: Option<Status>,
    /// Only runs of this task, or of every task of this deployment.
    #[arg(long)]
    task: Option<String>,
    /// Only runs created within this long (`10m`, `2h`, `1day`) or since an RFC 3339 time.
    #[arg(long, value_parser = parse_since)]
    since: Option<Micros>,
    /// Only runs tagged `key=value` (repeatable; all must match).
    #[arg(long = "meta", value_parser = parse_key_value)]
    meta: Vec<(String, String)>,
    /// At most this many runs.
    #[arg(long, default_value_t = 50)]
    limit: u32,
    #[command(flatten)]
    json: JsonFlag,
}

#[derive(Args, Debug)]
struct RunIdArgs {
    /// The run id.
    id: String,
    #[command(flatten)]
    json: JsonFlag,
}

#[derive(Args, Debug)]
struct ShowArgs {
    /// The run id.
    id: String,
    /// Show at most this many steps (0: all); the rest are counted by status.
    #[arg(long, default_value_t = 1000)]
    steps: u32,
    /// Only steps with this status (queued, running, waiting, succeeded, failed, cancelled).
    #[arg(long)]
    step_status: Option<Status>,
    #[command(flatten)]
    json: JsonFlag,
}

#[derive(Args, Debug)]
struct WorkerArgs {
    /// Steps executed at once (1 to 1024).
    #[arg(long, default_value_t = 32, value_parser = parse_concurrency)]
    concurrency: usize,
    /// Stop when there is nothing left to run instead of waiting for more.
    #[arg(long)]
    until_idle: bool,
    #[command(flatten)]
    json: JsonFlag,
}

#[derive(Args, Debug)]
struct BuildArgs {
    /// The task project directory: a Rust crate (Cargo.toml), a Python project (pyproject.toml,
    /// or app.py with a wit/), a JavaScript project (package.json), a Go module (go.mod) or C
    /// sources with a wit/.
    dir: PathBuf,
    /// The project's language (rust, python, js, c, go) [default: detected from its files].
    #[arg(long, value_parser = parse_language)]
    language: Option<Language>,
    /// Debug build instead of release.
    #[arg(long)]
    debug: bool,
    /// Cargo features of the guest crate to enable (comma-separated or repeated).
    #[arg(long, value_delimiter = ',')]
    features: Vec<String>,
    #[command(flatten)]
    json: JsonFlag,
}

#[derive(Args, Debug)]
struct NewArgs {
    /// The language: rust, python, js, c or go.
    #[arg(value_parser = parse_language)]
    language: Language,
    /// The directory to create (its name names the project, its world and its deployment).
    dir: PathBuf,
    /// A workflow project: its world includes hypergraph:task/workflow and it fans out children.
    #[arg(long)]
    workflow: bool,
}

#[derive(Args, Debug)]
struct DemoArgs {
    /// The examples directory [default: ./examples, else the one in the source tree].
    #[arg(long)]
    examples: Option<PathBuf>,
}

/// Parses the command line, runs it and exits with the documented code.
fn main() -> ! {
    let cli = Cli::parse();
    init_tracing(cli.verbose);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("starting the tokio runtime");
    let code = match runtime.block_on(dispatch(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            2
        }
    };
    drop(runtime);
    std::process::exit(code)
}

fn init_tracing(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

/// The database path: `--db`, `$HYPERGRAPH_DB`, else under the user's data directory.
pub fn default_db_path() -> PathBuf {
    let base = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
        .unwrap_or_else(|| PathBuf::from("."));
    base.join("hypergraph").join("hypergraph.db")
}

/// Where the database is: `--db` (or `$HYPERGRAPH_DB`), else [`default_db_path`].
fn db_location(cli_db: &Option<String>) -> Result<DbLocation> {
    match cli_db {
        Some(text) => DbLocation::parse(text),
        None => Ok(DbLocation::Sqlite(default_db_path())),
    }
}

/// Opens the database and an engine with room for `max_instances` instances at once.
async fn open(
    cli_db: &Option<String>,
    cache_dir: &Option<PathBuf>,
    max_instances: u32,
) -> Result<Hypergraph> {
    let location = db_location(cli_db)?;
    let store = SqliteStore::open_location(&location).await?;
    let cache = cache_dir.clone().or_else(|| match &location {
        DbLocation::Sqlite(db) => Some(
            db.parent()
                .unwrap_or(Path::new("."))
                .join("hypergraph-cache"),
        ),
        DbLocation::SqliteMemory => None,
    });
    let engine = Engine::new(EngineOptions {
        cache_dir: cache,
        max_instances,
    })?;
    Ok(Hypergraph::with_engine(Arc::new(store), Arc::new(engine)))
}

/// Instances a process with a worker of `concurrency` slots may hold at once: every slot, as
/// many lingering workflows, and room for the CLI's own (replays, deploys).
fn instances_for(concurrency: usize) -> u32 {
    (2 * concurrency as u32).max(256) + 16
}

async fn dispatch(cli: Cli) -> Result<i32> {
    match &cli.command {
        Command::Build(args) => return build(args),
        Command::New(args) => return new_project(args),
        Command::Replay(args) => return replay_bundle(&cli.cache_dir, args).await,
        Command::Db(DbCommand::Backup(args)) => return backup(&cli.db, args).await,
        _ => {}
    }
    let concurrency = match &cli.command {
        Command::Serve(args) => args.concurrency,
        Command::Worker(args) => args.concurrency,
        _ => WorkerOptions::default().concurrency,
    };
    let hg = open(&cli.db, &cli.cache_dir, instances_for(concurrency)).await?;
    let code = run_command(&hg, cli.command).await;
    // The database is left self-contained however the command ended.
    let closed = hg.store.close().await;
    let code = code?;
    closed?;
    Ok(code)
}

async fn run_command(hg: &Hypergraph, command: Command) -> Result<i32> {
    let hg = hg.clone();
    match command {
        Command::Deploy(args) => deploy(&hg, *args).await,
        Command::Tasks(args) => tasks(&hg, args).await,
        Command::Run(args) => run(&hg, args).await,
        Command::Runs(RunsCommand::List(args)) => runs_list(&hg, args).await,
        Command::Runs(RunsCommand::Show(args)) => runs_show(&hg, args).await,
        Command::Runs(RunsCommand::Logs(args)) => runs_logs(&hg, args).await,
        Command::Runs(RunsCommand::Replay(args)) => runs_replay(&hg, args).await,
        Command::Runs(RunsCommand::Export(args)) => runs_export(&hg, args).await,
        Command::Runs(RunsCommand::Resume(args)) => runs_resume(&hg, args).await,
        Command::Runs(RunsCommand::Cancel(args)) => {
            ops::runs_cancel(&hg, &args.id, args.json.json).await
        }
        Command::Events(EventsCommand::Send(args)) => {
            let payload = args
                .payload
                .map(|text| read_json_arg(&text, "--payload"))
                .transpose()?;
            ops::send_event(&hg, &args.name, payload.as_ref(), args.json.json).await
        }
        Command::Serve(args) => ops::serve(&hg, &args).await,
        Command::CheckUpgrade(args) => check_upgrade(&hg, args).await,
        Command::Worker(args) => worker(&hg, args).await,
        Command::Demo(args) => demo::run(&hg, args.examples).await,
        Command::Build(_) | Command::New(_) | Command::Replay(_) | Command::Db(_) => {
            unreachable!("handled above")
        }
    }
}

/// `hypergraph db backup <file>`.
async fn backup(cli_db: &Option<String>, args: &BackupArgs) -> Result<i32> {
    let location = db_location(cli_db)?;
    let DbLocation::Sqlite(path) = &location else {
        bail!("an in-memory database cannot be backed up: it ends with the process");
    };
    anyhow::ensure!(
        path.exists(),
        "there is no database at {}: nothing to back up",
        path.display()
    );
    let store = SqliteStore::open_location(&location).await?;
    let bytes = store.backup(&args.file).await;
    store.close().await?;
    let bytes = bytes?;
    if args.json.json {
        print_json(
            &json!({ "database": location.to_string(), "backup": args.file, "bytes": bytes }),
        );
    } else {
        outln!(
            "backed up {location} to {} ({} KiB); it is a complete database: open it with --db {}",
            args.file.display(),
            bytes / 1024,
            args.file.display()
        );
    }
    Ok(0)
}

/// Writes to stdout; a closed pipe ends the process with status 141 instead of a panic.
fn write_stdout(args: std::fmt::Arguments) {
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

fn print_json(value: &impl serde::Serialize) {
    outln!(
        "{}",
        serde_json::to_string_pretty(value).expect("values serialize")
    );
}

async fn deploy(hg: &Hypergraph, args: DeployArgs) -> Result<i32> {
    let bytes = std::fs::read(&args.file)
        .with_context(|| format!("cannot read component file `{}`", args.file.display()))?;
    let policy = Policy {
        memory_limit_bytes: args.memory,
        timeout_ms: args.timeout.map(|d| d.as_millis() as u64),
        max_log_lines: args.max_log_lines,
        max_log_line_bytes: args.max_log_line,
        max_log_bytes: args.max_log_bytes,
        max_input_bytes: args.max_input,
        max_output_bytes: args.max_output,
        max_kv_write_bytes: args.max_kv_write,
        max_lost_leases: args.max_lost_leases,
        http_allow: args.allow_http,
        retry: RetryPolicy {
            max_attempts: args.max_attempts,
            backoff: args.backoff,
            max_backoff: args.max_backoff,
            retry_on: args.retry_on,
        },
        schedule_to_start_ms: args.schedule_to_start.map(|d| d.as_millis() as u64),
        run_timeout_ms: args.run_timeout.map(|d| d.as_millis() as u64),
    };
    let is_dag = args.file.extension().is_some_and(|e| e == "toml");
    let report = if is_dag {
        let text = String::from_utf8(bytes).context("a DAG file must be UTF-8 text")?;
        hg.deploy_dag(args.name.as_deref(), &text, &policy).await
    } else {
        let name = args
            .name
            .as_deref()
            .context("--name is required for a component: tasks are named `<name>/<function>`")?;
        hg.deploy(name, &bytes, &policy).await
    }
    .with_context(|| format!("cannot deploy `{}`", args.file.display()))?;
    if args.json.json {
        print_json(&report);
        return Ok(0);
    }
    let d = &report.deployment;
    if report.created {
        outln!(
            "deployed {} version {} (digest {})",
            d.name,
            d.version,
            render::short_digest(&d.digest)
        );
    } else {
        outln!(
            "{} version {} already has this component and policy; nothing changed",
            d.name,
            d.version
        );
    }
    out!("{}", render::tasks_table(&report.tasks));
    Ok(0)
}

async fn tasks(hg: &Hypergraph, args: JsonFlag) -> Result<i32> {
    let tasks = hg.tasks().await?;
    if args.json {
        print_json(&tasks);
    } else if tasks.is_empty() {
        outln!("no tasks deployed yet: hypergraph deploy <file.wasm> --name <name>");
    } else {
        out!("{}", render::tasks_table(&tasks));
    }
    Ok(0)
}

fn read_input(input: Option<String>) -> Result<Value> {
    match input {
        Some(text) => read_json_arg(&text, "--input"),
        None => Ok(Value::Null),
    }
}

/// Reads the JSON value of argument `flag`: the text itself, `@file` for a file's contents or `-`
/// for stdin. Text longer than any deployment accepts is refused before it is parsed.
fn read_json_arg(text: &str, flag: &str) -> Result<Value> {
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

async fn run(hg: &Hypergraph, args: RunArgs) -> Result<i32> {
    let request = RunRequest {
        task: args.task,
        input: read_input(args.input)?,
        meta: args.meta,
    };
    if !args.wait {
        let id = hg.submit(&request).await?;
        if args.json.json {
            print_json(&json!({ "run_id": id, "status": "queued" }));
        } else {
            outln!("{id}");
            eprintln!(
                "queued; a worker executes it (`hypergraph worker`). Follow it with \
                 `hypergraph runs show {id}`, or use `run --wait` to execute it here."
            );
        }
        return Ok(0);
    }

    let worker = Worker::new(hg.clone(), WorkerOptions::default()).spawn();
    let waited = async {
        let id = hg.submit(&request).await?;
        wait_with_progress(hg, &id, args.wait_timeout).await
    }
    .await;
    worker.stop().await?;
    let run = waited?;
    if args.json.json {
        print_json(&render::run_result_json(&run));
    } else {
        out!("{}", render::run_result_text(&run));
    }
    Ok(if run.status == Status::Succeeded {
        0
    } else {
        1
    })
}

/// Waits for a run, telling the user on stderr what it is doing when the wait gets long.
async fn wait_with_progress(
    hg: &Hypergraph,
    id: &str,
    limit: Option<Duration>,
) -> Result<RunResult> {
    let started = Instant::now();
    let wait = hg.wait(id, limit);
    tokio::pin!(wait);
    let mut ticker = tokio::time::interval(Duration::from_secs(2));
    ticker.tick().await;
    loop {
        tokio::select! {
            run = &mut wait => return run,
            _ = ticker.tick() => {
                let status = hg.store.run_status(id).await?.map(|s| s.to_string()).unwrap_or_default();
                eprintln!("waiting for run {id}: {status} ({} s)", started.elapsed().as_secs());
            }
        }
    }
}

async fn runs_list(hg: &Hypergraph, args: ListArgs) -> Result<i32> {
    let filter = RunFilter {
        status: args.status,
        task: args.task,
        since: args.since,
        meta: args.meta,
        limit: args.limit,
    };
    let runs = hg.store.list_runs(&filter).await?;
    if args.json.json {
        print_json(&runs);
    } else if runs.is_empty() {
        outln!("no runs match");
    } else {
        out!("{}", render::runs_table(&runs));
    }
    Ok(0)
}

async fn runs_resume(hg: &Hypergraph, args: ResumeArgs) -> Result<i32> {
    let resumed = if args.ids.is_empty() {
        let filter = RunFilter {
            status: args.status,
            task: args.task,
            since: args.since,
            meta: args.meta,
            limit: 0,
        };
        hg.resume_runs(&filter, args.latest).await?
    } else {
        let mut resumed = Vec::with_capacity(args.ids.len());
        for id in &args.ids {
            resumed.push(hg.resume_run(id, args.latest).await?);
        }
        resumed
    };
    ops::print_resumed(&resumed, args.json.json)
}

async fn find_run(hg: &Hypergraph, id: &str) -> Result<RunDetail> {
    match hg.store.run(id).await? {
        Some(run) => Ok(run),
        None => bail!("run `{id}` not found (`hypergraph runs list` shows recent runs)"),
    }
}

async fn runs_show(hg: &Hypergraph, args: ShowArgs) -> Result<i32> {
    let query = StepQuery {
        status: args.step_status,
        limit: args.steps,
    };
    let Some(run) = hg.store.run_view(&args.id, &query).await? else {
        bail!(
            "run `{}` not found (`hypergraph runs list` shows recent runs)",
            args.id
        );
    };
    if args.json.json {
        print_json(&render::run_detail_json(&run));
    } else {
        out!("{}", render::run_detail_text(&run));
    }
    Ok(0)
}

async fn runs_logs(hg: &Hypergraph, args: RunIdArgs) -> Result<i32> {
    find_run(hg, &args.id).await?;
    let logs = hg.store.run_logs(&args.id).await?;
    if args.json.json {
        print_json(&logs);
    } else if logs.is_empty() {
        outln!("run {} has no log lines", args.id);
    } else {
        out!("{}", render::logs_text(&logs));
    }
    Ok(0)
}

fn read_component(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read component file `{}`", path.display()))
}

async fn runs_replay(hg: &Hypergraph, args: ReplayArgs) -> Result<i32> {
    if args.resume {
        let resumed = vec![hg.resume_run(&args.id, args.latest).await?];
        return ops::print_resumed(&resumed, args.json.json);
    }
    let with = match (&args.component, args.version) {
        (Some(path), _) => ReplayWith::Component(read_component(path)?),
        (None, Some(version)) => ReplayWith::Version(version),
        (None, None) => ReplayWith::Pinned,
    };
    let report = hg.replay_run(&args.id, &with).await?;
    if args.json.json {
        print_json(&report);
    } else {
        out!("{}", render::replay_text(&report));
    }
    Ok(if report.identical() { 0 } else { 1 })
}

async fn runs_export(hg: &Hypergraph, args: ExportArgs) -> Result<i32> {
    let bundle = hg.export_run(&args.id).await?;
    let path = args
        .output
        .unwrap_or_else(|| PathBuf::from(format!("{}.hgbundle", bundle.run.run_id)));
    bundle::write(&bundle, &path)?;
    let bytes = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    if args.json.json {
        print_json(&json!({ "bundle": path, "bytes": bytes, "run_id": bundle.run.run_id }));
    } else {
        outln!(
            "wrote {} ({} KiB): run {} with its component, journals and logs",
            path.display(),
            bytes / 1024,
            bundle.run.run_id
        );
    }
    Ok(0)
}

/// Replays a bundle with an engine of its own: no database is opened, nothing is written. The
/// bundle comes from elsewhere: its limits are capped by this host's (`--timeout`, `--memory`).
async fn replay_bundle(cache_dir: &Option<PathBuf>, args: &BundleArgs) -> Result<i32> {
    let mut bundle = bundle::read(&args.bundle)?;
    let capped = replay::cap_limits(&mut bundle.run.policy, args.timeout, args.memory);
    for note in capped {
        eprintln!("note: {note}");
    }
    let engine = Engine::new(EngineOptions {
        cache_dir: cache_dir.clone(),
        ..EngineOptions::default()
    })?;
    let component = match &args.component {
        Some(path) => read_component(path)?,
        None => bundle.component.clone(),
    };
    let prepared = engine.prepare_bytes(&component).await?;
    let report = replay::replay(&engine, &prepared, &bundle.run).await?;
    if args.json.json {
        print_json(&report);
    } else {
        out!("{}", render::replay_text(&report));
    }
    Ok(if report.identical() { 0 } else { 1 })
}

async fn check_upgrade(hg: &Hypergraph, args: CheckUpgradeArgs) -> Result<i32> {
    let bytes = read_component(&args.component)?;
    let report = hg
        .check_upgrade(&args.deployment, &bytes, args.last)
        .await?;
    if args.json.json {
        print_json(&report);
    } else {
        out!("{}", render::upgrade_text(&report));
    }
    Ok(if report.diverged == 0 { 0 } else { 1 })
}

async fn worker(hg: &Hypergraph, args: WorkerArgs) -> Result<i32> {
    let worker = Worker::new(
        hg.clone(),
        WorkerOptions {
            concurrency: args.concurrency,
            ..WorkerOptions::default()
        },
    );
    if !args.json.json {
        eprintln!(
            "worker {} started (concurrency {}){}",
            worker.info().id,
            args.concurrency,
            if args.until_idle {
                ", stops when idle"
            } else {
                "; Ctrl-C stops it"
            }
        );
    }
    let stats = if args.until_idle {
        worker.run_until_idle().await?
    } else {
        worker
            .run_until(async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await?
    };
    if args.json.json {
        print_json(&stats);
    } else {
        eprintln!(
            "worker stopped: {} executed, {} succeeded, {} failed, {} suspended, {} discarded (stale or cancelled attempts)",
            stats.executed, stats.succeeded, stats.failed, stats.suspended, stats.fenced
        );
    }
    Ok(0)
}

fn build(args: &BuildArgs) -> Result<i32> {
    let started = Instant::now();
    let output = build_guest(
        &args.dir,
        &BuildOptions {
            release: !args.debug,
            features: args.features.clone(),
            language: args.language,
            ..BuildOptions::default()
        },
    )?;
    let size = std::fs::metadata(&output).map(|m| m.len()).unwrap_or(0);
    if args.json.json {
        print_json(
            &json!({ "component": output, "bytes": size, "seconds": started.elapsed().as_secs_f64() }),
        );
    } else {
        outln!("{}", output.display());
        if std::io::stderr().is_terminal() {
            eprintln!(
                "built in {:.1} s ({} KiB); deploy it with: hypergraph deploy {} --name <name>",
                started.elapsed().as_secs_f64(),
                size / 1024,
                output.display()
            );
        }
    }
    Ok(0)
}

fn new_project(args: &NewArgs) -> Result<i32> {
    let project = crate::builder::scaffold::new_project(args.language, &args.dir, args.workflow)?;
    let dir = args.dir.display();
    outln!(
        "created {} {} project `{}` in {dir}",
        args.language,
        if args.workflow { "workflow" } else { "task" },
        project.name
    );
    for file in project
        .files
        .iter()
        .filter(|f| !f.starts_with(".hypergraph"))
    {
        outln!("  {}", file.display());
    }
    outln!("next:");
    outln!(
        "  hypergraph deploy \"$(hypergraph build {dir})\" --name {}",
        project.name
    );
    outln!(
        "  hypergraph run {}/greet --input '\"Ada\"' --wait",
        project.name
    );
    Ok(0)
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
    fn cli_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
