#!/usr/bin/env bash
# Install, then run the whole test suite. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh dev
# Debian packages the tests use: Chromium (browser tests), an emoji font (screenshots),
# sshd (private-repo clones over SSH with a deploy key).
missing=()
command -v chromium >/dev/null || missing+=(chromium)
[ -e /usr/share/fonts/truetype/noto/NotoColorEmoji.ttf ] || missing+=(fonts-noto-color-emoji)
[ -x /usr/sbin/sshd ] || missing+=(openssh-server)
if [ "${#missing[@]}" -gt 0 ]; then
  echo "Installing Debian packages for the tests: ${missing[*]}"
  sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi
set +e
if [ -z "${STCLOUD_TEST_POSTGRES:-}" ]; then
  .venv/bin/python -m pytest "$@"
  rc=$?
else
  # Two passes at once (the suite mostly waits on subprocesses, so two cores carry both):
  # SQLite, everything; PostgreSQL, every test that uses a database (tests/conftest.py).
  pg_log=$(mktemp -t stcloud-postgresql-pass.XXXXXX)
  echo "PostgreSQL pass (${STCLOUD_TEST_POSTGRES##*@}) runs alongside; its output: $pg_log"
  STCLOUD_TEST_DATABASE=postgresql .venv/bin/python -m pytest \
    --basetemp="$(mktemp -d -t stcloud-pg-pass.XXXXXX)" "$@" >"$pg_log" 2>&1 &
  pg_pid=$!
  .venv/bin/python -m pytest --basetemp="$(mktemp -d -t stcloud-sqlite-pass.XXXXXX)" "$@"
  rc=$?
  wait "$pg_pid"
  pg_rc=$?
  echo "=== PostgreSQL pass (exit $pg_rc) ==="
  cat "$pg_log"
  [ "$rc" = 0 ] && rc=$pg_rc
fi
set -e
if [ "$rc" = 5 ]; then echo "error: pytest collected no tests" >&2; exit 1; fi
exit "$rc"
