"""A failed build or start as the app's developers read it, wherever it is shown (the app
host's build-failed and crashed pages, a push whose new version did not start): the phase
that failed, the explainer's reading of the log (`backend.apps.failures`: the package or file
responsible and what to do), only the lines that matter, and where the full log is.

The log text is shown as the dashboard's Logs page shows it (`backend.apps.logs`): every
value the app's secrets ever had masked (`backend.apps.log_masking.mask`), colours
stripped, no host path, and in the app log the app's public URL where Streamlit printed its
internal one (`backend.platform.host_paths`). The supervisor reads the logs it quotes only
through the readers here (`run_lines`, `build_lines`, `app_log_since`), which return that
text; the explainers (`explain_build_log`, `explain_app_log`) take text they returned.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from backend.apps import failures, log_masking
from backend.apps.log_files import app_log_path, build_log_path, current_run_lines, tail_lines
from backend.context import Context
from backend.platform import host_paths
from backend.platform.settings import Settings

MAX_APPENDED = 16_000
USING = re.compile(r"^Using ((?:\S+/)?(?:uv\.lock|Pipfile|environment\.yml|requirements\.txt|"
                   r"pyproject\.toml))\b", re.M)
CLONE_FAILED = re.compile(r"^(?:fatal: |Cloning .* failed|Could not clone)", re.M)


@dataclass(frozen=True)
class FailureReport:
    """The phase that failed, the explanation, and the full log's address."""

    phase: str
    explanation: failures.Explanation
    full_log_url: str

    def message(self) -> str:
        """Plain text: phase, summary and fix, the relevant lines, the full log's address."""
        return (f"[{self.phase}] {self.explanation.message()}\n\n"
                f"Full log: {self.full_log_url}")


def logs_url(settings: Settings, app_id: int) -> str:
    """The dashboard's Logs page of the app (build and app logs, download)."""
    return f"{settings.public_url()}/logs?app={app_id}"


def readable(ctx: Context, app_id: int, kind: str, text: str, public_url: str) -> str:
    """Log text of the app's `kind` log ("app" or "build") as its developers may read it."""
    settings = ctx.settings
    text = log_masking.mask(ctx, app_id, failures.strip_ansi(text))
    if kind == "app":
        return host_paths.show_app_log(settings, text, public_url)
    return host_paths.sanitize(settings, text)


def run_lines(ctx: Context, app_id: int, public_url: str, lines: int = 20) -> str:
    """The last `lines` lines the app's current run logged (never an earlier run's)."""
    raw = current_run_lines(app_log_path(ctx.settings, app_id), lines)
    return readable(ctx, app_id, "app", raw, public_url)


def build_lines(ctx: Context, app_id: int, public_url: str, lines: int = 60) -> str:
    """The last `lines` lines of the app's build log."""
    raw = tail_lines(build_log_path(ctx.settings, app_id), lines)
    return readable(ctx, app_id, "build", raw, public_url)


def app_log_since(ctx: Context, app_id: int, offset: int, public_url: str,
                  max_bytes: int = MAX_APPENDED) -> str:
    """What the app log gained after `offset` (its `file_size` before a start), at most the
    last `max_bytes`; all of it when the file was rotated or truncated since."""
    path = app_log_path(ctx.settings, app_id)
    try:
        with open(path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            start = offset if size >= offset else 0
            start = max(start, size - max_bytes)
            fh.seek(start)
            data = fh.read(size - start)
    except FileNotFoundError:
        return ""
    return readable(ctx, app_id, "app", data.decode("utf-8", errors="replace"), public_url)


def file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def build_log_phase(text: str) -> tuple[str, str]:
    """(phase, dependency file) of a failed build's log: a clone, or installing the file the
    build says it used (requirements.txt when it says none)."""
    used = USING.findall(text)
    dependency_file = used[-1] if used else "requirements.txt"
    if CLONE_FAILED.search(text) and not used:
        return "clone", dependency_file
    return "install", dependency_file


def explain_build_log(settings: Settings, app_id: int, text: str, public_url: str,
                      repo: str = "", branch: str = "") -> FailureReport:
    """The report of a failed build from its log's tail, as `build_lines` returned it."""
    phase, dependency_file = build_log_phase(text)
    found = failures.explain(phase, text, dependency_file=dependency_file, repo=repo,
                             branch=branch)
    return FailureReport(phase, found, logs_url(settings, app_id))


def explain_app_log(settings: Settings, app_id: int, text: str, public_url: str, *,
                    timed_out: bool = False, dependency_file: str = "requirements.txt",
                    main_file: str = "") -> FailureReport:
    """The report of a run that stopped (or, `timed_out`, never answered its health check)
    from the lines that run logged, as `run_lines` or `app_log_since` returned them."""
    phase = "health" if timed_out else "start"
    found = failures.explain(phase, text, dependency_file=dependency_file,
                             main_file=main_file, timeout_s=settings.health_timeout)
    return FailureReport(phase, found, logs_url(settings, app_id))
