#!/usr/bin/env bash
# Install (if missing) and start Debian's PostgreSQL on 127.0.0.1:5432 with a superuser role
# `stcloud` for the tests, then print the URL the tests read from STCLOUD_TEST_POSTGRES.
# Usage: export STCLOUD_TEST_POSTGRES=$(bash scripts/ci-postgres.sh)
set -euo pipefail
sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
if ! command -v pg_lsclusters >/dev/null || [ -z "$(pg_lsclusters -h 2>/dev/null)" ]; then
  echo "ci-postgres: installing postgresql" >&2
  $sudo apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq postgresql >/dev/null
fi
read -r version cluster port status _ < <(pg_lsclusters -h | head -n1)
if [ "$status" != online ]; then
  echo "ci-postgres: starting cluster $version/$cluster" >&2
  # pg_ctlcluster talks on stdout ("Removed stale pid file."): only the URL may go there.
  $sudo pg_ctlcluster "$version" "$cluster" start >&2
fi
as_postgres() {
  if [ "$(id -un)" = postgres ]; then "$@"
  elif [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"
  else sudo -u postgres "$@"; fi
}
for _ in $(seq 1 50); do
  as_postgres pg_isready -q -h 127.0.0.1 -p "$port" && break
  sleep 0.2  # waiting for the server to accept connections, bounded to 10 s
done
as_postgres psql -q -p "$port" -v ON_ERROR_STOP=1 -c \
  "DO \$\$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'stcloud') THEN
     CREATE ROLE stcloud LOGIN SUPERUSER PASSWORD 'stcloud'; END IF; END \$\$;" >&2
echo "postgresql+psycopg://stcloud:stcloud@127.0.0.1:${port}/postgres"
