-- Orders, one per message identity; rejected orders are kept with their reason.
CREATE TABLE IF NOT EXISTS orders (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    message_id  TEXT    NOT NULL UNIQUE,
    customer    TEXT    NOT NULL,
    po_number   TEXT,
    status      TEXT    NOT NULL CHECK (status IN ('accepted', 'rejected')),
    reason      TEXT,
    total_cents INTEGER NOT NULL DEFAULT 0,
    created_at  TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);

-- One line per SKU of an accepted order, priced when the order was made.
CREATE TABLE IF NOT EXISTS order_lines (
    order_id         INTEGER NOT NULL REFERENCES orders (id) ON DELETE CASCADE,
    sku              TEXT    NOT NULL,
    quantity         INTEGER NOT NULL CHECK (quantity BETWEEN 1 AND 10000),
    unit_price_cents INTEGER NOT NULL,
    PRIMARY KEY (order_id, sku)
);
