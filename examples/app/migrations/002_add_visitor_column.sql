-- Release 2 of the app records who visited; it refuses to run (unhealthy) before this exists.
ALTER TABLE visits ADD COLUMN visitor TEXT NOT NULL DEFAULT '';
CREATE INDEX visits_by_visitor ON visits (visitor);
