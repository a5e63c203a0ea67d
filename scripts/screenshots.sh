#!/usr/bin/env bash
# Regenerate the documentation's screenshots (docs/images/*.png) from the browser tests:
# each flow saves its named shots when STCLOUD_SCREENSHOTS is set (tests/browser/docs_shots.py).
# One test file at a time (Chromium is heavy). Extra arguments go to pytest.
# Usage: scripts/screenshots.sh [pytest args...]   (output folder: $STCLOUD_SCREENSHOTS,
# default docs/images). Afterwards: .venv/bin/python -m pytest tests/unit/test_docs_images.py
set -euo pipefail
cd "$(dirname "$0")/.."
out="${STCLOUD_SCREENSHOTS:-docs/images}"
mkdir -p "$out"
for file in tests/browser/test_*.py; do
  echo "=== $file -> $out ==="
  STCLOUD_SCREENSHOTS="$out" .venv/bin/python -m pytest "$file" -x -q -p no:cacheprovider "$@"
done
ls -l "$out"
