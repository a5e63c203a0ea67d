"""The dashboard's small pure pieces: a failure's short reason (one line, no server paths),
red Markdown across blank lines, the daily chart's day labels, the memory caption of a
stopped app, and the labelled initial admin password file."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from backend.accounts import auth
from backend.analytics.reports import DayPoint, app_daily_views
from backend.context import Context
from pages.dashboard import _ui as ui
from pages.dashboard.analytics import daily_chart
from pages.dashboard.app_details import MIB, memory_caption

REASON = ("The build failed: uv could not install the requirements in "
          "/srv/stcloud/.data/envs/3f2a9c/venv/lib/python3.12/site-packages\n\n"
          "error: No solution found when resolving dependencies:\n"
          "  Because nonexistent-pkg was not found in the package registry ...\n")


def test_short_reason_is_one_line_without_server_paths() -> None:
    short = ui.short_reason(REASON)
    assert "\n" not in short and "/srv" not in short and "envs" not in short
    assert short.startswith("The build failed: uv could not install")
    assert "site-packages" in short and len(short) <= ui.SHORT_REASON_CHARS
    assert ui.short_reason("x" * 200).endswith("…") and len(ui.short_reason("x" * 200)) == 80
    assert ui.short_reason("see https://example.com/a/b") == "see https://example.com/a/b"
    assert ui.short_reason(None) == "" and ui.short_reason("\n\n") == ""


def test_red_lines_survive_blank_lines() -> None:
    text = ui.red_lines("first\n\nsecond [x](y)")
    assert text == ":red[first]  \n:red[second \\[x\\]\\(y\\)]"
    assert all(part.startswith(":red[") and part.endswith("]")
               for part in text.split("  \n"))


def test_daily_chart_labels_each_bar_with_its_own_day() -> None:
    points = [DayPoint(date(2026, 12, d), d) for d in range(5, 8)]
    spec = daily_chart(points).to_dict()
    assert spec["encoding"]["x"]["type"] == "ordinal"
    assert "timeUnit" not in spec["encoding"]["x"]
    days = [r["day"] for r in spec["data"]["values"]]
    assert days == ["Dec 05", "Dec 06", "Dec 07"]


def test_daily_views_end_today(ctx: Context) -> None:
    admin = auth.create_user(ctx, "ada", "ada-password", is_admin=True)
    from backend.apps import service as apps
    app = apps.deploy_app(ctx, admin, repo_url="/srv/git/ada/x.git")
    now = datetime(2026, 12, 7, 23, 30, tzinfo=UTC)
    spec = daily_chart(app_daily_views(ctx, admin, app.id, days=30, now=now)).to_dict()
    assert spec["data"]["values"][-1]["day"] == "Dec 07"
    assert spec["encoding"]["x"]["axis"]["values"][-1] == "Dec 07"  # today is labelled


def test_memory_caption_of_a_stopped_app_says_when() -> None:
    assert memory_caption("running", 100 * MIB, 512 * MIB, "just now") == \
        "Latest: 100 MiB of 512 MiB"
    over = memory_caption("over_limit", 600 * MIB, 512 * MIB, "3 minutes ago")
    assert over == ("When it was stopped over its memory limit (3 minutes ago): "
                    "600 MiB of 512 MiB")
    assert memory_caption("crashed", 100 * MIB, 512 * MIB, "1 hour ago").startswith(
        "At the time it stopped (1 hour ago): 100 MiB")


def test_initial_password_file_is_labelled(ctx: Context) -> None:
    username, password = auth.ensure_first_admin(ctx) or ("", "")
    lines = auth.initial_password_file(ctx).read_text().splitlines()
    assert lines[:2] == [f"username: {username}", f"password: {password}"]


def test_the_chosen_workspace_is_remembered_per_user(ctx: Context) -> None:
    from backend import workspaces
    from backend.apps import service as apps
    from backend.errors import PermissionDenied
    ada = auth.create_user(ctx, "ada", "ada-password")
    bob = auth.create_user(ctx, "bob", "bob-password")
    team = apps.deploy_app(ctx, ada, repo_url="/srv/git/team/x.git").workspace_id
    assert workspaces.remembered_workspace(ctx, ada) is None
    workspaces.remember_workspace(ctx, ada, team)
    assert workspaces.remembered_workspace(ctx, ada) == team
    assert workspaces.remembered_workspace(ctx, bob) is None
    with pytest.raises(PermissionDenied):
        workspaces.remember_workspace(ctx, bob, team)
    assert workspaces.remembered_workspace(ctx, bob) is None
