//! The store contract on PostgreSQL: the whole conformance suite, unchanged, each test in a
//! schema of its own of the database named by `HYPERGRAPH_TEST_POSTGRES` (see
//! `hypergraph_store::conformance::PgBackend`), plus what only PostgreSQL has: URLs, schema
//! ownership and versions (in `crates/cli/tests/operator_safety.rs`), durability, wake-ups
//! across processes.

mod conformance {
    hypergraph_store::conformance_suite!(hypergraph_store::conformance::PgBackend);
}

use std::time::Duration;

use hypergraph_store::conformance::{ids, success, suspend, Backend as _, Ctx, PgBackend, HOUR};
use hypergraph_store::postgres::PgStore;
use hypergraph_store::wake::{Wake, Wakeups};
use hypergraph_store::{Durability, OpenOptions, Policy, RunFilter, Status, Store};

/// Every connection of a store commits as durably as it was opened for: `synchronous_commit` on
/// by default (strict), off when relaxed.
#[tokio::test]
async fn commits_wait_for_the_disk_unless_durability_is_relaxed() {
    let server = PgBackend::server().unwrap();
    let schema = PgBackend::fresh_schema();
    let url = PgBackend::url_with_schema(&server, &schema);
    let strict = PgStore::open(&url).await.unwrap();
    assert_eq!(strict.durability(), Durability::Strict);
    assert_eq!(synchronous_commit(strict.pool()).await, "on");
    let relaxed = PgStore::open_with(
        &url,
        &OpenOptions {
            durability: Durability::Relaxed,
            ..OpenOptions::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(synchronous_commit(relaxed.pool()).await, "off");
    strict.pool().close().await;
    relaxed.pool().close().await;
    PgBackend::drop_schema(server, schema);
}

/// The `synchronous_commit` setting of a connection of `pool`.
async fn synchronous_commit(pool: &hypergraph_store::sqlx::PgPool) -> String {
    hypergraph_store::sqlx::query_scalar("SHOW synchronous_commit")
        .fetch_one(pool)
        .await
        .unwrap()
}

/// The next wake-up `wakeups` receives other than [`Wake::Lost`], within ten seconds.
async fn next_wake(wakeups: &mut Wakeups) -> Wake {
    let next = async {
        loop {
            match wakeups.recv().await.expect("the store is open") {
                Wake::Lost => continue,
                wake => return wake,
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), next)
        .await
        .expect("a wake-up within 10 s")
}

/// Waits (ten seconds at most) until `wakeups` is delivered.
async fn until_listening(wakeups: &Wakeups) {
    let mut listening = wakeups.listening_handle();
    tokio::time::timeout(Duration::from_secs(10), listening.wait_for(|l| *l))
        .await
        .expect("listening within 10 s")
        .unwrap();
}

/// Terminates the backends listening for the store whose pool is `pool`; returns how many.
async fn terminate_listeners(pool: &hypergraph_store::sqlx::PgPool) -> i64 {
    hypergraph_store::sqlx::query_scalar(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
         WHERE datname = current_database() AND query = 'LISTEN \"hypergraph_' || current_schema() || '\"'",
    )
    .fetch_one(pool)
    .await
    .unwrap()
}

/// A store hears, soon after they commit, the submissions (work) and the ended runs another
/// store on the same database announces, and not its own announcements.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stores_hear_each_others_commits() {
    let ctx = Ctx::<PgBackend>::new(Policy::default()).await;
    let other = ctx.backend.open_another().await.unwrap();
    let mut own = ctx
        .store()
        .subscribe()
        .expect("PostgreSQL delivers wake-ups");
    let mut heard = other.subscribe().expect("PostgreSQL delivers wake-ups");
    until_listening(&own).await;
    until_listening(&heard).await;
    let runs = ctx.submit(2).await;
    assert_eq!(next_wake(&mut heard).await, Wake::Work);
    ctx.store().cancel_run(&runs[1].id).await.unwrap();
    assert_eq!(
        next_wake(&mut heard).await,
        Wake::Runs(vec![runs[1].id.clone()])
    );
    let quiet = tokio::time::timeout(Duration::from_millis(300), next_wake(&mut own)).await;
    assert!(quiet.is_err(), "a store heard itself: {quiet:?}");
    other.close().await.unwrap();
}

/// A store whose listening connection is lost reports it (a [`Wake::Lost`]), listens again on a
/// new connection, and hears what is announced from then on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_listener_is_reported_and_replaced() {
    let ctx = Ctx::<PgBackend>::new(Policy::default()).await;
    let other = ctx.backend.open_another().await.unwrap();
    let mut heard = other.subscribe().expect("PostgreSQL delivers wake-ups");
    until_listening(&heard).await;
    assert_eq!(heard.recv().await, Some(Wake::Lost), "listening started");
    assert_eq!(terminate_listeners(other.pool()).await, 1);
    let lost = tokio::time::timeout(Duration::from_secs(10), heard.recv()).await;
    assert_eq!(lost.expect("reported within 10 s"), Some(Wake::Lost));
    until_listening(&heard).await;
    ctx.submit(1).await;
    assert_eq!(next_wake(&mut heard).await, Wake::Work);
    other.close().await.unwrap();
}

/// A pooled connection whose server side went away while it sat idle (a restart, an idle
/// timeout, an operator's `pg_terminate_backend`) is checked before it is handed out again
/// once it has been idle for [`CHECK_IDLE_AFTER`], so the next operation gets a live one and
/// succeeds; recently used connections are handed out unchecked, saving a round trip.
#[tokio::test]
async fn connections_that_died_while_idle_are_replaced_before_use() {
    use hypergraph_store::postgres::CHECK_IDLE_AFTER;
    use hypergraph_store::sqlx::{self, Connection as _};
    let server = PgBackend::server().unwrap();
    let schema = PgBackend::fresh_schema();
    let store = PgStore::open(&PgBackend::url_with_schema(&server, &schema))
        .await
        .unwrap();
    // The pool takes a released connection back on a task of its own (after checking it).
    let all_back = || async {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while store.pool().num_idle() < store.pool().size() as usize {
            assert!(std::time::Instant::now() < deadline, "connections not back");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    drop(store.pool().acquire().await.unwrap());
    all_back().await;
    // Every connection the store's pool holds, taken at once so each is a different one.
    let mut held = Vec::new();
    while store.pool().num_idle() > 0 {
        held.push(store.pool().acquire().await.unwrap());
    }
    let mut pids: Vec<i32> = Vec::new();
    for conn in &mut held {
        pids.push(
            sqlx::query_scalar("SELECT pg_backend_pid()")
                .fetch_one(&mut **conn)
                .await
                .unwrap(),
        );
    }
    assert!(
        !pids.is_empty(),
        "the store keeps a connection after opening"
    );
    drop(held);
    all_back().await;
    let mut admin = sqlx::PgConnection::connect(&server).await.unwrap();
    let terminated: i64 =
        sqlx::query_scalar("SELECT count(pg_terminate_backend(pid)) FROM UNNEST($1::int[]) AS pid")
            .bind(&pids)
            .fetch_one(&mut admin)
            .await
            .unwrap();
    assert_eq!(terminated, pids.len() as i64);
    tokio::time::sleep(CHECK_IDLE_AFTER + Duration::from_millis(200)).await;
    let runs = store
        .list_runs(&Default::default())
        .await
        .expect("a dead idle connection is replaced, not used");
    assert!(runs.is_empty());
    let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert!(!pids.contains(&pid), "a terminated backend was used again");
    admin.close().await.unwrap();
    store.pool().close().await;
    PgBackend::drop_schema(server, schema);
}

/// A run that a binary before `runs.claimed_at` (migration 5) marked `running` in its row reads
/// and lists as running, as it did.
#[tokio::test]
async fn a_run_an_older_binary_marked_running_reads_as_running() {
    let ctx = Ctx::<PgBackend>::new(Policy::default()).await;
    let store = ctx.store();
    let id = ctx.submit(1).await.remove(0).id;
    hypergraph_store::sqlx::query("UPDATE runs SET status = 'running' WHERE id = $1")
        .bind(&id)
        .execute(store.pool())
        .await
        .unwrap();
    assert_eq!(store.run_status(&id).await.unwrap(), Some(Status::Running));
    let listed = |status| RunFilter {
        status: Some(status),
        limit: 10,
        ..RunFilter::default()
    };
    let running = store.list_runs(&listed(Status::Running)).await.unwrap();
    assert_eq!(
        running
            .iter()
            .map(|r| (r.id.as_str(), r.status))
            .collect::<Vec<_>>(),
        [(id.as_str(), Status::Running)]
    );
    assert!(store
        .list_runs(&listed(Status::Queued))
        .await
        .unwrap()
        .is_empty());
}

/// The statements of the hot path never read a whole table, whatever the tables held when they
/// were planned: connections plan each statement once, generically, with sequential scans
/// priced out (`postgres::PgStore::open_with`), and on a fresh schema those plans are made on
/// empty tables, where a sequential scan looks cheapest. Runs, a workflow with children, sweeps
/// and the reads `runs list/show` and `run --wait` use go through one store on a fresh schema;
/// then its connections close (flushing their statistics) and no table of the schema may have
/// had a row read by a sequential scan.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hot_statements_never_scan_a_whole_table() {
    let ctx = Ctx::<PgBackend>::new(Policy::default()).await;
    let store = ctx.store();
    let mut steps = 0;
    for _ in 0..8 {
        steps += ctx.submit(40).await.len();
        loop {
            ctx.advance(Duration::from_millis(20));
            let claimed = store.claim_steps("w1", 16, HOUR).await.unwrap();
            if claimed.is_empty() {
                break;
            }
            let done: Vec<_> = claimed.iter().map(|c| success(c, ctx.now())).collect();
            store.complete_steps(&done).await.unwrap();
        }
    }
    // A workflow joining four children: parents woken, children ended, the run ended.
    let flow = ctx.submit(1).await.remove(0);
    let parent = ctx.claim("w1", 1).await.remove(0);
    let children: Vec<_> = (0..4).map(|i| ctx.child(i)).collect();
    let wait = hypergraph_store::Wait::Children(ids(&children));
    let start = suspend(&parent, ctx.now(), children, wait);
    store.complete_steps(&[start]).await.unwrap();
    let children = ctx.claim("w1", 4).await;
    let ended: Vec<_> = children.iter().map(|c| success(c, ctx.now())).collect();
    store.complete_steps(&ended).await.unwrap();
    let woken = ctx.claim("w1", 1).await.remove(0);
    store
        .complete_steps(&[success(&woken, ctx.now())])
        .await
        .unwrap();
    steps += 5;
    for status in [Status::Queued, Status::Running, Status::Succeeded] {
        let filter = RunFilter {
            status: Some(status),
            limit: 20,
            ..RunFilter::default()
        };
        store.list_runs(&filter).await.unwrap();
    }
    assert_eq!(
        store.run_status(&flow.id).await.unwrap(),
        Some(Status::Succeeded)
    );
    store.run_result(&flow.id).await.unwrap().unwrap();
    store
        .run_view(&flow.id, &hypergraph_store::StepQuery::default())
        .await
        .unwrap()
        .unwrap();
    store.pool().close().await;

    // Backends flush their statistics as they exit, or within 10 s of going idle.
    let reader = ctx.backend.open_another().await.unwrap();
    let scanned = async {
        loop {
            let rows: Vec<(String, i64, i64)> = hypergraph_store::sqlx::query_as(
                "SELECT relname::text, seq_tup_read, n_tup_ins FROM pg_stat_user_tables \
                 WHERE schemaname = current_schema() ORDER BY relname",
            )
            .fetch_all(reader.pool())
            .await
            .unwrap();
            let inserted = rows.iter().find(|(t, ..)| t == "steps").map_or(0, |r| r.2);
            if inserted == steps as i64 {
                return rows;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let rows = tokio::time::timeout(Duration::from_secs(30), scanned)
        .await
        .expect("the closed connections' statistics within 30 s");
    let read: Vec<(String, i64)> = rows
        .into_iter()
        .filter(|(_, read, _)| *read > 0)
        .map(|(table, read, _)| (table, read))
        .collect();
    assert_eq!(read, [], "rows read by sequential scans, by table");
    reader.pool().close().await;
}
