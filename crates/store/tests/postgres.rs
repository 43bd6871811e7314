//! The store contract on PostgreSQL: the whole conformance suite, unchanged, each test in a
//! schema of its own of the database named by `HYPERGRAPH_TEST_POSTGRES` (see
//! `hypergraph_store::conformance::PgBackend`), plus what only PostgreSQL has: URLs, schema
//! ownership and versions.

mod conformance {
    hypergraph_store::conformance_suite!(hypergraph_store::conformance::PgBackend);
}
