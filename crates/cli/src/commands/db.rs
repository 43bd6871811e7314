//! `hypergraph db backup`.

use anyhow::{bail, Result};
use serde_json::json;

use crate::args::BackupArgs;
use crate::db_location;
use crate::io::print_json;
use crate::store::location::DbLocation;
use crate::store::sqlite::SqliteStore;

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
