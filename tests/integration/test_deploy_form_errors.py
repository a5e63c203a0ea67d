"""A deploy from a repository that does not exist: the deploy form's answer says what
happened and what to do, and nothing is left behind (no workspace named after a path part)."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlmodel import select

from backend.apps.deploy import DeployRequest, deploy
from backend.context import Context
from backend.errors import ValidationError
from models import Workspace, session_scope


def _workspaces(ctx: Context) -> set[str]:
    with session_scope(ctx.engine) as s:
        return {w.name for w in s.exec(select(Workspace)).all()}


def test_missing_local_repository_is_explained_and_makes_no_workspace(
        ctx, admin, tmp_path: Path) -> None:
    before = _workspaces(ctx)
    missing = tmp_path / "does" / "not" / "exist"
    with pytest.raises(ValidationError) as raised:
        deploy(ctx, admin, DeployRequest(repo_url=str(missing)))
    err = raised.value
    assert err.field == "repo_url"
    message = str(err)
    assert message.startswith(f"There is no git repository at {missing}."), message
    assert "and the repository exists" not in message
    assert ": and" not in message
    assert _workspaces(ctx) == before
