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
# The process runtime sandboxes apps with bubblewrap and slirp4netns (docs/security.md);
# without them it refuses apps unless process_sandbox = "off" (single-tenant).
sandbox_missing=()
command -v bwrap >/dev/null || sandbox_missing+=(bubblewrap)
command -v slirp4netns >/dev/null || sandbox_missing+=(slirp4netns)
command -v setpriv >/dev/null || sandbox_missing+=(util-linux)
if [ "${#sandbox_missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "Installing the app sandbox: ${sandbox_missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${sandbox_missing[@]}" >/dev/null
  else
    echo "warning: the app sandbox needs ${sandbox_missing[*]}: run" \
      "'sudo apt-get install -y ${sandbox_missing[*]}'; until then the process runtime" \
      "refuses apps (or set process_sandbox = \"off\" for a single-tenant machine)." >&2
  fi
fi
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
want_uv=$(sed -n 's/^uv==//p' requirements.txt)
if [ "$(.venv/bin/uv --version 2>/dev/null | cut -d' ' -f2)" != "$want_uv" ]; then
  .venv/bin/python -m pip install -q --disable-pip-version-check "uv==$want_uv"
fi
reqs=requirements.txt
[ "${1:-}" = dev ] && reqs=requirements-dev.txt
.venv/bin/uv pip install --quiet --python .venv/bin/python -r "$reqs"
