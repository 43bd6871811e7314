//! The store contract on PostgreSQL: the whole conformance suite, unchanged, each test in a
//! schema of its own of the database named by `HYPERGRAPH_TEST_POSTGRES` (see
//! `hypergraph_store::conformance::PgBackend`), plus what only PostgreSQL has: URLs, schema
//! ownership and versions (in `crates/cli/tests/operator_safety.rs`), durability.

mod conformance {
    hypergraph_store::conformance_suite!(hypergraph_store::conformance::PgBackend);
}

use hypergraph_store::conformance::PgBackend;
use hypergraph_store::postgres::PgStore;
use hypergraph_store::{Durability, OpenOptions};

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
