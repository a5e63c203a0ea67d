#!/usr/bin/env bash
# Install what the project needs into .venv (idempotent). Usage: scripts/install.sh [dev]
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  echo "error: Python 3.11 or newer is needed ($PYTHON is $("$PYTHON" --version 2>&1))." >&2
  exit 1
fi
command -v git >/dev/null || { echo "error: git is needed (apt-get install -y git)." >&2; exit 1; }
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
want_uv=$(sed -n 's/^uv==//p' requirements.txt)
if [ "$(.venv/bin/uv --version 2>/dev/null | cut -d' ' -f2)" != "$want_uv" ]; then
  .venv/bin/python -m pip install -q --disable-pip-version-check "uv==$want_uv"
fi
reqs=requirements.txt
[ "${1:-}" = dev ] && reqs=requirements-dev.txt
.venv/bin/uv pip install --quiet --python .venv/bin/python -r "$reqs"
