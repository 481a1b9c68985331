#!/usr/bin/env bash
# Install (if missing), start and provision a local PostgreSQL for the `postgres` tests of
# bench tune; idempotent. Prints the URL on stdout (everything else goes to stderr):
#   export BENCH_TEST_POSTGRES_URL="$(bash scripts/ci_postgres.sh)"
set -euo pipefail
USER_NAME="${BENCH_PG_USER:-bench}"
PASSWORD="${BENCH_PG_PASSWORD:-bench}"
DB="${BENCH_PG_DB:-bench}"
PORT="${BENCH_PG_PORT:-5432}"
log() { echo "ci_postgres: $*" >&2; }

if ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
  log "installing postgresql (apt-get)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq postgresql >&2
fi
VERSION="$(ls /usr/lib/postgresql | sort -V | tail -1)"
if ! pg_lsclusters -h 2>/dev/null | awk '{print $1" "$2}' | grep -qx "$VERSION main"; then
  log "creating cluster $VERSION/main"
  pg_createcluster "$VERSION" main --port "$PORT" >&2
fi
if ! pg_lsclusters -h | awk -v v="$VERSION" '$1==v && $2=="main" {print $4}' | grep -qx online; then
  log "starting cluster $VERSION/main"
  pg_ctlcluster "$VERSION" main start >&2
fi
for _ in $(seq 1 30); do
  su postgres -c "pg_isready -q -h 127.0.0.1 -p $PORT" && break
  sleep 1
done
psql_su() { su postgres -c "psql -p $PORT -v ON_ERROR_STOP=1 -qtAc \"$1\""; }
if [ "$(psql_su "SELECT 1 FROM pg_roles WHERE rolname='$USER_NAME'")" != "1" ]; then
  log "creating role $USER_NAME"
  psql_su "CREATE USER $USER_NAME PASSWORD '$PASSWORD' SUPERUSER" >&2
fi
if [ "$(psql_su "SELECT 1 FROM pg_database WHERE datname='$DB'")" != "1" ]; then
  log "creating database $DB"
  su postgres -c "createdb -p $PORT -O $USER_NAME $DB" >&2
fi
echo "postgresql+psycopg2://$USER_NAME:$PASSWORD@127.0.0.1:$PORT/$DB"
