-- `orders.status` may be `ignored` (bounces and auto-replies).
ALTER TABLE orders DROP CONSTRAINT IF EXISTS orders_status_check;
ALTER TABLE orders ADD CONSTRAINT orders_status_check
    CHECK (status IN ('accepted', 'rejected', 'ignored'));
