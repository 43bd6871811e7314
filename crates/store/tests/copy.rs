//! `db copy` at the store level: a SQLite database with real content (runs with metadata, a
//! workflow with children, retries, journals, logs with characters COPY must escape, key-value
//! data with versions, events, workers) copied into a fresh PostgreSQL schema of the server named
//! by `HYPERGRAPH_TEST_POSTGRES`, compared table by table, then used: new runs, events and
//! key-value versions continue after the copied ones. A second copy into the same schema, or a
//! source whose rows break a foreign key, is refused and changes nothing.

use std::sync::Arc;

use hypergraph_store::conformance::{
    failure, journal, success, Backend, Ctx, PgBackend, SqliteBackend, HOUR,
};
use hypergraph_store::copy::{sqlite_to_postgres, TABLES};
use hypergraph_store::postgres::PgStore;
use hypergraph_store::sqlite::SqliteStore;
use hypergraph_store::sqlx::{self, Row};
use hypergraph_store::{
    CommitOutcome, KvWrite, LogRecord, Policy, Status, Store, Wait, WorkerInfo,
};
use serde_json::json;

/// A key-value write to scope `default/t`.
fn write(key: &str, value: &[u8]) -> KvWrite {
    KvWrite {
        scope: "default/t".into(),
        key: key.into(),
        value: Some(value.to_vec()),
    }
}

/// Fills the SQLite store of `t` with something of every kind the schema holds.
async fn fill(t: &Ctx<SqliteBackend>) {
    let s = t.store();
    s.register_worker(&WorkerInfo {
        id: "host-a/1/xyz".into(),
        host: "host-a".into(),
        pid: 1,
        version: "0.1.0".into(),
        concurrency: 4,
        heartbeat_ms: 2000,
        started_at: t.now(),
    })
    .await
    .unwrap();
    s.stop_worker("host-a/1/xyz").await.unwrap();

    // Plain runs with metadata, journals, logs that need escaping, and key-value writes.
    let mut runs = Vec::new();
    for i in 0..20 {
        runs.push(t.run("t/f", &[("team", "docs"), ("n", &i.to_string())]));
    }
    s.submit_runs(&runs).await.unwrap();
    for (i, step) in t.claim("w1", 20).await.into_iter().enumerate() {
        let mut done = if i % 5 == 4 {
            failure(&step, t.now())
        } else {
            success(&step, t.now())
        };
        done.journal = journal(3);
        done.logs = vec![LogRecord {
            seq: 0,
            at: t.now(),
            stream: "stdout".into(),
            level: "info".into(),
            message: format!("line {i}:\ttab, \\ backslash,\r\nnewline, ünïcödé \u{1F600}"),
        }];
        done.kv_writes = vec![write(
            &format!("key\t{i}\n\\"),
            &[0, 9, 10, 13, 92, 255, i as u8],
        )];
        assert_eq!(
            s.complete_steps(&[done]).await.unwrap(),
            [CommitOutcome::Committed]
        );
        t.advance(std::time::Duration::from_millis(1));
    }

    // A workflow with two children it waits for, one failing once and retried.
    let root_run = t.run("wf/main", &[]);
    s.submit_runs(&[root_run]).await.unwrap();
    let root = t.claim("w1", 1).await.remove(0);
    let children: Vec<_> = (0..2).map(|i| t.child(i)).collect();
    let ids: Vec<String> = children.iter().map(|c| c.step_id.clone()).collect();
    let mut suspend = success(&root, t.now());
    suspend.status = Status::Running;
    suspend.output = None;
    suspend.children = children;
    suspend.wait = Some(Wait::Children(ids));
    suspend.journal = journal(2);
    s.complete_steps(&[suspend]).await.unwrap();
    let kids = t.claim("w1", 10).await;
    assert_eq!(kids.len(), 2);
    let mut retried = failure(&kids[0], t.now());
    retried.retry_at = Some(t.now());
    s.complete_steps(&[retried, success(&kids[1], t.now())])
        .await
        .unwrap();
    let again = t.claim("w1", 10).await;
    assert_eq!(again.len(), 1, "the failed child is retried");
    s.complete_steps(&[success(&again[0], t.now())])
        .await
        .unwrap();
    let woken = t.claim("w1", 10).await;
    assert_eq!(woken.len(), 1, "the workflow wakes");
    s.complete_steps(&[success(&woken[0], t.now())])
        .await
        .unwrap();

    // Events, and a run still queued.
    for i in 0..3 {
        s.send_event("go", &json!({ "i": i }).to_string())
            .await
            .unwrap();
    }
    s.submit_runs(&[t.run("t/f", &[("left", "queued")])])
        .await
        .unwrap();
}

