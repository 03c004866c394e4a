-- One object's events in log order: "this object's history, newest first" reads the index
-- backwards (per partition, merged) and stops at the page size, however often the object
-- changed. With time as the last column the planner had to sort every event of the object.
CREATE INDEX events_object_log ON events (name, resource, namespace, id);
DROP INDEX events_object;
