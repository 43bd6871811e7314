//! `hypergraph db copy`: moving an embedded SQLite database into PostgreSQL, history included.
//!
//! [`sqlite_to_postgres`] copies every table of the schema (components, deployments, runs and
//! their metadata, steps, attempts, journals, logs, workers, key-value data with its versions and
//! the `kv_clock` counter, events) from a [`SqliteStore`] into a [`PgStore`], keeping every value
//! as it is (ids, timestamps, JSON text, bytes), so the copied runs read, list and replay on
//! PostgreSQL exactly as they did on SQLite.
//!
//! # Contract
//!
//! - **Consistent.** The source is read in one SQLite read transaction: the copy is the database
//!   as of one moment, even while other processes write to it (in WAL mode readers never block
//!   writers). What they write after that moment is not copied, so stop the workers before
//!   switching to the copy.
//! - **All or nothing.** The target is written in one PostgreSQL transaction, which first locks
//!   every table (`EXCLUSIVE`: others may read, nobody may write) and checks that they hold no
//!   Hypergraph data; it commits only once every table is copied and its row count checked.
//! - **Never merges.** A target holding any run, deployment, key, event, worker, ... (or whose
//!   `kv_clock` moved) is refused and left unchanged: give a new database or schema.
//! - **Complete.** The tables copied are checked against both schemas before anything is
//!   written: a table or column one backend has and the other lacks is an error, not a silent
//!   omission.
//! - **Counters continue.** The `events.seq` identity is advanced past the copied events (and
//!   past any event SQLite numbered and no longer holds), and `kv_clock` is copied, so new events
//!   and key-value versions on PostgreSQL follow the copied ones.
//!
//! Rows are streamed with `COPY ... FROM STDIN` (text format) in chunks, read on a blocking
//! thread while the previous chunk is written, so a large database copies at the speed of
//! PostgreSQL's bulk load. The target's foreign keys are dropped for the load and added back
//! before the commit, in the same transaction: adding one checks every row in one pass, where
//! keeping it checks each row on its own (four times slower for a database of 10,000 runs).

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::{anyhow, bail, ensure, Context, Result};
use rusqlite::types::ValueRef;
use rusqlite::Connection;
use serde::Serialize;
use sqlx::Row;

use crate::postgres::PgStore;
use crate::sqlite::SqliteStore;
use crate::Store;
use hypergraph_core::worker::WorkerState;

/// Every table of the schema, parents before the tables that reference them (the target's
/// foreign keys are checked as rows arrive).
pub const TABLES: [&str; 12] = [
    "components",
    "deployments",
    "runs",
    "run_meta",
    "steps",
    "attempts",
    "journal",
    "logs",
    "workers",
    "kv",
    "kv_clock",
    "events",
];

/// Tables each backend has for its own bookkeeping, never copied.
const OWN_TABLES: [&str; 2] = ["_sqlx_migrations", "sqlite_sequence"];

/// About this many bytes of rows are read before they are handed to PostgreSQL.
const CHUNK_BYTES: usize = 1 << 20;

/// Chunks read ahead of the one PostgreSQL is loading.
const READ_AHEAD: usize = 4;

/// How long the copy waits for a lock on the target's tables before giving up (something else
/// is using the target).
const LOCK_TIMEOUT: &str = "10s";

/// How far a copy has got, reported after every chunk loaded.
#[derive(Clone, Debug)]
pub struct Progress<'a> {
    /// The table being copied.
    pub table: &'a str,
    /// Its rows loaded so far.
    pub copied: u64,
    /// Its rows in the source.
    pub total: u64,
}

/// What a finished copy moved.
#[derive(Clone, Debug, Serialize)]
pub struct CopyReport {
    /// Rows copied per table, in [`TABLES`] order.
    pub tables: Vec<TableCount>,
    /// The sequence number the target's next event gets.
    pub next_event_seq: i64,
    /// Workers of the source that were live when it was read: whatever they did after that
    /// moment is not in the copy.
    pub live_workers: Vec<String>,
}

/// Rows copied into one table.
#[derive(Clone, Debug, Serialize)]
pub struct TableCount {
    pub table: String,
    pub rows: u64,
}

impl CopyReport {
    /// Rows copied into `table` (0 for a table not copied).
    pub fn rows(&self, table: &str) -> u64 {
        self.tables
            .iter()
            .find(|t| t.table == table)
            .map_or(0, |t| t.rows)
    }
}

