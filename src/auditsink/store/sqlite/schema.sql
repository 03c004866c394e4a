-- auditsink SQLite schema, version 5 (store/sqlite/upgrade.py brings older files up to it).
-- Bodies are compressed per commit group (one zstd frame per "blob"), which compresses far
-- better than per-event; each event row points into its blob. Repeated strings (users, verbs,
-- resources, namespaces, user agents, ...) are stored once in `strings` and referenced by id,
-- which keeps rows and indexes small.
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS strings (id INTEGER PRIMARY KEY, value TEXT NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS blobs (
  id INTEGER PRIMARY KEY,
  max_time INTEGER NOT NULL,
  data BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS events (
  id INTEGER PRIMARY KEY,          -- log position: commit order (one writer)
  time INTEGER NOT NULL,           -- stageTimestamp, microseconds since the epoch
  audit_id TEXT NOT NULL,
  cluster INTEGER NOT NULL,        -- strings.id ("" = default cluster)
  stage INTEGER NOT NULL,          -- index in model.STAGES
  level INTEGER NOT NULL,          -- index in model.LEVELS
  verb INTEGER NOT NULL,
  user INTEGER NOT NULL,
  groups INTEGER NOT NULL,         -- strings.id of the newline-joined group list
  api_group INTEGER NOT NULL,
  resource INTEGER NOT NULL,
  subresource INTEGER NOT NULL,
  namespace INTEGER NOT NULL,
  name TEXT NOT NULL,
  code INTEGER NOT NULL,
  source_ip INTEGER NOT NULL,
  user_agent INTEGER NOT NULL,
  impersonated_user INTEGER NOT NULL DEFAULT 0,  -- strings.id, 0 when nobody was impersonated
  decision INTEGER NOT NULL DEFAULT 0,           -- 0 none, 1 allow, 2 forbid (authorizer)
  uri INTEGER NOT NULL DEFAULT 0,                -- strings.id of the path of requestURI
  blob INTEGER NOT NULL,
  offset INTEGER NOT NULL,
  length INTEGER NOT NULL
);
-- Deduplication of retried batches (design.md): cluster + auditID + stage + stageTimestamp.
-- Time comes first: events arrive roughly in time order, so inserts append to the index
-- instead of touching a random page each (measured: about half the insert cost), and the
-- same index serves time ranges.
CREATE UNIQUE INDEX IF NOT EXISTS events_dedup ON events (time, audit_id, stage, cluster);
-- Every index below ends in time, and SQLite appends the rowid (the log position) to each:
-- pages in time order, (time, id), walk an index backwards and stop at the page size,
-- however many events match, with no sort (store/sql/reads.py).
CREATE INDEX IF NOT EXISTS events_user ON events (user, time);
-- Requests made *as* someone (kubectl --as): few, so a partial index (0 is nobody).
CREATE INDEX IF NOT EXISTS events_impersonated ON events (impersonated_user, time)
  WHERE impersonated_user <> 0;
CREATE INDEX IF NOT EXISTS events_namespace ON events (namespace, time);
CREATE INDEX IF NOT EXISTS events_code ON events (code, time) WHERE code >= 400;
-- Lookups by auditID: the log's (auditID, id) pairs in runs of 32,768 events, each written at
-- once, sorted, when the log holds it whole (store/sqlite/audit_ids.py); an index on
-- events (audit_id) took a random page per event at every commit. meta 'audit_ids_runs'
-- counts the runs indexed; lookups scan the events after them.
CREATE TABLE IF NOT EXISTS audit_ids (
  run INTEGER NOT NULL,            -- (id - 1) / 32768
  audit_id NOT NULL,               -- as in events
  id INTEGER NOT NULL,             -- events.id
  PRIMARY KEY (run, audit_id, id)
) WITHOUT ROWID;
-- One object's history: the (name, resource, namespace, time, id) of the events that name an
-- object, written with the same runs and led by the run as audit_ids is, so that a run is an
-- append (store/sqlite/objects.py); an index on events took a leaf page per such event at
-- every commit (a quarter of the insert). Reads scan the events after the runs too.
CREATE TABLE IF NOT EXISTS objects (
  run INTEGER NOT NULL,            -- as in audit_ids
  obj_name TEXT NOT NULL,          -- events.name (never "")
  obj_resource INTEGER NOT NULL,   -- events.resource
  obj_namespace INTEGER NOT NULL,  -- events.namespace
  obj_time INTEGER NOT NULL,       -- events.time
  event_id INTEGER NOT NULL,       -- events.id
  PRIMARY KEY (run, obj_name, obj_resource, obj_namespace, obj_time, event_id)
) WITHOUT ROWID;
-- The time range of each run's entries in objects, so that a page in time order reads the
-- newest runs only (a run with no entry has no row).
CREATE TABLE IF NOT EXISTS runs (
  run INTEGER PRIMARY KEY,
  min_time INTEGER NOT NULL,
  max_time INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS rejected (
  id INTEGER PRIMARY KEY,
  time REAL NOT NULL,              -- when it was received (unix seconds)
  cluster TEXT NOT NULL,
  error TEXT NOT NULL,
  body BLOB NOT NULL               -- the start of the item, never more than a few KB
);
-- Every cluster an event was ever stored from, for the UI's cluster selector.
CREATE TABLE IF NOT EXISTS clusters (name TEXT PRIMARY KEY);
CREATE TABLE IF NOT EXISTS cursors (name TEXT PRIMARY KEY, position INTEGER NOT NULL);
-- State a component keeps beside the log, so that a restart does not rebuild it from the whole
-- log (the overview's hourly rollup, query/rollup.py).
CREATE TABLE IF NOT EXISTS state (name TEXT PRIMARY KEY, data BLOB NOT NULL);
-- Alerts raised by the rules consumer; `event` is the log position of the event behind it.
CREATE TABLE IF NOT EXISTS alerts (
  id INTEGER PRIMARY KEY,
  time INTEGER NOT NULL,           -- the event's stageTimestamp, microseconds since the epoch
  rule TEXT NOT NULL,
  priority INTEGER NOT NULL,       -- 0 EMERGENCY ... 7 DEBUG (Falco's order)
  output TEXT NOT NULL,
  audit_id TEXT NOT NULL,
  event INTEGER NOT NULL,
  cluster TEXT NOT NULL,
  tags TEXT NOT NULL,              -- JSON list
  fields TEXT NOT NULL             -- JSON object of the output fields
);
CREATE INDEX IF NOT EXISTS alerts_time ON alerts (time);
CREATE INDEX IF NOT EXISTS alerts_rule ON alerts (rule, time);
CREATE INDEX IF NOT EXISTS alerts_event ON alerts (event);
-- Batches an output gave up on (forward/): the range of the log, replayable from the CLI.
CREATE TABLE IF NOT EXISTS dead_letters (
  id INTEGER PRIMARY KEY,
  consumer TEXT NOT NULL,          -- the output's cursor name
  first INTEGER NOT NULL,          -- log positions of the batch's first and last event
  last INTEGER NOT NULL,
  events INTEGER NOT NULL,
  attempts INTEGER NOT NULL,
  error TEXT NOT NULL,             -- the last failure, as the output reported it
  time REAL NOT NULL               -- when it was given up (unix seconds)
);
