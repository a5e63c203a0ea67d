"""The `[auth]` section hosted apps start with (backend/accounts/oidc_secrets.py): merged
after the developer's secrets, theirs winning when they configure their own provider."""

from __future__ import annotations

import dataclasses
import stat
import tomllib
from pathlib import Path

from backend.accounts import oidc_clients, oidc_secrets
from backend.context import Context


def test_no_secrets_gives_the_auth_section_alone(ctx: Context) -> None:
    path = oidc_secrets.runtime_secrets(ctx, 7, "hello", None)
    assert path is not None and stat.S_IMODE(path.stat().st_mode) == 0o600
    auth = tomllib.loads(path.read_text())["auth"]
    client = oidc_clients.client_for_app(ctx, 7)
    assert auth == {
        "redirect_uri": ctx.settings.public_url("hello") + "/oauth2callback",
        "cookie_secret": client.cookie_secret, "client_id": client.client_id,
        "client_secret": client.client_secret,
        "server_metadata_url": ctx.settings.public_url()
        + "/.well-known/openid-configuration",
        "client_kwargs": {"scope": "openid email profile", "code_challenge_method": "S256"}}


def test_merged_after_the_developers_secrets(ctx: Context, tmp_path: Path) -> None:
    own = tmp_path / "secrets.toml"
    own.write_text('api_key = "k"\n[db]\nurl = "postgres://x"')  # no final newline
    path = oidc_secrets.runtime_secrets(ctx, 7, "hello", own)
    assert path is not None and path != own
    data = tomllib.loads(path.read_text())
    assert data["api_key"] == "k" and data["db"] == {"url": "postgres://x"}
    assert data["auth"]["client_id"] == oidc_clients.client_for_app(ctx, 7).client_id
    assert own.read_text().endswith('"postgres://x"')  # the developer's file is untouched


def test_the_developers_own_auth_wins(ctx: Context, tmp_path: Path) -> None:
    for text in ('[auth]\nredirect_uri = "https://mine/oauth2callback"\n',
                 'auth.redirect_uri = "https://mine/oauth2callback"\n'):
        own = tmp_path / "secrets.toml"
        own.write_text(text)
        assert oidc_secrets.runtime_secrets(ctx, 7, "hello", own) == own


def test_internal_url_for_the_server_side_calls(ctx: Context) -> None:
    inner = dataclasses.replace(ctx.settings, oidc_internal_url="http://10.0.0.5:8080/")
    path = oidc_secrets.runtime_secrets(dataclasses.replace(ctx, settings=inner), 7, "hi", None)
    assert path is not None
    auth = tomllib.loads(path.read_text())["auth"]
    assert auth["server_metadata_url"] == \
        "http://10.0.0.5:8080/.well-known/openid-configuration"
    assert auth["redirect_uri"] == ctx.settings.public_url("hi") + "/oauth2callback"
