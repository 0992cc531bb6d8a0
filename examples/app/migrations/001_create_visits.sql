-- Every request to / is recorded here.
CREATE TABLE visits (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    path TEXT NOT NULL,
    visited_at REAL NOT NULL
);
