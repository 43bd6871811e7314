-- Hypergraph schema, version 1.
--
-- Portable SQL on purpose: the PostgreSQL backend uses the same tables and columns (with BYTEA for
-- BLOB). Timestamps are BIGINT microseconds since the Unix epoch (UTC); JSON values are TEXT.
-- Statuses are one of: queued, running, succeeded, failed, cancelled.

-- Uploaded components, content-addressed by the sha256 of their bytes (lowercase hex).
CREATE TABLE components (
    digest     TEXT   NOT NULL PRIMARY KEY,
    bytes      BLOB   NOT NULL,
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
    FOREIGN KEY (deployment, version) REFERENCES deployments (name, version)
);

CREATE INDEX runs_created_at ON runs (created_at);
CREATE INDEX runs_status_created_at ON runs (status, created_at);
CREATE INDEX runs_task_created_at ON runs (task, created_at);
CREATE INDEX runs_deployment_created_at ON runs (deployment, created_at);

-- Metadata tags of a run (`--meta key=value`).
CREATE TABLE run_meta (
    run_id TEXT NOT NULL REFERENCES runs (id),
    key    TEXT NOT NULL,
    value  TEXT NOT NULL,
    PRIMARY KEY (run_id, key)
);

CREATE INDEX run_meta_key_value ON run_meta (key, value);

-- Task executions inside a run; `attempt` is the latest attempt number (0 until first claimed) and
-- the fence every completion is checked against. A step carries its own deployment version (a
-- workflow's children run other deployments than their run) so claiming needs no join.
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
    FOREIGN KEY (deployment, version) REFERENCES deployments (name, version)
);

CREATE INDEX steps_run_id ON steps (run_id);
-- Claiming queued steps, oldest first.
CREATE INDEX steps_status_created_at ON steps (status, created_at);
-- Finding running steps whose lease has expired.
CREATE INDEX steps_status_lease ON steps (status, lease_expires_at);

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
