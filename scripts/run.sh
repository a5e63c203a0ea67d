#!/usr/bin/env bash
# Install, then run the whole system on embedded defaults: supervisor, proxy, dashboard.
# Prints the dashboard URL and, on first start, the admin's credentials.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
exec .venv/bin/python -m supervisor "$@"