/// A column's PostgreSQL type, which decides how a SQLite value is written for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PgType {
    Text,
    BigInt,
    Bytea,
}

/// One table to copy: its name and its columns with their target types, in the target's order.
#[derive(Clone, Debug)]
struct Table {
    name: &'static str,
    columns: Vec<(String, PgType)>,
}

impl Table {
    /// The quoted column list, as both dialects take it.
    fn column_list(&self) -> String {
        let quoted: Vec<String> = self
            .columns
            .iter()
            .map(|(c, _)| format!("\"{c}\""))
            .collect();
        quoted.join(", ")
    }
}

/// What was read from the source before its rows: row counts per table (in [`TABLES`] order)
/// and the highest event sequence number SQLite ever handed out.
struct Snapshot {
    counts: Vec<u64>,
    last_event_seq: i64,
}

/// Rows of one table in COPY text format; `last` on the table's final chunk (which may hold no
/// rows).
struct Chunk {
    table: usize,
    data: Vec<u8>,
    rows: u64,
    last: bool,
}

/// Copies the whole database of `source` into `target`, which must hold no Hypergraph data (see
/// the module docs for the contract). Both stores are open, so both schemas are migrated to this
/// binary's version. `progress` is called after every chunk loaded into the target.
///
/// Fails, leaving the target as it was, when the target holds data, a lock on it is not granted
/// within [`LOCK_TIMEOUT`], the schemas differ, a value cannot be represented on PostgreSQL (a
/// NUL character in text, text that is not UTF-8, a non-integer in an integer column), or a
/// connection fails.
pub async fn sqlite_to_postgres(
    source: &SqliteStore,
    target: &PgStore,
    mut progress: impl FnMut(&Progress<'_>),
) -> Result<CopyReport> {
    let from = source.location().to_string();
    let to = target.location().to_string();
    let live_workers: Vec<String> = source
        .workers(Duration::from_secs(3600))
        .await?
        .into_iter()
        .filter(|w| w.state == WorkerState::Live)
        .map(|w| w.info.id)
        .collect();
    let tables = target_tables(target).await?;

    // The source's snapshot starts with its first read, and every later read shares it.
    let conn = source
        .reader_connection()
        .with_context(|| format!("cannot open {from} to copy it"))?;
    let checked = tables.clone();
    let (conn, snapshot) = tokio::task::spawn_blocking(move || -> Result<_> {
        conn.execute_batch("BEGIN DEFERRED")?;
        check_source_schema(&conn, &checked)?;
        let snapshot = read_snapshot(&conn)?;
        Ok((conn, snapshot))
    })
    .await
    .context("the reading thread failed")?
    .with_context(|| format!("cannot read {from}"))?;

    let mut tx = target.pool().begin().await?;
    lock_and_check_empty(&mut tx, &to).await?;
    // The migrations seed kv_clock; the copy brings the source's row instead.
    sqlx::query("DELETE FROM kv_clock")
        .execute(&mut *tx)
        .await?;
    let foreign_keys = drop_foreign_keys(&mut tx).await?;

    let (sender, mut receiver) = tokio::sync::mpsc::channel::<Chunk>(READ_AHEAD);
    let read_tables = tables.clone();
    let reader = tokio::task::spawn_blocking(move || read_rows(&conn, &read_tables, &sender));

    let mut counts = Vec::with_capacity(tables.len());
    for (index, table) in tables.iter().enumerate() {
        let total = snapshot.counts[index];
        let mut copy = tx
            .copy_in_raw(&format!(
                "COPY {} ({}) FROM STDIN",
                table.name,
                table.column_list()
            ))
            .await?;
        let mut copied = 0;
        loop {
            let Some(chunk) = receiver.recv().await else {
                copy.abort("the source could not be read").await.ok();
                let failed = reader.await.context("the reading thread failed")?;
                return Err(failed
                    .err()
                    .unwrap_or_else(|| anyhow!("the reading thread ended early"))
                    .context(format!("cannot read {from}")));
            };
            debug_assert_eq!(chunk.table, index);
            if !chunk.data.is_empty() {
                copy.send(chunk.data)
                    .await
                    .with_context(|| format!("cannot copy table {} into {to}", table.name))?;
            }
            copied += chunk.rows;
            if chunk.rows > 0 {
                progress(&Progress {
                    table: table.name,
                    copied,
                    total,
                });
            }
            if chunk.last {
                break;
            }
        }
        let loaded = copy
            .finish()
            .await
            .with_context(|| format!("cannot copy table {} into {to}", table.name))?;
        ensure!(
            loaded == copied && copied == total,
            "table {}: {total} rows in the source, {copied} read, {loaded} loaded; nothing was \
             copied",
            table.name
        );
        counts.push(TableCount {
            table: table.name.to_string(),
            rows: loaded,
        });
    }
    reader.await.context("the reading thread failed")??;

    for key in &foreign_keys {
        sqlx::query(&format!(
            "ALTER TABLE {} ADD CONSTRAINT {} {}",
            key.table, key.name, key.definition
        ))
        .execute(&mut *tx)
        .await
        .with_context(|| {
            format!(
                "the copied rows of {} break its foreign key {}; nothing was copied",
                key.table, key.name
            )
        })?;
    }
    // `events.seq` is the only identity column: continue after the source's.
    let next_event_seq = if snapshot.last_event_seq > 0 {
        sqlx::query("SELECT setval(pg_get_serial_sequence('events', 'seq'), $1)")
            .bind(snapshot.last_event_seq)
            .execute(&mut *tx)
            .await?;
        snapshot.last_event_seq + 1
    } else {
        1
    };
    tx.commit()
        .await
        .with_context(|| format!("cannot commit the copy into {to}"))?;
    Ok(CopyReport {
        tables: counts,
        next_event_seq,
        live_workers,
    })
}

/// The tables of [`TABLES`] with the target's columns and types, checking that the target has
/// exactly these tables (besides its own bookkeeping).
async fn target_tables(target: &PgStore) -> Result<Vec<Table>> {
    let rows = sqlx::query(
        "SELECT c.table_name::text, c.column_name::text, c.data_type::text \
         FROM information_schema.columns c \
         JOIN information_schema.tables t \
           ON t.table_schema = c.table_schema AND t.table_name = c.table_name \
         WHERE c.table_schema = current_schema() AND t.table_type = 'BASE TABLE' \
         ORDER BY c.table_name, c.ordinal_position",
    )
    .fetch_all(target.pool())
    .await
    .with_context(|| format!("cannot read the schema of {}", target.location()))?;
    let mut found = BTreeSet::new();
    let mut tables: Vec<Table> = TABLES
        .iter()
        .map(|&name| Table {
            name,
            columns: Vec::new(),
        })
        .collect();
    for row in rows {
        let (table, column, data_type): (String, String, String) =
            (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?);
        if OWN_TABLES.contains(&table.as_str()) {
            continue;
        }
        let Some(known) = tables.iter_mut().find(|t| t.name == table) else {
            bail!(unknown_table("PostgreSQL", &table));
        };
        let kind = match data_type.as_str() {
            "text" => PgType::Text,
            "bigint" => PgType::BigInt,
            "bytea" => PgType::Bytea,
            other => bail!("db copy does not know the type {other} of column {table}.{column}"),
        };
        known.columns.push((column, kind));
        found.insert(table);
    }
    if let Some(missing) = TABLES.iter().find(|t| !found.contains(**t)) {
        bail!(
            "the PostgreSQL database {} has no table {missing}: it is not at this hypergraph's \
             schema",
            target.location()
        );
    }
    Ok(tables)
}

/// An error for a table `db copy` does not know.
fn unknown_table(backend: &str, table: &str) -> String {
    format!(
        "the {backend} schema has a table `{table}` that db copy does not know: this hypergraph \
         cannot copy it (nothing was copied)"
    )
}

/// Checks that the source has exactly the tables and columns of `tables` (in any order).
fn check_source_schema(conn: &Connection, tables: &[Table]) -> Result<()> {
    let names: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table'")?
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    for name in &names {
        if !OWN_TABLES.contains(&name.as_str()) && !TABLES.contains(&name.as_str()) {
            bail!(unknown_table("SQLite", name));
        }
    }
    for table in tables {
        let columns: BTreeSet<String> = conn
            .prepare("SELECT name FROM pragma_table_info(?1)")?
            .query_map([table.name], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?;
        let wanted: BTreeSet<String> = table.columns.iter().map(|(c, _)| c.clone()).collect();
        if columns != wanted {
            let only_source: Vec<_> = columns.difference(&wanted).collect();
            let only_target: Vec<_> = wanted.difference(&columns).collect();
            bail!(
                "table {} differs between the schemas: only the SQLite one has {only_source:?}, \
                 only the PostgreSQL one {only_target:?} (nothing was copied)",
                table.name
            );
        }
    }
    Ok(())
}

/// Row counts and the last event sequence number, read inside the source's read transaction.
fn read_snapshot(conn: &Connection) -> Result<Snapshot> {
    let counts = TABLES
        .iter()
        .map(|t| {
            conn.query_row(&format!("SELECT COUNT(*) FROM {t}"), [], |r| {
                r.get::<_, i64>(0)
            })
            .map(|n| n as u64)
        })
        .collect::<rusqlite::Result<_>>()?;
    // AUTOINCREMENT remembers the highest number ever handed out, deleted events included.
    let last_event_seq = conn.query_row(
        "SELECT MAX(COALESCE((SELECT MAX(seq) FROM events), 0), \
                COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'events'), 0))",
        [],
        |r| r.get(0),
    )?;
    Ok(Snapshot {
        counts,
        last_event_seq,
    })
}

/// Reads every table of `tables` in order inside the open read transaction and sends its rows,
/// in chunks of about [`CHUNK_BYTES`] in COPY text format, ending each table with a `last`
/// chunk. Stops quietly when the receiver is gone (the copy failed on the target side).
fn read_rows(
    conn: &Connection,
    tables: &[Table],
    sender: &tokio::sync::mpsc::Sender<Chunk>,
) -> Result<()> {
    for (index, table) in tables.iter().enumerate() {
        let mut statement = conn.prepare(&format!(
            "SELECT {} FROM {}",
            table.column_list(),
            table.name
        ))?;
        let mut rows = statement.query([])?;
        let mut data = Vec::with_capacity(CHUNK_BYTES + CHUNK_BYTES / 4);
        let mut count = 0;
        while let Some(row) = rows.next()? {
            for (i, (column, kind)) in table.columns.iter().enumerate() {
                if i > 0 {
                    data.push(b'\t');
                }
                write_value(&mut data, row.get_ref(i)?, *kind).with_context(|| {
                    format!("cannot copy a value of column {}.{column}", table.name)
                })?;
            }
            data.push(b'\n');
            count += 1;
            if data.len() >= CHUNK_BYTES {
                let chunk = Chunk {
                    table: index,
                    data: std::mem::replace(&mut data, Vec::with_capacity(CHUNK_BYTES)),
                    rows: std::mem::take(&mut count),
                    last: false,
                };
                if sender.blocking_send(chunk).is_err() {
                    return Ok(());
                }
            }
        }
        let chunk = Chunk {
            table: index,
            data,
            rows: count,
            last: true,
        };
        if sender.blocking_send(chunk).is_err() {
            return Ok(());
        }
    }
    Ok(())
}

/// Appends `value` as one field of COPY's text format for a column of type `kind`.
fn write_value(out: &mut Vec<u8>, value: ValueRef<'_>, kind: PgType) -> Result<()> {
    match (value, kind) {
        (ValueRef::Null, _) => out.extend_from_slice(b"\\N"),
        (ValueRef::Integer(n), PgType::BigInt | PgType::Text) => {
            out.extend_from_slice(n.to_string().as_bytes())
        }
        (ValueRef::Real(x), PgType::Text) => out.extend_from_slice(x.to_string().as_bytes()),
        (ValueRef::Text(bytes) | ValueRef::Blob(bytes), PgType::Text) => {
            let text = std::str::from_utf8(bytes)
                .map_err(|e| anyhow!("the text is not valid UTF-8 ({e})"))?;
            ensure!(
                !text.contains('\0'),
                "the text holds a NUL character, which PostgreSQL text cannot"
            );
            escape_text(out, text);
        }
        (ValueRef::Text(bytes) | ValueRef::Blob(bytes), PgType::Bytea) => {
            // A bytea in text format is `\x` and hex digits; the backslash is escaped.
            out.extend_from_slice(b"\\\\x");
            for byte in bytes {
                out.push(HEX[usize::from(byte >> 4)]);
                out.push(HEX[usize::from(byte & 0xf)]);
            }
        }
        (other, kind) => bail!(
            "a {:?} value cannot be stored in a PostgreSQL {kind:?} column",
            other.data_type()
        ),
    }
    Ok(())
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Appends `text` with COPY's text-format escapes: backslash, and the tab, newline and carriage
/// return that would otherwise end a field or a row.
fn escape_text(out: &mut Vec<u8>, text: &str) {
    for &byte in text.as_bytes() {
        match byte {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\t' => out.extend_from_slice(b"\\t"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            other => out.push(other),
        }
    }
}

/// A foreign key of the target, as PostgreSQL states it.
struct ForeignKey {
    table: String,
    name: String,
    definition: String,
}

/// Drops every foreign key of the target's schema inside the copy's transaction and returns
/// them, to be added back once the rows are in.
async fn drop_foreign_keys(tx: &mut sqlx::PgConnection) -> Result<Vec<ForeignKey>> {
    let keys: Vec<ForeignKey> = sqlx::query(
        "SELECT quote_ident(c.relname), quote_ident(k.conname), pg_get_constraintdef(k.oid) \
         FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid \
         WHERE k.contype = 'f' AND k.connamespace = current_schema()::regnamespace \
         ORDER BY c.relname, k.conname",
    )
    .fetch_all(&mut *tx)
    .await?
    .iter()
    .map(|row| {
        Ok(ForeignKey {
            table: row.try_get(0)?,
            name: row.try_get(1)?,
            definition: row.try_get(2)?,
        })
    })
    .collect::<Result<_, sqlx::Error>>()?;
    for key in &keys {
        sqlx::query(&format!(
            "ALTER TABLE {} DROP CONSTRAINT {}",
            key.table, key.name
        ))
        .execute(&mut *tx)
        .await?;
    }
    Ok(keys)
}

/// Locks every table of the target against writers (waiting at most [`LOCK_TIMEOUT`]) and
/// refuses a target that holds Hypergraph data: any row in a table but `kv_clock`, or a
/// `kv_clock` that moved from its first value.
async fn lock_and_check_empty(tx: &mut sqlx::PgConnection, location: &str) -> Result<()> {
    sqlx::query(&format!("SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'"))
        .execute(&mut *tx)
        .await?;
    sqlx::query(&format!(
        "LOCK TABLE {} IN EXCLUSIVE MODE",
        TABLES.join(", ")
    ))
    .execute(&mut *tx)
    .await
    .with_context(|| {
        format!(
            "cannot lock the tables of {location} within {LOCK_TIMEOUT}: another hypergraph \
             process is using it; stop it, or copy into a new database or schema"
        )
    })?;
    let mut holding = Vec::new();
    for table in TABLES.iter().filter(|t| **t != "kv_clock") {
        let rows: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM {table}"))
            .fetch_one(&mut *tx)
            .await?;
        if rows > 0 {
            holding.push(format!("{table}: {rows}"));
        }
    }
    let stamp: Option<i64> = sqlx::query_scalar("SELECT MAX(stamp) FROM kv_clock")
        .fetch_one(&mut *tx)
        .await?;
    if stamp.is_some_and(|s| s > 1) {
        holding.push(format!("kv_clock at {}", stamp.unwrap_or_default()));
    }
    if !holding.is_empty() {
        bail!(
            "the target {location} already holds Hypergraph data ({}): db copy copies only into \
             an empty database, never merging into or overwriting a history; nothing was copied. \
             Give a new database, or a new schema with ?schema=NAME",
            holding.join(", ")
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(value: ValueRef<'_>, kind: PgType) -> Result<String> {
        let mut out = Vec::new();
        write_value(&mut out, value, kind)?;
        Ok(String::from_utf8(out).unwrap())
    }

    #[test]
    fn values_are_written_in_copy_text_format() {
        assert_eq!(field(ValueRef::Null, PgType::Text).unwrap(), "\\N");
        assert_eq!(
            field(ValueRef::Integer(-42), PgType::BigInt).unwrap(),
            "-42"
        );
        assert_eq!(
            field(ValueRef::Text(b"a\tb\nc\\d\re"), PgType::Text).unwrap(),
            "a\\tb\\nc\\\\d\\re"
        );
        assert_eq!(
            field(ValueRef::Blob(&[0, 0xab, 0x10]), PgType::Bytea).unwrap(),
            "\\\\x00ab10"
        );
        assert_eq!(field(ValueRef::Blob(b""), PgType::Bytea).unwrap(), "\\\\x");
    }

    #[test]
    fn values_postgresql_cannot_hold_are_refused() {
        for (value, kind, says) in [
            (ValueRef::Text(b"a\0b"), PgType::Text, "NUL"),
            (ValueRef::Text(&[0xff, 0xfe]), PgType::Text, "UTF-8"),
            (ValueRef::Text(b"x"), PgType::BigInt, "BigInt"),
            (ValueRef::Real(1.5), PgType::BigInt, "BigInt"),
        ] {
            let err = field(value, kind).unwrap_err().to_string();
            assert!(err.contains(says), "{err}");
        }
    }
}
