-- The name a DAG file gives a step (`[[step]] name`), or `on_failure`; NULL for children of
-- workflow components, which have only their position.
ALTER TABLE steps ADD COLUMN name TEXT;
