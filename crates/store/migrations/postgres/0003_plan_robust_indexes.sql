-- Indexes whose predicate and key match the sweep's queries exactly, so the planner picks them
-- even without statistics. A prepared statement's generic plan is often made while the tables
-- are new and never analyzed; it then kept scanning every queued step (for schedule-to-start
-- deadlines) and every unfinished run (for run deadlines) through the claim and status
-- indexes, ~5 ms per sweep at 10,000 queued runs. These hold only unfinished rows with a
-- deadline, so they are small and the sweep's look-ups are index-only.

DROP INDEX steps_start_deadline;
-- Queued steps (waiting for nothing) with a schedule-to-start deadline.
CREATE INDEX steps_queued_start_deadline ON steps (start_deadline)
    WHERE status = 'queued' AND wait IS NULL AND start_deadline IS NOT NULL;

DROP INDEX runs_deadline;
-- Unfinished runs with a deadline.
CREATE INDEX runs_unfinished_deadline ON runs (deadline)
    WHERE status IN ('queued', 'running') AND deadline IS NOT NULL;
