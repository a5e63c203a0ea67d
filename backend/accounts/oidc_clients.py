"""One OpenID Connect client per app: what its `[auth]` secrets section holds.

A client is made the first time it is asked for (`client_for_app`): a random client id,
client secret and cookie secret (Streamlit signs its auth cookie with the latter), the
two secrets kept as Fernet tokens under the app-secrets key (backend/apps/secrets.py),
like the app's own secrets. The redirect URI is not stored: it is always
`<scheme>://<sub>.<domain>/oauth2callback` (Streamlit's fixed callback path) of the app's
current subdomain, compared exactly.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass

from sqlalchemy.exc import IntegrityError
from sqlmodel import select

from backend.apps import secrets as app_secrets
from backend.apps.service import load_app_for
from backend.context import Context
from backend.errors import BackendError
from backend.platform.settings import Settings
from models import App, User, session_scope
from models.oidc import OidcClient

CALLBACK_PATH = "/oauth2callback"  # Streamlit's, fixed


@dataclass(frozen=True)
class Client:
    app_id: int
    client_id: str
    client_secret: str
    cookie_secret: str
    identity_headers: bool


def redirect_uri(settings: Settings, subdomain: str) -> str:
    return settings.public_url(subdomain) + CALLBACK_PATH


def _client(ctx: Context, row: OidcClient) -> Client:
    return Client(row.app_id, row.client_id, app_secrets.decrypt(ctx, row.secret_ciphertext),
                  app_secrets.decrypt(ctx, row.cookie_secret_ciphertext), row.identity_headers)


def client_for_app(ctx: Context, app_id: int) -> Client:
    """The app's client, made on first use."""
    with session_scope(ctx.engine) as s:
        row = s.exec(select(OidcClient).where(OidcClient.app_id == app_id)).first()
    if row is not None:
        return _client(ctx, row)
    try:
        with session_scope(ctx.engine) as s:
            row = OidcClient(app_id=app_id, client_id="app-" + secrets.token_urlsafe(16),
                             secret_ciphertext=app_secrets.encrypt(
                                 ctx, secrets.token_urlsafe(32)),
                             cookie_secret_ciphertext=app_secrets.encrypt(
                                 ctx, secrets.token_urlsafe(32)))
            s.add(row)
    except IntegrityError:  # made meanwhile by another process
        return client_for_app(ctx, app_id)
    return _client(ctx, row)


def find(ctx: Context, client_id: str) -> tuple[Client, App] | None:
    """The client with this id and its app (None when unknown or the app is deleted)."""
    if not client_id or len(client_id) > 64:
        return None
    with session_scope(ctx.engine) as s:
        row = s.exec(select(OidcClient).where(OidcClient.client_id == client_id)).first()
        app = s.get(App, row.app_id) if row is not None else None
    if row is None or app is None or app.desired_state == "deleted":
        return None
    return _client(ctx, row), app


def secret_matches(client: Client, given: str) -> bool:
    return hmac.compare_digest(client.client_secret.encode(), given.encode())


def set_identity_headers(ctx: Context, user: User, app_id: int, on: bool) -> None:
    """Turn the identity headers (X-Forwarded-User, X-Forwarded-Email of signed-in viewers)
    on or off for the app: a developer of its workspace may."""
    with session_scope(ctx.engine) as s:
        load_app_for(s, user, app_id, "developer", "change the app's identity headers")
    client_for_app(ctx, app_id)
    with session_scope(ctx.engine) as s:
        row = s.exec(select(OidcClient).where(OidcClient.app_id == app_id)).one()
        row.identity_headers = on
        s.add(row)


def get_identity_headers(ctx: Context, user: User, app_id: int) -> bool:
    """Whether the app gets identity headers (anyone with a role in its workspace)."""
    with session_scope(ctx.engine) as s:
        load_app_for(s, user, app_id, "viewer", "see the app's identity headers")
    return identity_headers_on(ctx, app_id)


def identity_headers_on(ctx: Context, app_id: int) -> bool:
    with session_scope(ctx.engine) as s:
        row = s.exec(select(OidcClient).where(OidcClient.app_id == app_id)).first()
    return bool(row and row.identity_headers)


def secret_values(ctx: Context, app_id: int) -> list[str]:
    """The app's client secret and cookie secret (for the log masking), [] without a
    client or when the key cannot decrypt them."""
    with session_scope(ctx.engine) as s:
        row = s.exec(select(OidcClient).where(OidcClient.app_id == app_id)).first()
    if row is None:
        return []
    try:
        client = _client(ctx, row)
    except BackendError:
        return []
    return [client.client_secret, client.cookie_secret]
