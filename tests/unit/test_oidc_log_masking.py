"""The st.login() section's secrets are masked in the app's log text like its own secrets
(backend/apps/log_masking.py with backend/accounts/oidc_clients.secret_values)."""

from __future__ import annotations

from backend.accounts import oidc_clients
from backend.apps import log_masking
from backend.context import Context


def test_client_and_cookie_secrets_are_masked(ctx: Context) -> None:
    assert oidc_clients.secret_values(ctx, 5) == []  # no client: nothing, and none made
    client = oidc_clients.client_for_app(ctx, 5)
    text = (f"auth: {client.client_secret}\ncookie={client.cookie_secret!r}\n"
            f"client id {client.client_id}\n")
    masked = log_masking.mask(ctx, 5, text)
    assert client.client_secret not in masked and client.cookie_secret not in masked
    assert client.client_id in masked  # an id, not a secret
    other = oidc_clients.client_for_app(ctx, 6)
    assert other.client_secret in log_masking.mask(ctx, 5, other.client_secret)
