-- Durable key-value storage of hypergraph:task/kv, one namespace per scope
-- (`<tenant>/<deployment>`). Writes land only with a successful step completion.
CREATE TABLE kv (
    scope TEXT NOT NULL,
    key TEXT NOT NULL,
    value BLOB NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (scope, key)
);
