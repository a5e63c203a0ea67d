#!/usr/bin/env bash
# Install, then run the whole test suite. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh dev
# Debian packages the tests use: Chromium (browser tests), an emoji font (screenshots),
# sshd (private-repo clones over SSH with a deploy key), a container registry (the swarm's
# image distribution), the process runtime's sandbox (bubblewrap, slirp4netns).
missing=()
command -v chromium >/dev/null || missing+=(chromium)
[ -e /usr/share/fonts/truetype/noto/NotoColorEmoji.ttf ] || missing+=(fonts-noto-color-emoji)
[ -x /usr/sbin/sshd ] || missing+=(openssh-server)
[ -x /usr/bin/docker-registry ] || missing+=(docker-registry)
command -v bwrap >/dev/null || missing+=(bubblewrap)
command -v slirp4netns >/dev/null || missing+=(slirp4netns)
if [ "${#missing[@]}" -gt 0 ]; then
  echo "Installing Debian packages for the tests: ${missing[*]}"
  sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi
if [ -n "${STCLOUD_TEST_POSTGRES:-}" ] \
   && ! [[ "$STCLOUD_TEST_POSTGRES" =~ ^postgresql(\+[a-z0-9]+)?://[^[:space:]]+$ ]]; then
  echo "error: STCLOUD_TEST_POSTGRES is not one PostgreSQL URL: '$STCLOUD_TEST_POSTGRES'" >&2
  exit 2
fi
# Lint (ruff and strict mypy, scripts/lint.sh), then three pytest passes: the Chromium flows
# alone first (under load their waits time out), then the rest on SQLite and, when STCLOUD_TEST_POSTGRES is set, the database tests on PostgreSQL
# side by side (tests/conftest.py picks them). Exit code 5 (nothing selected) counts as a pass
# unless every pass selected nothing.
mkdir -p .test-logs
pytest=(.venv/bin/python -m pytest --durations=15)
results=()
record() { # record NAME RC
  results+=("$1=$2")
}
set +e
echo "=== Lint (ruff, strict mypy) ==="
bash scripts/lint.sh 2>&1 | tee .test-logs/lint.log
record lint "${PIPESTATUS[0]}"
echo "=== Chromium flows (SQLite) ==="
"${pytest[@]}" -m browser "$@" 2>&1 | tee .test-logs/browser.log
record browser "${PIPESTATUS[0]}"
pg_pid=""
if [ -n "${STCLOUD_TEST_POSTGRES:-}" ]; then
  echo "=== PostgreSQL pass (${STCLOUD_TEST_POSTGRES##*@}) started beside the SQLite pass; output in .test-logs/postgresql.log ==="
  STCLOUD_TEST_DATABASE=postgresql "${pytest[@]}" -m "not browser" -p no:cacheprovider "$@" \
    > .test-logs/postgresql.log 2>&1 &
  pg_pid=$!
fi
echo "=== SQLite pass ==="
"${pytest[@]}" -m "not browser" "$@" 2>&1 | tee .test-logs/sqlite.log
record sqlite "${PIPESTATUS[0]}"
if [ -n "$pg_pid" ]; then
  wait "$pg_pid"
  pg_rc=$?
  echo "=== PostgreSQL pass output ==="
  cat .test-logs/postgresql.log
  record postgresql $pg_rc
fi
set -e
rc=0; selected=0
echo "=== Summary ==="
for r in "${results[@]}"; do
  name=${r%%=*}; code=${r#*=}
  echo "  $name: exit $code; $(grep -E '(passed|failed|errors?|deselected|no tests ran).* in [0-9.]+s' \
    ".test-logs/$name.log" | tail -1 | tr -d '=' | sed 's/^ *//')"
  grep -E '^(FAILED|ERROR) ' ".test-logs/$name.log" | cut -c1-300 | sed 's/^/    /' || true
  case "$code" in
    0) selected=1 ;;
    5) ;;
    *) selected=1; rc=1 ;;
  esac
done
if [ "$selected" = 0 ]; then echo "error: pytest collected no tests" >&2; exit 1; fi
exit "$rc"
