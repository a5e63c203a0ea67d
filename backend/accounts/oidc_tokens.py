"""Authorization codes, ID tokens, access tokens and claims of the OpenID Connect provider.

- Codes: 32 random bytes, stored as their SHA-256 (`oidc_code`), live `CODE_TTL`
  seconds, redeemed at most once: one UPDATE sets `used` where it was not set, and only
  the request whose UPDATE changed the row gets tokens (a replayed code, even racing
  the first redemption, gets none). A code is bound to its client, its exact redirect
  URI and its PKCE challenge (S256 only: RFC 7636's `BASE64URL(SHA256(verifier))`); a
  wrong verifier burns the code.
- ID tokens (RS256, `oidc_keys.py`): iss, aud (the client id), sub (the user id), iat,
  exp, auth_time, nonce (as the client sent it), and the claims `name`, `email`,
  `email_verified` (false: the platform does not verify addresses),
  `preferred_username` and `role`, the viewer's role on the app: `admin`, `developer`
  or `viewer` of its workspace, else `viewer` (an invited viewer, or anyone on a public
  app).
- Access tokens: JWTs of type `at+jwt` (RFC 9068) with aud = the client id, read back by
  `/oidc/userinfo`, which answers the same claims.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import update
from sqlmodel import col, delete, select

from backend.accounts import oidc_keys
from backend.context import Context
from backend.workspaces import role_in
from models import App, User, session_scope, utcnow
from models.oidc import OidcCode

CODE_TTL = 60
TOKEN_TTL = 3600
ACCESS_TYP = "at+jwt"
VERIFIER_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")


def _hash(code: str) -> str:
    return hashlib.sha256(code.encode()).hexdigest()


def issue_code(ctx: Context, *, client_id: str, user_id: int, redirect_uri: str,
               code_challenge: str, nonce: str, scope: str) -> str:
    """A new single-use code for this client, user, redirect URI and S256 challenge."""
    code = secrets.token_urlsafe(32)
    now = utcnow()
    with session_scope(ctx.engine) as s:
        s.exec(delete(OidcCode).where(col(OidcCode.expires_at) < now))
        s.add(OidcCode(code_hash=_hash(code), client_id=client_id, user_id=user_id,
                       redirect_uri=redirect_uri, code_challenge=code_challenge,
                       nonce=nonce[:512], scope=scope[:512],
                       expires_at=now + timedelta(seconds=CODE_TTL)))
    return code


def s256(verifier: str) -> str:
    """RFC 7636's S256 challenge of a verifier: BASE64URL(SHA256(verifier)), no padding."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def valid_verifier(verifier: str) -> bool:
    """RFC 7636 §4.1: 43 to 128 characters of the unreserved set."""
    return 43 <= len(verifier) <= 128 and set(verifier) <= VERIFIER_CHARS


@dataclass(frozen=True)
class Grant:
    user_id: int
    nonce: str
    scope: str


def redeem_code(ctx: Context, *, code: str, client_id: str, redirect_uri: str,
                verifier: str) -> Grant | None:
    """The grant of a code, once: None when unknown, used, expired, issued to another
    client or redirect URI, or the verifier does not match its challenge."""
    if not code or len(code) > 128:
        return None
    digest = _hash(code)
    now = utcnow()
    with session_scope(ctx.engine) as s:
        result = s.execute(update(OidcCode).where(
            col(OidcCode.code_hash) == digest, col(OidcCode.used).is_(False),
            col(OidcCode.expires_at) > now).values(used=True))
        if result.rowcount != 1:  # type: ignore[attr-defined]
            return None
        row = s.exec(select(OidcCode).where(OidcCode.code_hash == digest)).first()
    if row is None or row.client_id != client_id or row.redirect_uri != redirect_uri:
        return None
    if not valid_verifier(verifier) or not secrets.compare_digest(
            s256(verifier), row.code_challenge):
        return None
    return Grant(row.user_id, row.nonce, row.scope)


def role_on_app(ctx: Context, user: User, app: App) -> str:
    with session_scope(ctx.engine) as s:
        return role_in(s, user, app.workspace_id) or "viewer"


def claims(ctx: Context, user: User, app: App) -> dict[str, Any]:
    """What the ID token and userinfo say about the viewer."""
    return {"sub": str(user.id), "name": user.name or user.username,
            "preferred_username": user.username, "email": user.email,
            "email_verified": False, "role": role_on_app(ctx, user, app)}


def token_response(ctx: Context, *, issuer: str, client_id: str, user: User, app: App,
                   grant: Grant) -> dict[str, Any]:
    """The token endpoint's answer: an ID token and an access token for this client."""
    now = int(time.time())
    about = claims(ctx, user, app)
    id_claims = {**about, "iss": issuer, "aud": client_id, "iat": now, "auth_time": now,
                 "exp": now + TOKEN_TTL}
    if grant.nonce:
        id_claims["nonce"] = grant.nonce
    access = {"iss": issuer, "aud": client_id, "client_id": client_id, "sub": about["sub"],
              "app": app.id, "scope": grant.scope, "iat": now, "exp": now + TOKEN_TTL,
              "jti": secrets.token_urlsafe(12)}
    return {"access_token": oidc_keys.sign(ctx, access, typ=ACCESS_TYP),
            "token_type": "Bearer", "expires_in": TOKEN_TTL, "scope": grant.scope,
            "id_token": oidc_keys.sign(ctx, id_claims)}


def read_access_token(ctx: Context, token: str, issuer: str) -> dict[str, Any] | None:
    """The claims of a valid, unexpired access token we issued, else None."""
    data = oidc_keys.verify(ctx, token, typ=ACCESS_TYP)
    if data is None or data.get("iss") != issuer:
        return None
    exp = data.get("exp")
    if not isinstance(exp, int) or exp <= time.time():
        return None
    if not isinstance(data.get("app"), int) or not isinstance(data.get("sub"), str):
        return None
    return data