/// Every row of `table` on SQLite, each value as text (bytes as lowercase hex), sorted.
fn sqlite_rows(path: &std::path::Path, table: &str, columns: &[(String, String)]) -> Vec<String> {
    let conn = rusqlite::Connection::open(path).unwrap();
    let list: Vec<String> = columns
        .iter()
        .map(|(c, kind)| match kind.as_str() {
            "bytea" => format!("lower(hex(\"{c}\"))"),
            _ => format!("CAST(\"{c}\" AS TEXT)"),
        })
        .collect();
    let sql = format!("SELECT {} FROM {table}", list.join(", "));
    let mut statement = conn.prepare(&sql).unwrap();
    let mut rows: Vec<String> = statement
        .query_map([], |row| {
            let values: Vec<Option<String>> = (0..columns.len())
                .map(|i| row.get(i))
                .collect::<rusqlite::Result<_>>()?;
            Ok(format!("{values:?}"))
        })
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap();
    rows.sort();
    rows
}

/// Every row of `table` on PostgreSQL, as [`sqlite_rows`] renders them.
async fn postgres_rows(
    pool: &sqlx::PgPool,
    table: &str,
    columns: &[(String, String)],
) -> Vec<String> {
    let list: Vec<String> = columns
        .iter()
        .map(|(c, kind)| match kind.as_str() {
            "bytea" => format!("encode(\"{c}\", 'hex')"),
            _ => format!("\"{c}\"::text"),
        })
        .collect();
    let sql = format!("SELECT {} FROM {table}", list.join(", "));
    let mut rows: Vec<String> = sqlx::query(&sql)
        .fetch_all(pool)
        .await
        .unwrap()
        .iter()
        .map(|row| {
            let values: Vec<Option<String>> = (0..columns.len()).map(|i| row.get(i)).collect();
            format!("{values:?}")
        })
        .collect();
    rows.sort();
    rows
}

