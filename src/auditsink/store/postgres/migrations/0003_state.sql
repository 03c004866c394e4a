-- State a component keeps beside the log, so that a restart does not rebuild it from the whole
-- log (the overview's hourly rollup, query/rollup.py).
CREATE TABLE state (name text PRIMARY KEY, data bytea NOT NULL);
