-- Hypergraph schema on PostgreSQL, version 1: the tables of the SQLite schema
-- (crates/store/migrations/sqlite, migrations 1 to 8) in one step, with the same tables, columns
-- and meanings. Timestamps are BIGINT microseconds since the Unix epoch (UTC); JSON values are
-- TEXT (stored exactly as the SQLite backend stores them, so `db copy` moves them unchanged).
-- Statuses are one of: queued, running, succeeded, failed, cancelled.

-- Uploaded components, content-addressed by the sha256 of their bytes (lowercase hex).
CREATE TABLE components (
    digest     TEXT   NOT NULL PRIMARY KEY,
    bytes      BYTEA  NOT NULL,
    size       BIGINT NOT NULL,
    created_at BIGINT NOT NULL
);

-- Versions of named deployments; a version is immutable once written.
CREATE TABLE deployments (
    name       TEXT   NOT NULL,
    version    BIGINT NOT NULL,
    digest     TEXT   NOT NULL REFERENCES components (digest),
    policy     TEXT   NOT NULL,
    created_at BIGINT NOT NULL,
    kind       TEXT   NOT NULL DEFAULT 'component',
    PRIMARY KEY (name, version)
);

-- Requested executions of a task, pinned to a deployment version and its component digest.
CREATE TABLE runs (
    id           TEXT   NOT NULL PRIMARY KEY,
    task         TEXT   NOT NULL,
    deployment   TEXT   NOT NULL,
    version      BIGINT NOT NULL,
    digest       TEXT   NOT NULL,
    input        TEXT   NOT NULL,
    status       TEXT   NOT NULL
        CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
    output       TEXT,
    error        TEXT,
    created_at   BIGINT NOT NULL,
    completed_at BIGINT,
    -- A run not finished by `deadline` fails, and its unfinished steps are cancelled.
    deadline     BIGINT,
    FOREIGN KEY (deployment, version) REFERENCES deployments (name, version)
);

CREATE INDEX runs_created_at ON runs (created_at);
CREATE INDEX runs_status_created_at ON runs (status, created_at);
CREATE INDEX runs_task_created_at ON runs (task, created_at);
CREATE INDEX runs_deployment_created_at ON runs (deployment, created_at);
CREATE INDEX runs_deadline ON runs (deadline) WHERE deadline IS NOT NULL;

-- Metadata tags of a run (`--meta key=value`).
CREATE TABLE run_meta (
    run_id TEXT NOT NULL REFERENCES runs (id),
    key    TEXT NOT NULL,
    value  TEXT NOT NULL,
    PRIMARY KEY (run_id, key)
);

CREATE INDEX run_meta_key_value ON run_meta (key, value);

