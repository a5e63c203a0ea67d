"""Which app a visitor was sent to the dashboard's sign-in from.

The proxy sends a visitor who must sign in to open an app to the dashboard with
`?signin_for=<subdomain>` (supervisor/proxy/signin.py, `authorize`), and brings them back to
the app once they are signed in. The sign-in page says which app that is, and whether it is
private, from the database, never from the link: a crafted link cannot make the page claim
that an app is private.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlmodel import col, select

from backend.context import Context
from backend.validation import SUBDOMAIN_RE
from models import App, session_scope

QUERY_PARAM = "signin_for"


@dataclass(frozen=True)
class SignInTarget:
    subdomain: str
    private: bool


def sign_in_target(ctx: Context, subdomain: str | None) -> SignInTarget | None:
    """The deployed app called `subdomain`, or None (no such app, or not a subdomain)."""
    name = (subdomain or "").strip().lower()
    if not name or not SUBDOMAIN_RE.fullmatch(name):
        return None
    with session_scope(ctx.engine) as s:
        visibility = s.exec(select(col(App.visibility)).where(
            App.subdomain == name, App.desired_state != "deleted")).first()
    if visibility is None:
        return None
    return SignInTarget(name, visibility == "private")
