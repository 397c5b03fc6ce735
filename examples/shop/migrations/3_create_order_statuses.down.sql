DROP TABLE order_statuses;
