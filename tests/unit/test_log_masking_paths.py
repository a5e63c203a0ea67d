"""No way around the log masking: the functions that read an app's log files in clear
(backend/apps/log_files.py's tails and the rotated-file readers of backend/apps/logs.py) are
used only by the modules that return what they read through
`backend.apps.log_masking.mask` (backend/apps/logs.py, backend/apps/failure_reports.py).
Every other module (pages, the API, the proxy, the supervisor) gets log text from those."""

from __future__ import annotations

import ast
from pathlib import Path

from backend.platform.settings import PROJECT_ROOT

RAW_READERS = {
    "backend.apps.log_files": {"tail", "tail_lines", "current_run_lines"},
    "backend.apps.logs": {"tail_across", "log_files"},
}
MASKING_MODULES = {"backend/apps/logs.py", "backend/apps/log_files.py",
                   "backend/apps/failure_reports.py"}
# Modules that read logs only to recognise fixed markers and show none of the log's text:
# the oven page's phases (phase names, times, a commit hash and package counts; see
# test_phases_show_no_log_text).
MARKER_READERS = {"supervisor/builds/phases.py"}


def product_files(root: Path) -> list[Path]:
    files = [root / "Home.py"] if (root / "Home.py").exists() else []
    for room in ("pages", "backend", "supervisor", "models"):
        files += sorted((root / room).rglob("*.py"))
    return files


def raw_reads(path: Path) -> list[str]:
    """Uses of a raw log reader in `path`: imported by name, or as an attribute of its
    module imported under any name."""
    tree = ast.parse(path.read_text(), str(path))
    aliases: dict[str, str] = {}  # local name -> module
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            for a in node.names:
                full = f"{node.module}.{a.name}"
                if a.name in RAW_READERS.get(node.module, set()):
                    found.append(f"imports {full}")
                if full in RAW_READERS:
                    aliases[a.asname or a.name] = full
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name in RAW_READERS:
                    aliases[a.asname or a.name] = a.name
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            module = aliases.get(node.value.id)
            if module and node.attr in RAW_READERS[module]:
                found.append(f"uses {module}.{node.attr}")
    return found


def test_only_the_masking_modules_read_logs_in_clear() -> None:
    offenders = {}
    for path in product_files(PROJECT_ROOT):
        rel = path.relative_to(PROJECT_ROOT).as_posix()
        if rel not in MASKING_MODULES | MARKER_READERS and (uses := raw_reads(path)):
            offenders[rel] = uses
    assert offenders == {}, ("read log text through backend.apps.logs or "
                             f"backend.apps.failure_reports, which mask secrets: {offenders}")


def test_the_check_sees_both_import_forms(tmp_path: Path) -> None:
    sample = tmp_path / "x.py"
    sample.write_text("from backend.apps.log_files import tail_lines\n"
                      "from backend.apps import log_files as lf\n"
                      "from backend.apps import logs\n"
                      "lf.current_run_lines(p)\nlogs.tail_across(p, 1)\nlogs.read_tail()\n")
    assert raw_reads(sample) == ["imports backend.apps.log_files.tail_lines",
                                 "uses backend.apps.log_files.current_run_lines",
                                 "uses backend.apps.logs.tail_across"]


def test_phases_show_no_log_text() -> None:
    """A secret printed on a line that also names a phase does not reach the oven page."""
    from datetime import UTC, datetime

    from supervisor.builds import phases
    secret = "sk-live-planted-0123456789"
    log = "\n".join([
        f"[2026-12-07 10:00:00] Deploying https://x.example/{secret}.git (branch main).",
        f"[2026-12-07 10:00:01] Checked out commit 0123456789ab {secret}.",
        f"[2026-12-07 10:00:02] Resolved 12 packages in 40ms {secret}",
        f"[2026-12-07 10:00:03] Prepared 3 packages in 1s {secret}",
        f"[2026-12-07 10:00:04] {secret}"])
    html = phases.render(phases.parse(log), datetime(2026, 12, 7, 10, 0, 9, tzinfo=UTC))
    assert "commit 0123456789ab" in html and "(12 packages)" in html, html
    assert secret not in html, html
