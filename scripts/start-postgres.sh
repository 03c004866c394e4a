#!/usr/bin/env bash
# Start a throwaway PostgreSQL for the tests and benchmarks (idempotent; installs nothing).
#
#   eval "$(scripts/start-postgres.sh)"   # exports AUDITSINK_TEST_POSTGRES
#
# PGDATA_DIR (default /tmp/auditsink-pg) and PGPORT (default 5433) can be overridden. fsync is
# off: this server is for tests only, never for audit data you want to keep.
set -euo pipefail

PGPORT="${PGPORT:-5433}"
PGDATA_DIR="${PGDATA_DIR:-/tmp/auditsink-pg}"
PGBIN="${PGBIN:-}"
if [ -z "$PGBIN" ]; then
  for dir in /usr/lib/postgresql/*/bin; do
    [ -x "$dir/initdb" ] && PGBIN="$dir"
  done
fi
if [ -z "$PGBIN" ] || [ ! -x "$PGBIN/initdb" ]; then
  echo "start-postgres: no PostgreSQL server binaries (apt-get install -y postgresql)" >&2
  exit 1
fi

# PostgreSQL refuses to run as root: run it as the postgres user when we are root.
as_pg() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

if [ ! -s "$PGDATA_DIR/PG_VERSION" ]; then
  mkdir -p "$PGDATA_DIR"
  [ "$(id -u)" = 0 ] && chown postgres: "$PGDATA_DIR"
  chmod 700 "$PGDATA_DIR"
  as_pg "$PGBIN/initdb" -D "$PGDATA_DIR" -U postgres -A trust -E UTF8 --no-locale >/dev/null
fi

if ! as_pg "$PGBIN/pg_ctl" -D "$PGDATA_DIR" status >/dev/null 2>&1; then
  as_pg "$PGBIN/pg_ctl" -D "$PGDATA_DIR" -l "$PGDATA_DIR/server.log" -w -t 60 start \
    -o "-h 127.0.0.1 -p $PGPORT -k $PGDATA_DIR -c fsync=off -c synchronous_commit=off \
        -c full_page_writes=off -c max_connections=200 -c shared_buffers=256MB" >/dev/null
fi

for _ in $(seq 1 100); do
  if "$PGBIN/pg_isready" -q -h 127.0.0.1 -p "$PGPORT"; then
    echo "export AUDITSINK_TEST_POSTGRES=postgresql://postgres@127.0.0.1:$PGPORT/postgres"
    exit 0
  fi
  sleep 0.1
done
echo "start-postgres: server on 127.0.0.1:$PGPORT did not become ready; see $PGDATA_DIR/server.log" >&2
exit 1
