-- Key-value isolation, bounded lost leases, and re-executions after key-value conflicts.

-- Every key has a version: the value of a store-wide counter taken by the write that last changed
-- it. An attempt records the versions it read; its commit is refused if one changed since.
-- Keys written before versions existed read as version 1; new writes start at 2.
ALTER TABLE kv ADD COLUMN version BIGINT NOT NULL DEFAULT 1;
CREATE TABLE kv_clock (
    id    BIGINT NOT NULL PRIMARY KEY CHECK (id = 1),
    stamp BIGINT NOT NULL
);
INSERT INTO kv_clock (id, stamp) VALUES (1, 1);

-- 1 when the step's last completion conflicted: the next claim keeps its attempt number.
ALTER TABLE steps ADD COLUMN rerun BIGINT NOT NULL DEFAULT 0;
-- How many times the current attempt was re-executed after key-value conflicts.
ALTER TABLE steps ADD COLUMN reruns BIGINT NOT NULL DEFAULT 0;
ALTER TABLE attempts ADD COLUMN reruns BIGINT NOT NULL DEFAULT 0;
-- How many times the step's lease expired (its worker died or stalled).
ALTER TABLE steps ADD COLUMN lost_leases BIGINT NOT NULL DEFAULT 0;
