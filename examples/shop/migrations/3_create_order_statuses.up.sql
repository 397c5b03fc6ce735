CREATE TABLE order_statuses (name TEXT PRIMARY KEY);
