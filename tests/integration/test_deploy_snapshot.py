"""A deploy's checks fetch the repository once: the branch, the main file, the dependency
file and what the repository asks of the runtime are all read from one shallow clone that
fetches only the small files (`backend.repositories.checks.open_branch`); a data file of the
repository is not fetched, not even to learn its size, by a server that honours the filter."""

from __future__ import annotations

import subprocess
from typing import Any

import pytest

from backend.apps import deploy
from backend.errors import ValidationError
from backend.platform.supervisor_report import PlatformInfo, write_platform
from backend.repositories import checks as repos

APP = "import streamlit as st\nst.write('hi')\n"
BIG = 2 * 1024 * 1024


def _count_clones(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    clones: list[list[str]] = []
    real = repos._git

    def counting(args: list[str], *rest: Any) -> str:
        if "clone" in args:
            clones.append(args)
        return real(args, *rest)
    monkeypatch.setattr(repos, "_git", counting)
    return clones


def test_a_deploy_fetches_the_repository_once(ctx, admin, make_repo, monkeypatch) -> None:
    write_platform(ctx, PlatformInfo(engine="process", python_versions=["3.11", "3.12"]))
    repo = make_repo("once", {"app/main.py": APP, "app/requirements.txt": "six\n",
                              ".python-version": "3.12\n", "data.bin": b"\0" * BIG})
    clones = _count_clones(monkeypatch)
    view = deploy.deploy(ctx, admin, deploy.DeployRequest(repo_url=repo.url,
                                                          main_file="app/main.py"))
    assert view.state == "queued"
    assert len(clones) == 1, clones
    # Each refusal comes from that one clone too.
    for request, field in [
            (deploy.DeployRequest(repo_url=repo.url, main_file="app/other.py"), "main_file"),
            (deploy.DeployRequest(repo_url=repo.url, branch="nope", main_file="app/main.py"),
             "branch")]:
        clones.clear()
        with pytest.raises(ValidationError) as refused:
            deploy.deploy(ctx, admin, request)
        assert refused.value.field == field
        assert len(clones) == 1, clones
    write_platform(ctx, PlatformInfo(engine="process", python_versions=["3.11"]))
    clones.clear()
    with pytest.raises(ValidationError) as refused:
        deploy.deploy(ctx, admin, deploy.DeployRequest(repo_url=repo.url, subdomain="pinned",
                                                       main_file="app/main.py"))
    assert refused.value.field == "python_version" and len(clones) == 1


def test_the_snapshot_leaves_big_files_on_the_server(ctx, make_repo) -> None:
    repo = make_repo("big", {"streamlit_app.py": APP, "requirements.txt": "six\n",
                             "data.bin": b"\1" * BIG})
    # As GitHub does: the server honours partial-clone filters.
    subprocess.run(["git", "-C", repo.url, "config", "uploadpack.allowFilter", "true"],
                   check=True)
    with repos.open_branch(ctx, repo.url, "main") as snapshot:
        assert set(snapshot.files) == {"streamlit_app.py", "requirements.txt", "data.bin"}
        assert snapshot.read("requirements.txt") == b"six\n"
        assert snapshot.read("data.bin") is None  # over the limit: absent, not fetched
        here = subprocess.run(
            ["git", "cat-file", "--batch-all-objects", "--batch-check=%(objectsize)"],
            cwd=snapshot._dir, capture_output=True, text=True, check=True).stdout.split()
        assert max(map(int, here)) < BIG, "the big blob was fetched"
