-- Schema 5 (issue 18): who a request was made *as*, the authorizer's decision and the request
-- path become columns, so that every selector field compiles to SQL; the object index is in
-- time order; clusters are listed. The new columns are filled from the stored bodies by
-- store/postgres/upgrade.py in the same transaction.
ALTER TABLE events ADD COLUMN impersonated_user integer NOT NULL DEFAULT 0;  -- 0: nobody
ALTER TABLE events ADD COLUMN decision smallint NOT NULL DEFAULT 0;  -- 0 none, 1 allow, 2 forbid
ALTER TABLE events ADD COLUMN uri integer NOT NULL DEFAULT 0;  -- strings.id of the path
CREATE INDEX events_impersonated ON events (impersonated_user, time) WHERE impersonated_user <> 0;
CREATE INDEX events_object_time ON events (name, resource, namespace, time) WHERE name <> '';
DROP INDEX events_object_log;
CREATE TABLE clusters (name text PRIMARY KEY);
INSERT INTO clusters (name) SELECT DISTINCT s.value FROM events JOIN strings s ON s.id = events.cluster;
CREATE INDEX alerts_event ON alerts (event);
