-- The state file of contract version 1 (docs/contract.md), as the runtime manager creates it.
-- The demo (examples/demo-state.rs), the tests (tests/integration/harness.rs) and the benchmark
-- (examples/bench.rs) all create their state files from this one definition.
CREATE TABLE runtime_records (
    game_id      TEXT    PRIMARY KEY NOT NULL,
    container_id TEXT,              -- Docker container id or name; NULL: none was created
    status       TEXT    NOT NULL,  -- 'creating' | 'running' | 'stopped' | 'removed' (others may appear)
    last_op_at   INTEGER NOT NULL   -- Unix epoch milliseconds (UTC) of the last status change
);
CREATE INDEX runtime_records_status_last_op_at ON runtime_records (status, last_op_at);

CREATE TABLE game_leases (
    game_id    TEXT    PRIMARY KEY NOT NULL,
    holder     TEXT    NOT NULL,    -- who holds it, e.g. 'rt-cleanup/<host>/<pid>'
    expires_at INTEGER NOT NULL     -- Unix epoch milliseconds; a lease with expires_at <= now is free
);

CREATE TABLE operation_log (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    game_id       TEXT    NOT NULL,
    op_kind       TEXT    NOT NULL, -- rt-cleanup writes 'cleanup_container'
    op_source     TEXT    NOT NULL, -- 'auto_ttl' by default, or the value of --op-source
    outcome       TEXT    NOT NULL, -- 'success' | 'failure'
    error_code    TEXT,             -- NULL on a plain success
    error_message TEXT,
    container_id  TEXT,
    started_at    INTEGER NOT NULL, -- Unix epoch milliseconds
    finished_at   INTEGER NOT NULL
);

PRAGMA user_version = 1;
