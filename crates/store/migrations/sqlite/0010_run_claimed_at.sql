-- Claiming a run's step no longer rewrites the run's status (measured: BENCHMARKS.md, "A claim
-- rewrites no index").
--
-- A run stays `queued` in its row until it ends; the first claim of one of its steps sets
-- `claimed_at`, and reads show a queued run with a claim as `running` (`rows::RUN_SHOWN_STATUS`).
-- `claimed_at` is in no index, so the claim updates none of the indexes of `runs` that hold
-- `status`. Runs a binary before this one marked `running` keep that status and read as they did.
ALTER TABLE runs ADD COLUMN claimed_at BIGINT;
