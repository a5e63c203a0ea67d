"""Tables of the platform's OpenID Connect provider (backend/accounts/oidc_*.py,
supervisor/proxy/oidc.py). Tables only."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Column, Text
from sqlmodel import Field, SQLModel

from models.tables import utcnow


class OidcKey(SQLModel, table=True):
    """One ID-token signing key (RSA). `private_pem` is a Fernet token of the PEM under the
    app-secrets key. The newest row signs; the one before it stays published in the JWKS
    so tokens it signed still verify after a rotation."""

    __tablename__ = "oidc_key"
    id: int | None = Field(default=None, primary_key=True)
    kid: str = Field(unique=True, max_length=64)
    private_pem: str = Field(sa_column=Column(Text, nullable=False))
    created_at: datetime = Field(default_factory=utcnow)


class OidcClient(SQLModel, table=True):
    """The OIDC client of one app: its id, and Fernet tokens of its secret and of the
    cookie secret Streamlit signs its auth cookie with. `identity_headers`: forward
    X-Forwarded-User / X-Forwarded-Email of signed-in viewers to the app."""

    __tablename__ = "oidc_client"
    id: int | None = Field(default=None, primary_key=True)
    app_id: int = Field(unique=True, index=True)
    client_id: str = Field(unique=True, index=True, max_length=64)
    secret_ciphertext: str = Field(sa_column=Column(Text, nullable=False))
    cookie_secret_ciphertext: str = Field(sa_column=Column(Text, nullable=False))
    identity_headers: bool = Field(default=False)
    created_at: datetime = Field(default_factory=utcnow)


class OidcCode(SQLModel, table=True):
    """One authorization code, stored as its SHA-256. Single use (`used` is set by the one
    UPDATE that redeems it) and short-lived (`expires_at`)."""

    __tablename__ = "oidc_code"
    id: int | None = Field(default=None, primary_key=True)
    code_hash: str = Field(unique=True, max_length=64)
    client_id: str = Field(max_length=64)
    user_id: int
    redirect_uri: str = Field(max_length=2048)
    code_challenge: str = Field(max_length=128)
    nonce: str = Field(default="", max_length=512)
    scope: str = Field(default="", max_length=512)
    expires_at: datetime = Field(index=True)
    used: bool = Field(default=False)
