//! `hypergraph db backup` and `hypergraph db copy`.

use std::io::{IsTerminal as _, Write as _};
use std::time::Instant;

use anyhow::{bail, Result};
use serde_json::json;

use crate::args::{BackupArgs, CopyArgs};
use crate::db_location;
use crate::io::print_json;
use crate::render;
use crate::store::copy::{sqlite_to_postgres, Progress};
use crate::store::location::DbLocation;
use crate::store::postgres::PgStore;
use crate::store::sqlite::SqliteStore;
use crate::store::{Durability, OpenOptions};

/// `hypergraph db backup <file>`.
pub(crate) async fn backup(cli_db: &Option<String>, args: &BackupArgs) -> Result<i32> {
    let location = db_location(cli_db)?;
    let path = match &location {
        DbLocation::Sqlite(path) => path,
        DbLocation::SqliteMemory => {
            bail!("an in-memory database cannot be backed up: it ends with the process")
        }
        DbLocation::Postgres(_) => bail!(
            "{location} is a PostgreSQL database: back it up with PostgreSQL's own tools \
             (pg_dump, or continuous archiving); `db backup` copies SQLite databases"
        ),
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

/// Tables with fewer rows than this copy without a progress line.
const PROGRESS_ROWS: u64 = 10_000;

/// `hypergraph db copy --from <sqlite> --to <postgres>`: refuses a source that does not exist
/// (creating nothing), a source that is not SQLite and a target that is not PostgreSQL before
/// opening either; then see [`sqlite_to_postgres`].
pub(crate) async fn copy(args: &CopyArgs, durability: Durability) -> Result<i32> {
    let from = DbLocation::parse(&args.from)?;
    let path = match &from {
        DbLocation::Sqlite(path) => path,
        DbLocation::SqliteMemory => bail!("--from: an in-memory database has nothing to copy"),
        DbLocation::Postgres(_) => bail!(
            "--from {from} is a PostgreSQL database: db copy moves a SQLite database into \
             PostgreSQL (copy between PostgreSQL databases with pg_dump and pg_restore)"
        ),
    };
    anyhow::ensure!(
        path.is_file(),
        "--from: there is no database at {}: nothing to copy",
        path.display()
    );
    let to = DbLocation::parse(&args.to)?;
    let DbLocation::Postgres(url) = &to else {
        bail!(
            "--to {to} is not a PostgreSQL database: db copy copies into postgres:// URLs \
             (to copy a SQLite database into another file, use `hypergraph db backup`)"
        );
    };
    let options = OpenOptions {
        durability,
        ..OpenOptions::default()
    };
    let target = PgStore::open_with(url, &options).await?;
    let source = SqliteStore::open_location_with(&from, &options).await?;
    let started = Instant::now();
    let terminal = std::io::stderr().is_terminal();
    let report = sqlite_to_postgres(&source, &target, |p: &Progress<'_>| {
        if terminal && p.total >= PROGRESS_ROWS {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\rcopying {}: {}/{} rows", p.table, p.copied, p.total);
            if p.copied == p.total {
                let _ = writeln!(err);
            }
        }
    })
    .await;
    let seconds = started.elapsed().as_secs_f64();
    source.close().await?;
    target.pool().close().await;
    let report = report?;
    if !report.live_workers.is_empty() {
        eprintln!(
            "warning: {} worker(s) were live on {from} while it was copied ({}): the copy holds \
             the database as of one moment, and what they did afterwards is not in it. Stop \
             them, and copy into a new schema again if they changed anything since.",
            report.live_workers.len(),
            report.live_workers.join(", ")
        );
    }
    if args.json.json {
        print_json(&json!({
            "from": from.to_string(),
            "to": to.to_string(),
            "seconds": seconds,
            "tables": report
                .tables
                .iter()
                .map(|t| (t.table.clone(), json!(t.rows)))
                .collect::<serde_json::Map<_, _>>(),
            "next_event_seq": report.next_event_seq,
            "live_workers": report.live_workers,
        }));
    } else {
        out!("{}", render::copy_table(&report));
        outln!(
            "copied {from} to {to} in {seconds:.2} s ({} runs, {} steps); point every machine \
             at it with --db {to}",
            report.rows("runs"),
            report.rows("steps"),
        );
    }
    Ok(0)
}
