"""The deploy form checks the branch and the main file as they are typed: the repository's
branches and the branch's Python files (subfolders included) are offered, a wrong branch or
file is flagged before Deploy, and git runs once per repository and branch, not per key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from streamlit.testing.v1 import AppTest

from backend.repositories import checks, live
from pages.dashboard import _ui as ui
from tests.conftest import GitRepo, _git
from tests.support.dashboard import (
    Dash,
    open_dashboard,
)
from tests.support.dashboard import text as raw_text


def text(at: AppTest) -> str:
    """The page's text with Markdown's escapes of ':' undone."""
    return raw_text(at).replace("\\:", ":")


@pytest.fixture
def two_branches(tmp_path: Path) -> str:
    repo = GitRepo(tmp_path / "repos" / "me" / "multi", branch="main")
    repo.commit({"streamlit_app.py": "import streamlit\n", "pages/extra.py": "x = 1\n",
                 "apps/deep/inner/main.py": "import streamlit\n", "README.md": "hi\n"})
    _git("checkout", "-q", "-b", "dev", cwd=repo.work)
    repo.branch = "dev"
    repo.commit({"dev_app.py": "import streamlit\n"})
    return repo.url


def test_branch_and_main_file_are_checked_as_typed(dash: Dash, two_branches: str,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    live.forget()
    calls: list[list[str]] = []
    real = checks._git

    def counted(args: list[str], *rest: Any) -> str:
        calls.append(args)
        return real(args, *rest)
    monkeypatch.setattr(checks, "_git", counted)

    at = open_dashboard(dash.admin, ui.DEPLOY)
    at.text_input(key="deploy_repo").input(two_branches).run()
    assert "✓ branch found" in text(at)
    assert at.text_input(key="deploy_branch").help == "Branches: dev, main"
    offered = at.selectbox(key="deploy_main_pick").options
    assert offered == ["streamlit_app.py", "pages/extra.py", "apps/deep/inner/main.py"]

    at.text_input(key="deploy_branch").input("nope").run()
    assert "There is no branch 'nope' in this repository. Branches: dev, main." in text(at)
    at.text_input(key="deploy_branch").input("main").run()
    at.text_input(key="deploy_main_file").input("missing.py").run()
    assert "There is no file 'missing.py' on branch 'main'." in text(at)
    at.selectbox(key="deploy_main_pick").select("apps/deep/inner/main.py").run()
    assert at.text_input(key="deploy_main_file").value == "apps/deep/inner/main.py"
    assert "✓ file found" in text(at)
    clones = [c for c in calls if "clone" in c]
    remotes = [c for c in calls if "ls-remote" in c]
    assert len(remotes) == 1 and len(clones) == 1, calls  # cached over the five reruns


def test_an_unreadable_repository_is_flagged_as_typed(dash: Dash, tmp_path: Path) -> None:
    live.forget()
    at = open_dashboard(dash.admin, ui.DEPLOY)
    at.text_input(key="deploy_repo").input(str(tmp_path / "does" / "not" / "exist")).run()
    assert "There is no git repository at" in text(at)
    assert "Workspace: **not**" not in text(at)
