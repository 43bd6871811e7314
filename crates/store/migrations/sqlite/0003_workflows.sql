-- Workflows: child steps, suspension, timers, events, delayed retries.
--
-- A workflow step that waits (for children, a timer or an event) keeps status `queued` with `wait`
-- set; it is claimable again once `wait` is cleared (and `wake_at` has passed), and is shown as
-- `waiting`. A step retried after a failure is `queued` with `wake_at` = the end of its backoff.

-- The workflow step that started this step, and its position among that workflow's children.
ALTER TABLE steps ADD COLUMN parent_id TEXT;
ALTER TABLE steps ADD COLUMN child_index BIGINT;
-- 1 once the parent waits for this child (its completion then counts down the parent's `pending`).
ALTER TABLE steps ADD COLUMN awaited BIGINT NOT NULL DEFAULT 0;
-- A waiting workflow: awaited children that have not finished yet.
ALTER TABLE steps ADD COLUMN pending BIGINT NOT NULL DEFAULT 0;
-- What a waiting workflow waits for: `children`, `timer` or `event`; NULL when not waiting.
ALTER TABLE steps ADD COLUMN wait TEXT;
-- The event name of a step waiting for an event.
ALTER TABLE steps ADD COLUMN wait_event TEXT;
-- Not claimable before this time: a timer, an event timeout, or the backoff before a retry.
ALTER TABLE steps ADD COLUMN wake_at BIGINT;
-- How many times the current attempt was suspended and resumed (its journal then grows across
-- activations, and each activation replays the journal so far).
ALTER TABLE steps ADD COLUMN activations BIGINT NOT NULL DEFAULT 0;

CREATE INDEX steps_parent_id ON steps (parent_id, child_index);
CREATE INDEX steps_wait_wake_at ON steps (wait, wake_at);
CREATE INDEX steps_wait_event ON steps (wait_event);

-- External events (`hypergraph events send`), in send order.
CREATE TABLE events (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    name       TEXT    NOT NULL,
    payload    TEXT,
    created_at BIGINT  NOT NULL
);

CREATE INDEX events_name_seq ON events (name, seq);
