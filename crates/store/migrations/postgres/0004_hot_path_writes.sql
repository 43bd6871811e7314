-- Less work per step on the hot tables (measured: BENCHMARKS.md, "Less database work per run").
--
-- Foreign keys of the rows every run and step writes are dropped. Each was checked by a trigger
-- running a query per inserted row, and connections plan every statement for its parameters
-- (`plan_cache_mode = force_custom_plan`, see `postgres::PgStore::open_with`), so each check was
-- also planned anew: about a quarter of the server's time under load went to them. These rows
-- are written only by the store's own transactions, which create a run with its root step, a
-- step under an existing run and deployment version, an attempt when its step is claimed, and
-- journal records and log lines under the attempt that produced them (nothing is ever deleted);
-- the conformance suite checks those contracts on both backends, and SQLite keeps its keys. The
-- keys of rows written rarely stay: deployments to components, run metadata to runs.
ALTER TABLE runs DROP CONSTRAINT runs_deployment_version_fkey;
ALTER TABLE steps DROP CONSTRAINT steps_run_id_fkey;
ALTER TABLE steps DROP CONSTRAINT steps_deployment_version_fkey;
ALTER TABLE attempts DROP CONSTRAINT attempts_step_id_fkey;
ALTER TABLE journal DROP CONSTRAINT journal_step_id_attempt_fkey;
ALTER TABLE logs DROP CONSTRAINT logs_step_id_attempt_fkey;

-- Only workflow children are looked up by parent: root steps (every run has one) no longer add an
-- entry on every insert and every status change.
DROP INDEX steps_parent_id;
CREATE INDEX steps_parent_id ON steps (parent_id, child_index) WHERE parent_id IS NOT NULL;
