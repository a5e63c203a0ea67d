"""Deleting an app removes its st.login() client (supervisor/control/lifecycle.py): the
client id no longer finds an app, and the row with its encrypted secret is gone."""

from __future__ import annotations

import asyncio
from pathlib import Path

from sqlmodel import select

from backend.accounts import oidc_clients, oidc_secrets
from backend.context import Context
from models import session_scope
from models.oidc import OidcClient
from supervisor.control.lifecycle import Lifecycle
from tests.support.control import starting_app
from tests.support.lifecycle_support import FakeRuntime


def test_deleting_an_app_removes_its_client(ctx: Context, tmp_path: Path) -> None:
    app = starting_app(ctx, tmp_path, "leaving")
    assert app.id is not None
    path = oidc_secrets.runtime_secrets(ctx, app.id, "leaving", None)
    client = oidc_clients.client_for_app(ctx, app.id)
    kept = starting_app(ctx, tmp_path, "staying")
    assert kept.id is not None
    other = oidc_clients.client_for_app(ctx, kept.id)
    asyncio.run(Lifecycle(ctx, FakeRuntime()).delete(app.id))  # type: ignore[arg-type]  # stand-in
    assert oidc_clients.find(ctx, client.client_id) is None
    with session_scope(ctx.engine) as s:
        assert [r.app_id for r in s.exec(select(OidcClient)).all()] == [kept.id]
    assert path is not None and not path.exists()
    assert oidc_clients.find(ctx, other.client_id) is not None
