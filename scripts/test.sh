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
if [ -n "${STCLOUD_TEST_POSTGRES:-}" ] \
   && ! [[ "$STCLOUD_TEST_POSTGRES" =~ ^postgresql(\+[a-z0-9]+)?://[^[:space:]]+$ ]]; then
  echo "error: STCLOUD_TEST_POSTGRES is not one PostgreSQL URL: '$STCLOUD_TEST_POSTGRES'" >&2
  exit 2
fi
set +e
.venv/bin/python -m pytest "$@"
rc=$?
if [ -n "${STCLOUD_TEST_POSTGRES:-}" ]; then
  # The same suite on PostgreSQL: every test that uses a database (tests/conftest.py). Run
  # after the SQLite pass, not beside it: together they loaded 2 cores enough to time out
  # browser flows.
  echo "=== PostgreSQL pass (${STCLOUD_TEST_POSTGRES##*@}) ==="
  STCLOUD_TEST_DATABASE=postgresql .venv/bin/python -m pytest "$@"
  pg_rc=$?
  [ "$rc" = 0 ] && rc=$pg_rc
fi
set -e
if [ "$rc" = 5 ]; then echo "error: pytest collected no tests" >&2; exit 1; fi
exit "$rc"
