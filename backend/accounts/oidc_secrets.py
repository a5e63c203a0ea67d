"""The `[auth]` section every hosted app gets, so `st.login()` works with no set-up.

At each start the supervisor hands the app `runtime_secrets(...)`: the developer's runtime
secrets (backend/apps/secrets.py) followed by the app's `[auth]` section, written to
`<apps_path>/<id>/secrets.platform.toml` (mode 0600, atomically). When the developer's
secrets have an `auth` key of their own (their own provider), theirs win and the file is
theirs unchanged. The section:

    [auth]
    redirect_uri = "<scheme>://<sub>.<domain>/oauth2callback"   (exact match at authorize)
    cookie_secret = "…"                                         (Streamlit's cookie key)
    client_id = "…"
    client_secret = "…"
    server_metadata_url = "<platform>/.well-known/openid-configuration"
    client_kwargs = { scope = "openid email profile", code_challenge_method = "S256" }

`code_challenge_method` makes Streamlit's Authlib client send PKCE, which the provider
requires. `<platform>` is the dashboard's public URL, or `oidc_internal_url` when set:
the address at which apps' processes reach the proxy (an app in the process runtime's
sandbox has no host loopback, so with the domain `localhost` it needs another address).
"""

from __future__ import annotations

import json
import logging
import tomllib
from pathlib import Path

from backend.accounts import oidc_clients, sealing
from backend.context import Context

log = logging.getLogger("backend.accounts.oidc_secrets")
PLATFORM_FILE = "secrets.platform.toml"
DISCOVERY_PATH = "/.well-known/openid-configuration"
SCOPE = "openid email profile"


def provider_url(ctx: Context) -> str:
    """Where apps' processes reach the provider's server-side endpoints."""
    return ctx.settings.oidc_internal_url.rstrip("/") or ctx.settings.public_url()


def _toml_string(value: str) -> str:
    return json.dumps(value)  # a JSON string is a TOML basic string for these values


def auth_section(ctx: Context, app_id: int, subdomain: str) -> str:
    """The `[auth]` TOML of this app (its client is made on first use)."""
    client = oidc_clients.client_for_app(ctx, app_id)
    values = {"redirect_uri": oidc_clients.redirect_uri(ctx.settings, subdomain),
              "cookie_secret": client.cookie_secret, "client_id": client.client_id,
              "client_secret": client.client_secret,
              "server_metadata_url": provider_url(ctx) + DISCOVERY_PATH}
    lines = ["[auth]", *(f"{k} = {_toml_string(v)}" for k, v in values.items()),
             f"client_kwargs = {{ scope = {_toml_string(SCOPE)}, "
             f'code_challenge_method = "S256" }}']
    return "\n".join(lines) + "\n"


def _has_own_auth(text: str) -> bool:
    try:
        return "auth" in tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        return True  # not ours to extend: the app reads its file as it is


def runtime_secrets(ctx: Context, app_id: int, subdomain: str,
                    developer_file: Path | None) -> Path | None:
    """The secrets file the app starts with (see the module docstring). When the section
    cannot be made (the database or the secrets key failing), the app starts with the
    developer's file alone: without st.login() rather than not at all."""
    try:
        return _merged(ctx, app_id, subdomain, developer_file)
    except Exception:
        log.warning("app=%s st.login() section not written; starting with the app's own "
                    "secrets", app_id, exc_info=True)
        return developer_file


def _merged(ctx: Context, app_id: int, subdomain: str,
            developer_file: Path | None) -> Path | None:
    text = developer_file.read_text() if developer_file is not None else ""
    if text and _has_own_auth(text):
        return developer_file
    merged = (text if not text or text.endswith("\n") else text + "\n") + "\n" + \
        auth_section(ctx, app_id, subdomain)
    return sealing.write_private(ctx.settings.apps_path / str(app_id) / PLATFORM_FILE, merged)
