-- Index only the rows each lookup is for. SQLite indexes hold NULLs and every status, so the
-- full indexes these replace were maintained on every insert and status change of every step,
-- although the claim looks only at queued steps, the lease sweep only at running ones, and the
-- deadline, timer and event lookups only at steps that have one.

DROP INDEX steps_status_created_at;
-- Claiming queued steps that wait for nothing, oldest first.
CREATE INDEX steps_queued_created_at ON steps (created_at) WHERE status = 'queued' AND wait IS NULL;

DROP INDEX steps_status_lease;
-- Finding running steps whose lease has expired.
CREATE INDEX steps_running_lease ON steps (lease_expires_at) WHERE status = 'running';

DROP INDEX steps_wait_wake_at;
-- Timers and event timeouts that passed; workflows waiting on children.
CREATE INDEX steps_wait_wake_at ON steps (wait, wake_at) WHERE wait IS NOT NULL;

DROP INDEX steps_wait_event;
-- Workflows waiting for an event.
CREATE INDEX steps_wait_event ON steps (wait_event) WHERE wait_event IS NOT NULL;

DROP INDEX steps_start_deadline;
-- Queued steps with a schedule-to-start deadline.
CREATE INDEX steps_start_deadline ON steps (start_deadline) WHERE start_deadline IS NOT NULL;

DROP INDEX runs_deadline;
-- Runs with a run timeout.
CREATE INDEX runs_deadline ON runs (deadline) WHERE deadline IS NOT NULL;
