"""A deploy's phases read from the build log (supervisor/builds/phases.py): each phase
begins at the line that names it, only moves forward, reused environments skip to the
start, a start long after the build is a run of its own, and a silent log says so."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from backend.apps.log_files import build_log_path
from backend.platform.settings_load import load_settings
from supervisor.builds import phases

T0 = datetime(2026, 12, 7, 12, 0, 0, tzinfo=UTC)


def log(*lines: tuple[int, str]) -> str:
    return "\n".join(f"[{(T0 + timedelta(seconds=s)):%Y-%m-%d %H:%M:%S}] {text}"
                     for s, text in lines)


BUILD = [(0, "Deploying file:///r (branch main, main file streamlit_app.py)."),
         (2, "Checked out commit abcdef123456."),
         (3, "==> phase resolve"), (4, "Resolved 53 packages in 1.2s"),
         (9, "Prepared 12 packages in 5s"), (11, "Installed 53 packages in 2s"),
         (11, "==> Environment ready")]


def states(html: str) -> dict[str, str]:
    import re
    return dict(re.findall(r'data-phase="(\w+)" data-state="(\w+)"', html))


def test_phases_advance_with_the_log_lines() -> None:
    run = phases.parse(log(*BUILD[:4]))
    assert run.current == "download" and run.details["resolve"] == "53 packages"
    html = phases.render(run, T0 + timedelta(seconds=6))
    assert states(html) == {"clone": "done", "resolve": "done", "download": "running",
                            "install": "waiting", "start": "waiting", "health": "waiting"}
    assert "Step 3 of 6 · 6 s so far" in html and "stuck" not in html
    assert "commit abcdef123456" in html
    done = phases.parse(log(*BUILD))
    assert done.current == "install" and done.finished is not None
    assert states(phases.render(done, T0 + timedelta(seconds=12)))["install"] == "done"


def test_an_earlier_run_is_forgotten_and_phases_never_go_back() -> None:
    text = log(*BUILD, (100, "Deploying again"), (101, "Checked out commit 1234."),
               (102, "Prepared 1 package in 1s"), (103, "Resolved 1 package in 1s"))
    run = phases.parse(text)
    assert run.started["clone"] == T0 + timedelta(seconds=100)
    assert run.current == "install", "Resolved after Prepared does not go back"
    again = phases.parse(text + "\n" + log((104, "==> phase resolve")))
    assert again.current == "resolve" and "install" not in again.started


def test_a_reused_environment_and_the_start() -> None:
    run = phases.parse(log(BUILD[0], BUILD[1], (3, "Reusing the environment abc (same).")))
    assert run.finished is not None
    started = phases.with_start(run, T0 + timedelta(seconds=3.5), None)
    assert states(phases.render(started, T0 + timedelta(seconds=5))) == {
        "clone": "done", "resolve": "done", "download": "done", "install": "done",
        "start": "running", "health": "waiting"}
    healthy = phases.with_start(run, T0 + timedelta(seconds=3.5), T0 + timedelta(seconds=6))
    assert healthy.current == "health"
    # The mark of an earlier start (older than this build's lines): the start is to come.
    assert phases.with_start(phases.parse(log(*BUILD)), T0 - timedelta(hours=1),
                             None).current == "install"


def test_a_sync_with_nothing_to_do_ends_the_download() -> None:
    run = phases.parse(log(*BUILD[:4], (5, "Checked 41 packages in 1ms")))
    assert run.current == "install" and run.details["install"] == "41 packages"


def test_a_wake_lists_start_and_health_only() -> None:
    run = phases.with_start(phases.parse(log(*BUILD)), T0 + timedelta(hours=5), None)
    html = phases.render(run, T0 + timedelta(hours=5, seconds=2))
    assert states(html) == {"start": "running", "health": "waiting"}
    assert "Step 1 of 2" in html


def test_a_silent_log_looks_stuck() -> None:
    html = phases.render(phases.parse(log(*BUILD[:4])), T0 + timedelta(seconds=50))
    assert "no new output for 46 s: this step may be stuck" in html
    assert 'Download packages <span class="muted">· 46 s</span>' in html


def test_details_are_escaped_and_an_empty_log_shows_nothing() -> None:
    assert phases.render(phases.parse(""), T0) == ""
    run = phases.parse(log((0, "Deploying x"), (1, "Checked out commit <b>x</b>.")))
    assert "<b>" not in phases.render(run, T0)


def test_a_queued_or_building_app_does_not_show_the_previous_run(tmp_path: Path) -> None:
    settings = load_settings(env={}, data_dir=tmp_path / "data")
    path = build_log_path(settings, 5)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(log(*BUILD) + "\n")
    soon, later = T0 + timedelta(seconds=20), T0 + timedelta(minutes=10)
    assert phases.current_html(settings, 5, "building", soon) != ""  # committing
    assert phases.current_html(settings, 5, "building", later) == ""
    assert phases.current_html(settings, 5, "queued", later) == ""
