"""The OIDC provider's keys, codes and tokens (backend/accounts/oidc_*.py) on a real
database: rotation keeps the previous key published, codes are single-use, bound to their
client, redirect URI and PKCE challenge, and short-lived; claims carry the viewer's role."""

from __future__ import annotations

import base64
import hashlib
import secrets
from datetime import timedelta

from joserfc import jwt
from joserfc.jwk import KeySet
from sqlmodel import select

from backend import workspaces
from backend.accounts import auth, oidc_clients, oidc_keys, oidc_tokens
from backend.apps import service as apps
from backend.context import Context
from models import session_scope
from models.oidc import OidcCode
from tests.conftest import GitRepo

REDIRECT = "http://app.localhost:8080/oauth2callback"


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def code_for(ctx: Context, challenge: str, client_id: str = "app-a", user_id: int = 1) -> str:
    return oidc_tokens.issue_code(ctx, client_id=client_id, user_id=user_id,
                                  redirect_uri=REDIRECT, code_challenge=challenge,
                                  nonce="n-1", scope="openid email")


def test_s256_is_authlibs() -> None:
    from authlib.oauth2.rfc7636 import create_s256_code_challenge
    for _ in range(5):
        verifier = secrets.token_urlsafe(48)
        assert oidc_tokens.s256(verifier) == create_s256_code_challenge(verifier)


def test_rotation_keeps_the_previous_key_published(ctx: Context) -> None:
    first = oidc_keys.jwks(ctx)["keys"]
    assert len(first) == 1 and first[0]["kty"] == "RSA" and "d" not in first[0]
    old_token = oidc_keys.sign(ctx, {"sub": "1"})
    second_kid = oidc_keys.rotate(ctx)
    published = oidc_keys.jwks(ctx)
    assert [k["kid"] for k in published["keys"]] == [second_kid, first[0]["kid"]]
    # A client holding the new key set still verifies a token signed before the rotation.
    assert jwt.decode(old_token, KeySet.import_key_set(published)).claims["sub"] == "1"
    assert jwt.decode(oidc_keys.sign(ctx, {"sub": "2"}), KeySet.import_key_set(
        published)).header["kid"] == second_kid
    oidc_keys.rotate(ctx)
    assert first[0]["kid"] not in [k["kid"] for k in oidc_keys.jwks(ctx)["keys"]]
    assert oidc_keys.verify(ctx, old_token) is None  # older than the previous key


def test_a_code_works_once(ctx: Context) -> None:
    verifier, challenge = pkce()
    code = code_for(ctx, challenge)
    grant = oidc_tokens.redeem_code(ctx, code=code, client_id="app-a", redirect_uri=REDIRECT,
                                    verifier=verifier)
    assert grant == oidc_tokens.Grant(1, "n-1", "openid email")
    assert oidc_tokens.redeem_code(ctx, code=code, client_id="app-a", redirect_uri=REDIRECT,
                                   verifier=verifier) is None


def test_a_code_is_bound_to_client_redirect_and_verifier(ctx: Context) -> None:
    verifier, challenge = pkce()
    for client_id, redirect, given in (("app-b", REDIRECT, verifier),
                                       ("app-a", REDIRECT + "x", verifier),
                                       ("app-a", REDIRECT, pkce()[0]),
                                       ("app-a", REDIRECT, challenge)):  # plain is refused
        code = code_for(ctx, challenge)
        assert oidc_tokens.redeem_code(ctx, code=code, client_id=client_id,
                                       redirect_uri=redirect, verifier=given) is None
        # A failed attempt burns the code: the right request afterwards gets nothing.
        assert oidc_tokens.redeem_code(ctx, code=code, client_id="app-a",
                                       redirect_uri=REDIRECT, verifier=verifier) is None


def test_an_expired_code_is_refused(ctx: Context) -> None:
    verifier, challenge = pkce()
    code = code_for(ctx, challenge)
    with session_scope(ctx.engine) as s:
        row = s.exec(select(OidcCode)).one()
        row.expires_at = row.expires_at - timedelta(seconds=oidc_tokens.CODE_TTL + 1)
        s.add(row)
    assert oidc_tokens.redeem_code(ctx, code=code, client_id="app-a", redirect_uri=REDIRECT,
                                   verifier=verifier) is None


def test_claims_tokens_and_clients(ctx: Context, hello_repo: GitRepo) -> None:
    dev = auth.create_user(ctx, "dev", "password123", email="dev@example.com")
    vera = auth.create_user(ctx, "vera", "password123", email="vera@example.com")
    otto = auth.create_user(ctx, "otto", "password123", email="otto@example.com")
    view = apps.deploy_app(ctx, dev, repo_url=hello_repo.url, subdomain="hello")
    workspaces.set_member(ctx, dev, view.workspace_id, "vera", "viewer")
    client = oidc_clients.client_for_app(ctx, view.id)
    assert oidc_clients.client_for_app(ctx, view.id) == client  # made once
    other = oidc_clients.client_for_app(ctx, view.id + 1000)
    assert other.client_id != client.client_id and other.client_secret != client.client_secret
    found = oidc_clients.find(ctx, client.client_id)
    assert found is not None and found[1].id == view.id
    assert oidc_clients.secret_matches(client, client.client_secret)
    assert not oidc_clients.secret_matches(client, other.client_secret)
    app = found[1]
    roles = {u.username: oidc_tokens.claims(ctx, u, app)["role"] for u in (dev, vera, otto)}
    assert roles == {"dev": "admin", "vera": "viewer", "otto": "viewer"}
    about = oidc_tokens.claims(ctx, vera, app)
    assert about["email"] == "vera@example.com" and about["sub"] == str(vera.id)
    issuer = ctx.settings.public_url()
    body = oidc_tokens.token_response(ctx, issuer=issuer, client_id=client.client_id,
                                      user=vera, app=app,
                                      grant=oidc_tokens.Grant(vera.id or 0, "n-7", "openid"))
    keys = KeySet.import_key_set(oidc_keys.jwks(ctx))
    id_claims = jwt.decode(body["id_token"], keys).claims
    assert (id_claims["iss"], id_claims["aud"], id_claims["nonce"]) == \
        (issuer, client.client_id, "n-7")
    assert id_claims["email"] == "vera@example.com" and id_claims["role"] == "viewer"
    access = oidc_tokens.read_access_token(ctx, body["access_token"], issuer)
    assert access is not None and access["aud"] == client.client_id
    # An ID token is no access token, and a token of another issuer is refused.
    assert oidc_tokens.read_access_token(ctx, body["id_token"], issuer) is None
    assert oidc_tokens.read_access_token(ctx, body["access_token"], "http://evil") is None


def test_an_old_signing_key_rotates_by_itself(ctx: Context) -> None:
    from models.oidc import OidcKey
    first = oidc_keys.jwks(ctx)["keys"][0]["kid"]
    old_token = oidc_keys.sign(ctx, {"sub": "1"})
    with session_scope(ctx.engine) as s:
        row = s.exec(select(OidcKey)).one()
        row.created_at = row.created_at - oidc_keys.ROTATE_AFTER
        s.add(row)
    kids = [k["kid"] for k in oidc_keys.jwks(ctx)["keys"]]
    assert len(kids) == 2 and kids[1] == first  # a new signer; the old one still published
    assert oidc_keys.verify(ctx, old_token) == {"sub": "1"}
    assert oidc_keys.jwks(ctx)["keys"][0]["kid"] == kids[0]  # once, not at every call
