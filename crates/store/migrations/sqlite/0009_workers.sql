-- Workers you can see: what a worker registers, its heartbeat interval and clean stop, the
-- hypergraph version that ran each attempt, and the index `workers list` counts completions on.

-- The schema version of the database when the worker registered (its binary's), and how many
-- steps it executes at once; 0 for workers registered before this migration.
ALTER TABLE workers ADD COLUMN schema_version BIGINT NOT NULL DEFAULT 0;
ALTER TABLE workers ADD COLUMN concurrency BIGINT NOT NULL DEFAULT 0;
-- How often the worker heartbeats (`last_seen_at`), in milliseconds: it is live, stale or dead by
-- multiples of it (hypergraph_core::worker). Workers of earlier versions refreshed their row
-- every third of their 30 s lease.
ALTER TABLE workers ADD COLUMN heartbeat_ms BIGINT NOT NULL DEFAULT 10000;
-- When the worker shut down cleanly; NULL while it runs (or if it died).
ALTER TABLE workers ADD COLUMN stopped_at BIGINT;

-- The hypergraph version of the worker that claimed the attempt, from its registration.
ALTER TABLE attempts ADD COLUMN hypergraph_version TEXT;

-- Attempts a worker reported the end of (a lost or cancelled attempt was never started as far as
-- the database knows), by worker and time: `workers list` counts the recent ones.
CREATE INDEX attempts_worker_completed ON attempts (worker_id, completed_at)
    WHERE completed_at IS NOT NULL AND started_at IS NOT NULL;
-- Listing the workers seen lately.
CREATE INDEX workers_last_seen_at ON workers (last_seen_at);
