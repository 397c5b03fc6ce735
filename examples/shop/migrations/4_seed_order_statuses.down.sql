-- airlock:data
DELETE FROM order_statuses;
