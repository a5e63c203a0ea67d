"""The OpenID Connect provider's signing keys: RSA keys (RS256) kept in `oidc_key`, the
private half encrypted with the app-secrets key (backend/apps/secrets.py).

The newest key signs. `rotate()` adds a new one; the JWKS publishes the newest
`PUBLISHED` keys, so an ID token signed just before a rotation still verifies at a
client that fetches the key set afterwards (the previous key stays published until the
next rotation, `ROTATE_AFTER` later: far longer than a token lives). Rotation happens by
itself: the first use after the signing key turned `ROTATE_AFTER` old makes a new one
(two processes doing so at once make two; the older of them is then the previous key).
The first key is made on first use.
"""

from __future__ import annotations

import secrets
import threading
from datetime import timedelta
from typing import Any

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeyParameters, KeySet, RSAKey
from sqlmodel import col, select

from backend.apps import secrets as app_secrets
from backend.context import Context
from models import session_scope, utcnow
from models.oidc import OidcKey

ALGORITHM = "RS256"
KEY_BITS = 2048
PUBLISHED = 2  # the signing key and the one before it
ROTATE_AFTER = timedelta(days=30)
_parsed: dict[str, RSAKey] = {}  # kid -> key: parsing a PEM costs more than a query
_lock = threading.Lock()


def _params(kid: str) -> KeyParameters:
    return {"kid": kid, "use": "sig", "alg": ALGORITHM}


def _load(ctx: Context, row: OidcKey) -> RSAKey:
    with _lock:
        key = _parsed.get(row.kid)
    if key is None:
        pem = app_secrets.decrypt(ctx, row.private_pem)
        key = RSAKey.import_key(pem, parameters=_params(row.kid))
        with _lock:
            _parsed[row.kid] = key
    return key


def rotate(ctx: Context) -> str:
    """Make a new signing key (it signs from now on) and return its kid."""
    kid = secrets.token_urlsafe(12)
    key = RSAKey.generate_key(KEY_BITS, parameters=_params(kid), private=True)
    pem = key.as_pem(private=True).decode()
    with session_scope(ctx.engine) as s:
        s.add(OidcKey(kid=kid, private_pem=app_secrets.encrypt(ctx, pem)))
    return kid


def published(ctx: Context) -> list[RSAKey]:
    """The newest keys, newest first (one is made when there is none)."""
    for _ in range(2):
        with session_scope(ctx.engine) as s:
            rows = list(s.exec(select(OidcKey).order_by(col(OidcKey.id).desc())
                               .limit(PUBLISHED)).all())
        if rows and utcnow() - rows[0].created_at < ROTATE_AFTER:
            return [_load(ctx, row) for row in rows]
        rotate(ctx)
    raise RuntimeError("no OIDC signing key could be made")


def jwks(ctx: Context) -> dict[str, Any]:
    """The public JSON Web Key Set (`/oidc/jwks`)."""
    return {"keys": [key.as_dict(private=False) for key in published(ctx)]}


def sign(ctx: Context, claims: dict[str, Any], typ: str = "JWT") -> str:
    """`claims` as a JWT signed with the newest key."""
    key = published(ctx)[0]
    return jwt.encode({"alg": ALGORITHM, "kid": key.kid, "typ": typ}, claims, key,
                      algorithms=[ALGORITHM])


def verify(ctx: Context, token: str, typ: str = "JWT") -> dict[str, Any] | None:
    """The claims of a token one of the published keys signed, with header `typ`, or None.
    Expiry and audience are the caller's checks (`oidc_tokens.py`)."""
    if not token or len(token) > 8192:
        return None
    keys = KeySet(published(ctx))  # type: ignore[arg-type]
    try:
        decoded = jwt.decode(token, keys, algorithms=[ALGORITHM])
    except (JoseError, ValueError):
        return None
    if decoded.header.get("typ") != typ:
        return None
    return dict(decoded.claims)
