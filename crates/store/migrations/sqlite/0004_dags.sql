-- DAG workflows: a deployment is a component or a DAG file, and a step may override the retry
-- policy and timeout of its deployment (a DAG step's `[step.policy]`).
ALTER TABLE deployments ADD COLUMN kind TEXT NOT NULL DEFAULT 'component';
ALTER TABLE steps ADD COLUMN policy TEXT;
