-- The app's first table.
CREATE TABLE todos (
    id integer PRIMARY KEY,
    title varchar(200) NOT NULL
);
