"""One-time sign-in tokens for app hosts, kept in the database so that any proxy redeems
what another minted (several proxies behind one load balancer: docs/scale-out.md).

A token is minted on the dashboard host for one app host, lives `ONE_TIME_TTL` (60 s) and
works once. Only its SHA-256 is stored (`signin_token`); redeeming is a DELETE of that
row, and only the caller whose DELETE removed it gets the identity, so two proxies
redeeming one token at once cannot both succeed. A token redeemed on the wrong app host is
burnt as well. Expired rows are swept when tokens are minted.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
from datetime import timedelta

from sqlmodel import col, delete, select

from backend.accounts.identity import ONE_TIME_TTL
from backend.context import Context
from models import SigninToken, session_scope, utcnow


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class DatabaseTokens:
    """Mint and redeem one-time sign-in tokens (`mint`/`redeem` run in a worker thread)."""

    def __init__(self, ctx: Context, ttl: float = ONE_TIME_TTL) -> None:
        self.ctx = ctx
        self.ttl = ttl

    def mint_now(self, user_id: int, username: str, subdomain: str) -> str:
        token = secrets.token_urlsafe(32)
        now = utcnow()
        with session_scope(self.ctx.engine) as s:
            s.exec(delete(SigninToken).where(col(SigninToken.expires_at) < now))
            s.add(SigninToken(token_hash=_hash(token), user_id=user_id, username=username,
                              subdomain=subdomain, expires_at=now + timedelta(seconds=self.ttl)))
        return token

    def redeem_now(self, token: str, subdomain: str) -> tuple[int, str] | None:
        if not token or len(token) > 200:
            return None
        key = _hash(token)
        with session_scope(self.ctx.engine) as s:
            row = s.exec(select(SigninToken).where(SigninToken.token_hash == key)).first()
            if row is None:
                return None
            gone = s.exec(delete(SigninToken).where(
                col(SigninToken.token_hash) == key)).rowcount
        if gone != 1 or row.subdomain != subdomain or row.expires_at < utcnow():
            return None
        return row.user_id, row.username

    async def mint(self, user_id: int, username: str, subdomain: str) -> str:
        return await asyncio.to_thread(self.mint_now, user_id, username, subdomain)

    async def redeem(self, token: str, subdomain: str) -> tuple[int, str] | None:
        return await asyncio.to_thread(self.redeem_now, token, subdomain)
