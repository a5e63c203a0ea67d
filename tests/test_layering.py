"""The rooms of STYLE.md, checked on every file's imports (an import-linter equivalent):
Home.py/pages → backend → models; supervisor → backend, models; supervisor and backend never
import streamlit; pages never touch docker, SQL sessions, git or the supervisor directly."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from backend.settings import PROJECT_ROOT

FORBIDDEN = {
    "ui": {"models", "sqlmodel", "sqlalchemy", "docker", "github", "supervisor", "subprocess",
           "alembic", "aiohttp"},
    "backend": {"streamlit", "streamlit_authenticator", "supervisor", "docker"},
    "models": {"streamlit", "backend", "supervisor", "docker", "github"},
    "supervisor": {"streamlit", "streamlit_authenticator"},
}


def room_files() -> list[tuple[str, Path]]:
    files = [("ui", PROJECT_ROOT / "Home.py")] if (PROJECT_ROOT / "Home.py").exists() else []
    files += [("ui", p) for p in (PROJECT_ROOT / "pages").rglob("*.py")]
    for room in ("backend", "models", "supervisor"):
        files += [(room, p) for p in (PROJECT_ROOT / room).rglob("*.py")]
    return files


def imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            roots |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


@pytest.mark.parametrize("room,path", room_files(),
                         ids=[str(p.relative_to(PROJECT_ROOT)) for _, p in room_files()])
def test_room_imports(room: str, path: Path) -> None:
    bad = imported_roots(path) & FORBIDDEN[room]
    assert not bad, f"{path.relative_to(PROJECT_ROOT)} ({room}) imports {sorted(bad)}"


def test_checker_catches_a_violation(tmp_path: Path) -> None:
    sample = tmp_path / "x.py"
    sample.write_text("import streamlit as st\nfrom sqlmodel import Session\n")
    assert imported_roots(sample) & FORBIDDEN["backend"] == {"streamlit"}
    assert imported_roots(sample) & FORBIDDEN["ui"] == {"sqlmodel"}
