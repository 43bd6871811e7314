//! The `hypergraph` command line.
//!
//! Every read command takes `--json` and then prints exactly one JSON document on stdout. Exit
//! codes: 0 success, 1 a run that was waited for failed, 2 any other error (bad input, unknown
//! task, unreachable database, ...), printed as `error: ...` on stderr. Output to a pipe closed
//! early (`hypergraph runs list | head -1`) ends the process quietly with status 141, like
//! SIGPIPE does for C tools.
//!
//! Layout: [`args`] defines the commands (clap), [`commands`] holds one module per command group,
//! [`io`] writes to stdout and reads JSON arguments, [`render`] formats what is printed.

#[macro_use]
mod io;
mod args;
mod commands;
mod demo;
mod render;

// The library crates, under the names the modules of this binary use.
use hypergraph_build as builder;
use hypergraph_runtime::{
    bundle, capabilities, engine, limits, registry, replay, resume, retry, scheduler, store,
    worker, Hypergraph,
};

use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Result;
use clap::Parser as _;

use crate::args::{Cli, Command, DbCommand, EventsCommand, RunsCommand, WorkersCommand};
use crate::engine::{Engine, EngineOptions};
use crate::store::location::DbLocation;
use crate::store::{Durability, OpenOptions};
use crate::worker::WorkerOptions;

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

/// Logs to stderr at `warn`, `info` (-v) or `debug` (-vv) unless `RUST_LOG` says otherwise, in
/// color only on a terminal (a log file or pipe gets plain text). Below `debug`, sqlx's own
/// warning for every pooled connection a database outage breaks and PostgreSQL's notices
/// ("already exists, skipping") are left out: Hypergraph reports an outage once, itself.
fn init_tracing(verbose: u8) {
    let default = match verbose {
        0 => "warn,sqlx_core::pool=error",
        1 => "info,sqlx_core::pool=error,sqlx::postgres::notice=warn",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

/// The database path: `--db`, `$HYPERGRAPH_DB`, else under the user's data directory.
pub(crate) fn default_db_path() -> PathBuf {
    let base = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
        .unwrap_or_else(|| PathBuf::from("."));
    base.join("hypergraph").join("hypergraph.db")
}

/// Where the database is: `--db` (or `$HYPERGRAPH_DB`), else [`default_db_path`].
pub(crate) fn db_location(cli_db: &Option<String>) -> Result<DbLocation> {
    match cli_db {
        Some(text) => DbLocation::parse(text),
        None => Ok(DbLocation::Sqlite(default_db_path())),
    }
}

/// Opens the database at `location` and an engine with room for `max_instances` instances at
/// once.
async fn open(
    location: &DbLocation,
    cache_dir: &Option<PathBuf>,
    durability: Durability,
    max_instances: u32,
) -> Result<Hypergraph> {
    let options = OpenOptions {
        durability,
        ..OpenOptions::default()
    };
    let store = crate::store::open_with(location, &options).await?;
    let cache = cache_dir.clone().or_else(|| match &location {
        DbLocation::Sqlite(db) => Some(
            db.parent()
                .unwrap_or(Path::new("."))
                .join("hypergraph-cache"),
        ),
        DbLocation::SqliteMemory => None,
        // The database is elsewhere: compiled components are cached on this machine.
        DbLocation::Postgres(_) => default_db_path()
            .parent()
            .map(|d| d.join("hypergraph-cache")),
    });
    let engine = Engine::new(EngineOptions {
        cache_dir: cache,
        max_instances,
    })?;
    Ok(Hypergraph::with_engine(store, Arc::new(engine)))
}

/// Instances a process with a worker of `concurrency` slots may hold at once: every slot, as
/// many lingering workflows, and room for the CLI's own (replays, deploys).
fn instances_for(concurrency: usize) -> u32 {
    (2 * concurrency as u32).max(256) + 16
}

/// Runs `cli`'s command and returns the process's exit code: commands that need no database
/// (`build`, `new`, `replay`, `db backup`, `db copy`) run without opening one (the `db`
/// commands open the databases they name themselves); every other command opens
/// it, runs, and closes it however it ended.
async fn dispatch(cli: Cli) -> Result<i32> {
    match &cli.command {
        Command::Build(args) => return commands::project::build(args),
        Command::New(args) => return commands::project::new_project(args),
        Command::Replay(args) => {
            return commands::replay::replay_bundle(&cli.cache_dir, args).await
        }
        Command::Db(DbCommand::Backup(args)) => return commands::db::backup(&cli.db, args).await,
        Command::Db(DbCommand::Copy(args)) => {
            return commands::db::copy(args, cli.durability).await
        }
        _ => {}
    }
    let concurrency = match &cli.command {
        Command::Serve(args) => args.concurrency,
        Command::Worker(args) => args.concurrency,
        _ => WorkerOptions::default().concurrency,
    };
    let location = db_location(&cli.db)?;
    let hg = open(
        &location,
        &cli.cache_dir,
        cli.durability,
        instances_for(concurrency),
    )
    .await?;
    let code = run_command(&hg, &location, cli.command).await;
    // The database is left self-contained however the command ended.
    let closed = hg.store.close().await;
    let code = code?;
    closed?;
    Ok(code)
}

/// Runs a command that works on the opened database, at `location`.
async fn run_command(hg: &Hypergraph, location: &DbLocation, command: Command) -> Result<i32> {
    use commands::{deploy, events, replay, run, runs, worker, workers};
    let hg = hg.clone();
    match command {
        Command::Deploy(args) => deploy::deploy(&hg, *args).await,
        Command::Tasks(args) => deploy::tasks(&hg, args).await,
        Command::Run(args) => run::run(&hg, args).await,
        Command::Runs(RunsCommand::List(args)) => runs::list(&hg, args).await,
        Command::Runs(RunsCommand::Show(args)) => runs::show(&hg, args).await,
        Command::Runs(RunsCommand::Logs(args)) => runs::logs(&hg, args).await,
        Command::Runs(RunsCommand::Replay(args)) => replay::runs_replay(&hg, args).await,
        Command::Runs(RunsCommand::Export(args)) => runs::export(&hg, args).await,
        Command::Runs(RunsCommand::Resume(args)) => runs::resume(&hg, args).await,
        Command::Runs(RunsCommand::Cancel(args)) => runs::cancel(&hg, args).await,
        Command::Events(EventsCommand::Send(args)) => events::send(&hg, args).await,
        Command::Serve(args) => worker::serve(&hg, location, &args).await,
        Command::Workers(WorkersCommand::List(args)) => workers::list(&hg, args).await,
        Command::CheckUpgrade(args) => replay::check_upgrade(&hg, args).await,
        Command::Worker(args) => worker::worker(&hg, location, args).await,
        Command::Demo(args) => demo::run(&hg, args.examples).await,
        Command::Build(_) | Command::New(_) | Command::Replay(_) | Command::Db(_) => {
            unreachable!("handled above")
        }
    }
}
