-- Schedule-to-start and whole-run timeouts.
-- A queued step not claimed by `start_deadline` fails (cleared when it is claimed).
ALTER TABLE steps ADD COLUMN start_deadline BIGINT;
-- A run not finished by `deadline` fails, and its unfinished steps are cancelled.
ALTER TABLE runs ADD COLUMN deadline BIGINT;

CREATE INDEX steps_start_deadline ON steps (start_deadline);
CREATE INDEX runs_deadline ON runs (deadline);
