-- airlock:data
INSERT INTO order_statuses (name) VALUES ('new'), ('paid'), ('shipped'), ('cancelled');
