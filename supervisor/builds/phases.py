"""A deploy's phases as the build log shows them: clone, resolve, download, install, start,
health (and `packages`, apt for packages.txt, when the app has one).

The build log (`records.BuildLog`, one `[YYYY-mm-dd HH:MM:SS] text` line each) is the only
source: the oven page and `/__stcloud/status` read it while the app is queued, building or
starting, so what they show is what the log says. A phase begins at the line that names it:

- clone: `Deploying …` (a new deploy: everything before it is an earlier run);
- resolve: `Checked out commit …` (the clone ended);
- download / install: uv's own `Resolved N packages …` / `Prepared N packages …` lines;
- install ends with `==> Environment ready`, `Reusing the environment …` (nothing to do);
- `==> phase NAME` lines, which the builders write, name one directly;
- start and health are not in the build log: while the app is `starting`, `with_start`
  adds them from the app log (`with_start`: the run-start mark `mark_run_start` leaves,
  and Streamlit's "You can now view your Streamlit app" once it listens). A start with no
  build in this run (a wake, a restart) lists start and health only.

Phases only move forward, except an explicit `==> phase resolve` (a build started again
in its sandboxed phase). Timestamps have one-second resolution, as the log's.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from html import escape
from pathlib import Path

from backend.apps.log_files import app_log_path, build_log_path, current_run_lines, tail
from backend.platform.settings import Settings

ORDER = ("clone", "packages", "resolve", "download", "install", "start", "health")
LABELS = {"clone": "Clone the repository", "packages": "Install packages.txt (apt)",
          "resolve": "Resolve dependencies", "download": "Download packages",
          "install": "Install packages", "start": "Start the app",
          "health": "Wait for its health check"}
MARK = "==> phase "
STAMPED = re.compile(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)\] ?(.*)$")
UV_STEP = re.compile(r"^(Resolved|Prepared|Installed|Audited|Checked) (\d+) packages? in ")
LISTENING = "You can now view your Streamlit app"
START_GAP = 30  # seconds after a build's last line within which a start is that build's
STALE_AFTER = 60  # seconds after a run's install ended that a queued or building app's
# log is an earlier deploy's (a commit of the environment takes a few seconds)
QUIET_AFTER = 30  # seconds without a log line before the page says the phase looks stuck


@dataclass
class Run:
    """The phases of the newest run in a build log."""

    started: dict[str, datetime] = field(default_factory=dict)  # phase -> when it began
    details: dict[str, str] = field(default_factory=dict)
    current: str = ""
    finished: datetime | None = None  # install done (a reused or built environment)
    last_line: datetime | None = None

    def enter(self, name: str, at: datetime, *, back: bool = False) -> None:
        if self.current and ORDER.index(name) <= ORDER.index(self.current) and not back:
            return
        if back:
            for later in ORDER[ORDER.index(name):]:
                self.started.pop(later, None)
                self.details.pop(later, None)
        self.started[name] = at
        self.current, self.finished = name, None

    def shown(self) -> list[str]:
        """The phases this run lists: `packages` only when it had one; a run that began
        at `start` (a wake, a restart) lists start and health only."""
        if self.started and min(self.started, key=ORDER.index) == "start":
            return ["start", "health"]
        return [p for p in ORDER if p != "packages" or p in self.started]


def _at(stamp: str) -> datetime:
    return datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)


def parse(text: str) -> Run:
    """The newest run of the build log `text` (module docstring)."""
    run = Run()
    for raw in text.splitlines():
        m = STAMPED.match(raw)
        if not m:
            continue
        at, line = _at(m.group(1)), m.group(2).strip()
        run.last_line = at
        if line.startswith("Deploying "):
            run = Run(last_line=at)
            run.enter("clone", at)
        elif line.startswith(MARK):
            name = line[len(MARK):].strip()
            if name in ORDER:
                run.enter(name, at, back=name == "resolve")
        elif line.startswith("Checked out commit"):
            run.enter("resolve", at)
            commit = re.match(r"Checked out commit ([0-9a-f]{7,40})\b", line)
            if commit:  # only the hash: nothing else of a log line reaches the page
                run.details["clone"] = f"commit {commit.group(1)}"
        elif (uv := UV_STEP.match(line)) is not None:
            word, count = uv.group(1), uv.group(2)
            if word == "Resolved" and run.current == "resolve":
                run.details["resolve"] = f"{count} packages"
                run.enter("download", at)
            elif word == "Prepared" and run.current in ("resolve", "download"):
                run.details["download"] = f"{count} packages"
                run.enter("install", at)
            elif word in ("Installed", "Audited", "Checked") and run.current in (
                    "resolve", "download", "install"):
                run.enter("install", at)  # nothing to download: all of it was cached
                run.details["install"] = f"{count} packages"
        elif line.startswith("Reusing the environment"):
            for name in ("resolve", "download", "install"):
                run.started.setdefault(name, at)
            run.details["resolve"] = "same dependencies: environment reused"
            run.current, run.finished = "install", at
        elif line.startswith("==> Environment ready") and run.current in (
                "resolve", "download", "install"):
            run.enter("install", at)
            run.finished = at
    return run


def with_start(run: Run, started: datetime | None, listening: datetime | None) -> Run:
    """`run` with the start phase from `started` (this start's mark) and health from
    `listening` (Streamlit listens: the health check is next). A mark older than the run's
    last line is an earlier start's (this one has not begun); one made long after the build
    ended starts a run of its own (a wake, a restart)."""
    if started is None or (run.last_line is not None
                           and started < run.last_line - timedelta(seconds=1)):
        return run
    if run.last_line is None or started - run.last_line > timedelta(seconds=START_GAP):
        run = Run()
    run.enter("start", started)
    if listening is not None and listening >= started:
        run.enter("health", listening)
    run.last_line = max(t for t in (run.last_line, started, listening) if t is not None)
    return run


def _file_time(path: Path) -> datetime | None:
    try:
        return datetime.fromtimestamp(path.stat().st_mtime, UTC)
    except OSError:
        return None


def current_html(settings: Settings, app_id: int, state: str,
                 now: datetime | None = None) -> str:
    """The phases of the app's deploy as the oven page shows them (`render`); "" when the
    log has none. `state`: the app's state (`starting` adds start and health)."""
    now = now or datetime.now(UTC)
    run = parse(tail(build_log_path(settings, app_id), 64_000))
    if state in ("queued", "building") and run.finished is not None and \
            (now - run.finished).total_seconds() > STALE_AFTER:
        return ""  # the previous deploy's run: this one has not written its first line
    if state == "starting":
        app_log = app_log_path(settings, app_id)
        started = _file_time(app_log.with_name(app_log.name + ".run-start"))
        listening = _file_time(app_log) if started is not None and LISTENING in \
            current_run_lines(app_log, 200) else None
        run = with_start(run, started, listening)
    return render(run, now)


def _seconds(s: float) -> str:
    s = max(0, int(s))
    return f"{s // 60} min {s % 60:02d} s" if s >= 60 else f"{s} s"


def render(run: Run, now: datetime) -> str:
    """The phases as HTML (escaped): a list with each phase done, running or waiting, its
    time, and a line with the step number, the total time and how long the log is silent."""
    if not run.started:
        return ""
    names = run.shown()
    items = []
    for i, name in enumerate(names):
        began = run.started.get(name)
        later = [run.started[n] for n in names[i + 1:] if n in run.started]
        if began is None:
            state, took = "waiting", ""
        elif later or (name == run.current and run.finished is not None):
            end = min(later) if later else (run.finished or now)
            state, took = "done", _seconds((end - began).total_seconds())
        else:
            state, took = "running", _seconds((now - began).total_seconds())
        detail = run.details.get(name, "")
        mark = {"done": "✓", "running": "▶", "waiting": "○"}[state]
        current = ' aria-current="step"' if state == "running" else ""
        items.append(
            f'<li class="phase {state}" data-phase="{name}" data-state="{state}"{current}>'
            f'<span aria-hidden="true">{mark}</span> {escape(LABELS[name])}'
            + (f' <span class="muted">· {escape(took)}</span>' if took else "")
            + (f' <span class="muted">({escape(detail)})</span>' if detail else "")
            + "</li>")
    done = sum(1 for n in names if n in run.started and n != run.current) + \
        (1 if run.finished is not None else 0)
    step = min(names.index(run.current) + 1, len(names)) if run.current in names else 1
    total = _seconds((now - min(run.started.values())).total_seconds())
    quiet = (now - run.last_line).total_seconds() if run.last_line else 0
    silent = (f" · no new output for {_seconds(quiet)}: this step may be stuck"
              if quiet >= QUIET_AFTER else "")
    return (f'<progress id="phase-progress" max="{len(names)}" value="{done}">'
            f"{done}/{len(names)}</progress>\n"
            f'<ol class="phases">{"".join(items)}</ol>\n'
            f'<p id="phase-summary" class="muted">Step {step} of {len(names)} · '
            f"{escape(total)} so far{escape(silent)}</p>")
