-- no-transaction
-- `orders.status` may be `ignored` (bounces and auto-replies). SQLite cannot alter a CHECK
-- constraint, so the table is rebuilt as SQLite's "making other kinds of table schema
-- changes" procedure says: with foreign keys off (possible only outside a transaction,
-- hence `no-transaction`), so dropping the old table does not cascade to `order_lines`,
-- and the copy, drop and rename in one immediate transaction.
PRAGMA foreign_keys = OFF;
BEGIN IMMEDIATE;
CREATE TABLE orders_rebuilt (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    message_id  TEXT    NOT NULL UNIQUE,
    customer    TEXT    NOT NULL,
    po_number   TEXT,
    status      TEXT    NOT NULL CHECK (status IN ('accepted', 'rejected', 'ignored')),
    reason      TEXT,
    total_cents INTEGER NOT NULL DEFAULT 0,
    created_at  TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
INSERT INTO orders_rebuilt (id, message_id, customer, po_number, status, reason, total_cents, created_at)
    SELECT id, message_id, customer, po_number, status, reason, total_cents, created_at FROM orders;
DROP TABLE orders;
ALTER TABLE orders_rebuilt RENAME TO orders;
COMMIT;
PRAGMA foreign_keys = ON;
