#!/usr/bin/env bash
# Lint and type-check the tree: ruff (rules in pyproject.toml [tool.ruff]) over every
# Python file, then mypy (pyproject.toml [tool.mypy]: strict on backend/, models/,
# supervisor/, the Streamlit pages and Home.py). Exits non-zero when either finds anything.
# Needs the dev requirements: bash scripts/install.sh dev
set -uo pipefail
cd "$(dirname "$0")/.."
for tool in ruff mypy; do
  if [ ! -x ".venv/bin/$tool" ]; then
    echo "error: .venv/bin/$tool is missing: run 'bash scripts/install.sh dev' first." >&2
    exit 2
  fi
done
rc=0
echo "=== ruff check ==="
.venv/bin/ruff check . || rc=1
echo "=== mypy ==="
.venv/bin/mypy || rc=1
if [ "$rc" != 0 ]; then
  echo "error: lint findings above; fix them (scripts/lint.sh runs both checks again)." >&2
fi
exit "$rc"