-- Task executions inside a run; `attempt` is the latest attempt number (0 until first claimed)
-- and the fence every completion is checked against. See the SQLite migrations for the
-- workflow columns (parent_id .. activations), `policy` (a DAG step's overrides), deadlines,
-- `name`, and the key-value re-execution and lost-lease counters.
CREATE TABLE steps (
    id               TEXT   NOT NULL PRIMARY KEY,
    run_id           TEXT   NOT NULL REFERENCES runs (id),
    task             TEXT   NOT NULL,
    deployment       TEXT   NOT NULL,
    version          BIGINT NOT NULL,
    digest           TEXT   NOT NULL,
    input            TEXT   NOT NULL,
    status           TEXT   NOT NULL
        CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
    attempt          BIGINT NOT NULL DEFAULT 0,
    worker_id        TEXT,
    output           TEXT,
    error            TEXT,
    created_at       BIGINT NOT NULL,
    assigned_at      BIGINT,
    started_at       BIGINT,
    completed_at     BIGINT,
    lease_expires_at BIGINT,
    parent_id        TEXT,
    child_index      BIGINT,
    awaited          BIGINT NOT NULL DEFAULT 0,
    pending          BIGINT NOT NULL DEFAULT 0,
    wait             TEXT,
    wait_event       TEXT,
    wake_at          BIGINT,
    activations      BIGINT NOT NULL DEFAULT 0,
    policy           TEXT,
    start_deadline   BIGINT,
    name             TEXT,
    rerun            BIGINT NOT NULL DEFAULT 0,
    reruns           BIGINT NOT NULL DEFAULT 0,
    lost_leases      BIGINT NOT NULL DEFAULT 0,
    FOREIGN KEY (deployment, version) REFERENCES deployments (name, version)
);

CREATE INDEX steps_run_id ON steps (run_id);
CREATE INDEX steps_parent_id ON steps (parent_id, child_index);
-- Claiming queued steps that wait for nothing, oldest first.
CREATE INDEX steps_queued_created_at ON steps (created_at) WHERE status = 'queued' AND wait IS NULL;
-- Finding running steps whose lease has expired.
CREATE INDEX steps_running_lease ON steps (lease_expires_at) WHERE status = 'running';
-- Timers and event timeouts that passed; workflows waiting on children.
CREATE INDEX steps_wait_wake_at ON steps (wait, wake_at) WHERE wait IS NOT NULL;
-- Workflows waiting for an event.
CREATE INDEX steps_wait_event ON steps (wait_event) WHERE wait_event IS NOT NULL;
-- Queued steps with a schedule-to-start deadline.
CREATE INDEX steps_start_deadline ON steps (start_deadline) WHERE start_deadline IS NOT NULL;

-- One row per try of a step.
CREATE TABLE attempts (
    step_id      TEXT   NOT NULL REFERENCES steps (id),
    attempt      BIGINT NOT NULL,
    status       TEXT   NOT NULL
        CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
    worker_id    TEXT,
    assigned_at  BIGINT,
    started_at   BIGINT,
    completed_at BIGINT,
    error        TEXT,
    reruns       BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (step_id, attempt)
);

-- Host-call results of one attempt, in call order.
CREATE TABLE journal (
    step_id TEXT   NOT NULL,
    attempt BIGINT NOT NULL,
    seq     BIGINT NOT NULL,
    kind    TEXT   NOT NULL,
    data    TEXT   NOT NULL,
    PRIMARY KEY (step_id, attempt, seq),
    FOREIGN KEY (step_id, attempt) REFERENCES attempts (step_id, attempt)
);

-- Log lines (log interface, stdout, stderr) of one attempt, in emission order.
CREATE TABLE logs (
    step_id TEXT   NOT NULL,
    attempt BIGINT NOT NULL,
    seq     BIGINT NOT NULL,
    at      BIGINT NOT NULL,
    stream  TEXT   NOT NULL,
    level   TEXT   NOT NULL,
    message TEXT   NOT NULL,
    PRIMARY KEY (step_id, attempt, seq),
    FOREIGN KEY (step_id, attempt) REFERENCES attempts (step_id, attempt)
);

-- Worker processes, registered at start and refreshed while they run.
CREATE TABLE workers (
    id           TEXT   NOT NULL PRIMARY KEY,
    host         TEXT   NOT NULL,
    pid          BIGINT NOT NULL,
    version      TEXT   NOT NULL,
    started_at   BIGINT NOT NULL,
    last_seen_at BIGINT NOT NULL
);

-- Durable key-value storage of hypergraph:task/kv, one namespace per scope
-- (`<tenant>/<deployment>`). Writes land only with a successful step completion. Every key has a
-- version: the value of the store-wide counter `kv_clock` taken by the write that last changed it.
CREATE TABLE kv (
    scope      TEXT   NOT NULL,
    -- Byte order, as on SQLite: `list-keys` lists keys in it and prefixes are byte prefixes.
    key        TEXT   COLLATE "C" NOT NULL,
    value      BYTEA  NOT NULL,
    updated_at BIGINT NOT NULL,
    version    BIGINT NOT NULL DEFAULT 1,
    PRIMARY KEY (scope, key)
);
CREATE TABLE kv_clock (
    id    BIGINT NOT NULL PRIMARY KEY CHECK (id = 1),
    stamp BIGINT NOT NULL
);
INSERT INTO kv_clock (id, stamp) VALUES (1, 1);

-- External events (`hypergraph events send`), in send order.
CREATE TABLE events (
    seq        BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name       TEXT   NOT NULL,
    payload    TEXT,
    created_at BIGINT NOT NULL
);

CREATE INDEX events_name_seq ON events (name, seq);