/// The columns of `table` on PostgreSQL with their types.
async fn columns(pool: &sqlx::PgPool, table: &str) -> Vec<(String, String)> {
    sqlx::query(
        "SELECT column_name::text, data_type::text FROM information_schema.columns \
         WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position",
    )
    .bind(table)
    .fetch_all(pool)
    .await
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sqlite_database_copies_into_postgresql_whole_and_keeps_working() {
    let t = Ctx::<SqliteBackend>::new(Policy::default()).await;
    fill(&t).await;
    let source = t.store();
    let source_path = source.location().to_string();
    let last_version = source.kv_list("default/t", "", 100).await.unwrap();

    let server = PgBackend::server().unwrap();
    let schema = PgBackend::fresh_schema();
    let url = PgBackend::url_with_schema(&server, &schema);
    let target = PgStore::open_with_clock(&url, Arc::new(t.clock.clone()))
        .await
        .unwrap();
    let mut seen = Vec::new();
    let report = sqlite_to_postgres(source, &target, |p| {
        seen.push((p.table.to_string(), p.copied, p.total))
    })
    .await
    .unwrap();
    assert_eq!(report.rows("runs"), 22);
    assert_eq!(report.rows("steps"), 24);
    assert_eq!(report.rows("events"), 3);
    assert_eq!(report.rows("kv_clock"), 1);
    assert_eq!(report.next_event_seq, 4);
    assert!(seen.contains(&("runs".to_string(), 22, 22)), "{seen:?}");

    // Table by table, every row and every value.
    for table in TABLES {
        let columns = columns(target.pool(), table).await;
        assert!(!columns.is_empty(), "{table}");
        let on_sqlite = sqlite_rows(std::path::Path::new(&source_path), table, &columns);
        let on_postgres = postgres_rows(target.pool(), table, &columns).await;
        assert_eq!(on_sqlite.len() as u64, report.rows(table), "{table}");
        assert_eq!(on_sqlite, on_postgres, "table {table}");
    }

    // The store reads the same answers.
    let filter = hypergraph_store::RunFilter {
        limit: 100,
        ..Default::default()
    };
    let listed = |runs: Vec<hypergraph_store::RunSummary>| {
        runs.into_iter()
            .map(|r| format!("{r:?}"))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        listed(source.list_runs(&filter).await.unwrap()),
        listed(target.list_runs(&filter).await.unwrap())
    );
    for run in source.list_runs(&filter).await.unwrap() {
        assert_eq!(
            format!("{:?}", source.run(&run.id).await.unwrap()),
            format!("{:?}", target.run(&run.id).await.unwrap())
        );
        assert_eq!(
            source.run_logs(&run.id).await.unwrap(),
            target.run_logs(&run.id).await.unwrap()
        );
    }
    assert_eq!(
        format!("{:?}", source.workers(HOUR).await.unwrap()),
        format!("{:?}", target.workers(HOUR).await.unwrap())
    );

    // And it goes on: the queued run is claimed with a new one, events and key-value versions
    // continue after the copied ones.
    target
        .submit_runs(&[t.run("t/f", &[("after", "copy")])])
        .await
        .unwrap();
    let claimed = target.claim_steps("w2", 10, HOUR).await.unwrap();
    assert_eq!(claimed.len(), 2);
    let mut done = success(&claimed[0], t.now());
    done.kv_writes = vec![write("after", b"copy")];
    assert_eq!(
        target.complete_steps(&[done]).await.unwrap(),
        [CommitOutcome::Committed]
    );
    let (_, version) = target.kv_get("default/t", "after").await.unwrap().unwrap();
    assert!(
        version > last_version.max_version,
        "{version} after {}",
        last_version.max_version
    );
    let (seq, _) = target.send_event("go", "{}").await.unwrap();
    assert_eq!(seq, 4);

    // A second copy into the same schema is refused and changes nothing.
    let runs_before = target.list_runs(&filter).await.unwrap().len();
    let err = sqlite_to_postgres(source, &target, |_| {})
        .await
        .unwrap_err();
    let message = format!("{err:#}");
    assert!(
        message.contains("already holds Hypergraph data") && message.contains("runs: 23"),
        "{message}"
    );
    assert_eq!(target.list_runs(&filter).await.unwrap().len(), runs_before);
    assert_eq!(target.last_event_seq().await.unwrap(), 4);

    target.pool().close().await;
    PgBackend::drop_schema(server, schema);
}

/// A target whose only Hypergraph data is a registered worker is not empty either; a source
/// whose rows break a foreign key is refused whole; an empty source copies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_copies_leave_the_target_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let source = SqliteStore::open(&dir.path().join("hg.db")).await.unwrap();
    let target = PgBackend::create(hypergraph_core::time::ManualClock::new(0))
        .await
        .unwrap();
    target
        .store()
        .register_worker(&WorkerInfo {
            id: "w".into(),
            host: "h".into(),
            pid: 2,
            version: "0".into(),
            concurrency: 1,
            heartbeat_ms: 1000,
            started_at: 0,
        })
        .await
        .unwrap();
    let err = sqlite_to_postgres(&source, target.store(), |_| {})
        .await
        .unwrap_err();
    assert!(format!("{err:#}").contains("workers: 1"), "{err:#}");
    // Rows that break a foreign key (SQLite enforces them only when told to) are refused as a
    // whole: the target keeps its foreign keys and no row.
    let empty = PgBackend::create(hypergraph_core::time::ManualClock::new(0))
        .await
        .unwrap();
    let keys = foreign_keys(empty.store().pool()).await;
    assert!(keys >= 2, "{keys}");
    let raw = rusqlite::Connection::open(dir.path().join("hg.db")).unwrap();
    raw.execute_batch(
        "PRAGMA foreign_keys = OFF; INSERT INTO run_meta VALUES ('no-such-run', 'k', 'v');",
    )
    .unwrap();
    let err = sqlite_to_postgres(&source, empty.store(), |_| {})
        .await
        .unwrap_err();
    assert!(
        format!("{err:#}").contains("break its foreign key"),
        "{err:#}"
    );
    assert_eq!(foreign_keys(empty.store().pool()).await, keys);
    raw.execute_batch("DELETE FROM run_meta").unwrap();
    // An empty source into an empty target copies nothing, and that is fine.
    let report = sqlite_to_postgres(&source, empty.store(), |_| {})
        .await
        .unwrap();
    assert_eq!(report.rows("runs"), 0);
    assert_eq!(report.rows("kv_clock"), 1);
    assert_eq!(report.next_event_seq, 1);
    assert_eq!(foreign_keys(empty.store().pool()).await, keys);
}

/// How many foreign keys the schema of `pool` has.
async fn foreign_keys(pool: &sqlx::PgPool) -> i64 {
    sqlx::query_scalar(
        "SELECT COUNT(*) FROM pg_constraint \
         WHERE contype = 'f' AND connamespace = current_schema()::regnamespace",
    )
    .fetch_one(pool)
    .await
    .unwrap()
}
