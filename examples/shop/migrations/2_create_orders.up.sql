CREATE TABLE orders (
    id INTEGER PRIMARY KEY,
    customer_id INTEGER NOT NULL REFERENCES customers (id),
    total_cents INTEGER NOT NULL CHECK (total_cents >= 0),
    status TEXT NOT NULL DEFAULT 'new'
);

CREATE INDEX orders_customer_id ON orders (customer_id);

-- Keep an audit trail of status changes.
CREATE TABLE order_events (
    order_id INTEGER NOT NULL REFERENCES orders (id),
    status TEXT NOT NULL,
    at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP
);

CREATE TRIGGER orders_status_audit AFTER UPDATE OF status ON orders
BEGIN
    INSERT INTO order_events (order_id, status) VALUES (NEW.id, NEW.status);
END;
