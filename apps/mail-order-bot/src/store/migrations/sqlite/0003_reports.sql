-- One row per daily summary written; `tick` (the schedule tick) makes a redelivery a no-op.
CREATE TABLE IF NOT EXISTS reports (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    tick       TEXT    NOT NULL UNIQUE,
    path       TEXT    NOT NULL,
    orders     INTEGER NOT NULL,
    created_at TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
