"""Server time to render the dashboard's app list (Home.py → My apps) for a workspace of
1000 apps with 50 favorites, against an empty workspace rendered in the same run.

Both are full script runs of the real Home.py under Streamlit's AppTest (signed in through
session state, as the dashboard tests do): navigation, sidebar, workspace switcher, the
listing query and one page of rows. The clock covers `AppTest.run()`; each measure is the
median of `--runs` runs after one warm-up. SQLite (WAL) in a temporary data dir.

    .venv/bin/python bench/dashboard.py [--runs 15] [--apps 1000] [--favorites 50]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from streamlit.testing.v1 import AppTest  # noqa: E402

from backend import workspaces  # noqa: E402
from backend.accounts import auth  # noqa: E402
from backend.context import open_context  # noqa: E402
from models import App, Favorite, Membership, Workspace, session_scope  # noqa: E402

TARGET_SECONDS = 1.0


def prepare(n_apps: int, n_favorites: int) -> None:
    """Two users: `full` (a workspace of n_apps, n_favorites starred) and `empty` (a
    workspace with no app)."""
    ctx = open_context()
    full = auth.create_user(ctx, "full", "full-password")
    empty = auth.create_user(ctx, "empty", "empty-password")
    states = ("running", "running", "running", "sleeping", "crashed", "queued")
    with session_scope(ctx.engine) as s:
        big, none = Workspace(name="full"), Workspace(name="empty")
        s.add_all([big, none])
        s.flush()
        s.add(Membership(user_id=full.id, workspace_id=big.id, role="admin"))
        s.add(Membership(user_id=empty.id, workspace_id=none.id, role="admin"))
        rows = [App(workspace_id=big.id, owner_id=full.id, subdomain=f"app-{i:04d}",
                    repo_url=f"https://github.com/full/repo-{i}", state=states[i % 6],
                    state_reason="") for i in range(n_apps)]
        s.add_all(rows)
        s.flush()
        step = max(1, n_apps // max(n_favorites, 1))
        s.add_all([Favorite(user_id=full.id, app_id=rows[i].id)
                   for i in range(0, n_apps, step)][:n_favorites])
    assert len(workspaces.list_workspaces(ctx, full)) == 1


def render(username: str) -> float:
    at = AppTest.from_file(str(ROOT / "Home.py"), default_timeout=120)
    at.session_state["authentication_status"] = True
    at.session_state["username"] = username
    started = time.perf_counter()
    at.run()
    elapsed = time.perf_counter() - started
    assert not at.exception, at.exception
    assert [t.value for t in at.title] == ["My apps"]
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--apps", type=int, default=1000)
    parser.add_argument("--favorites", type=int, default=50)
    args = parser.parse_args()
    data = tempfile.mkdtemp(prefix="bench-dashboard-")
    for name in [n for n in os.environ if n.startswith("STCLOUD_") or n == "DATABASE_URL"]:
        del os.environ[name]
    os.environ.update(STCLOUD_DATA_DIR=data, STCLOUD_DOMAIN="bench.test")
    os.chdir(ROOT)
    prepare(args.apps, args.favorites)
    render("full"), render("empty")  # warm-up: imports, caches, first connection
    times: dict[str, list[float]] = {"full": [], "empty": []}
    for _ in range(args.runs):  # alternate, so drift hits both alike
        times["full"].append(render("full"))
        times["empty"].append(render("empty"))
    full, empty = (statistics.median(times[k]) for k in ("full", "empty"))
    result = {"apps": args.apps, "favorites": args.favorites, "runs": args.runs,
              "median_full_s": round(full, 4), "median_empty_s": round(empty, 4),
              "overhead_s": round(full - empty, 4), "ratio": round(full / empty, 2),
              "target_s": TARGET_SECONDS, "met": full < TARGET_SECONDS, "raw": times}
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "dashboard.json").write_text(json.dumps(result, indent=2))
    print(f"Home with {args.apps} apps / {args.favorites} favorites: {full * 1000:.0f} ms "
          f"(median of {args.runs}); empty list: {empty * 1000:.0f} ms; "
          f"{full / empty:.2f}x; target < {TARGET_SECONDS:.0f} s: "
          f"{'met' if full < TARGET_SECONDS else 'NOT met'}")


if __name__ == "__main__":
    main()
