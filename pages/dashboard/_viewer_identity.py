"""Viewer identity in the app, on the Settings page's Sharing tab: what `st.login()` and
`st.user` give the app with no set-up, and the identity headers switch (developers turn
it on; everyone else reads it). `backend.accounts.oidc_clients.set_identity_headers`
checks the role again."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import streamlit as st

from backend.accounts import oidc_clients
from backend.context import Context

ss = st.session_state
LOGIN_HELP = ("`st.login()` signs viewers in with their account on this platform, with "
              "nothing to configure: the app's `[auth]` secrets are added when it starts "
              "(your own `[auth]` section wins). Then `st.user` gives `name`, `email` and "
              "`role` (admin, developer or viewer), and `st.logout()` signs the app out.")
HEADERS_HELP = ("Adds `X-Forwarded-User` and `X-Forwarded-Email` of a signed-in viewer to "
                "page loads and the app's connection, readable with `st.context.headers`. "
                "Copies a browser sends itself are always removed.")


def section(ctx: Context, user: Any, conf: Any, run: Callable[..., None],
            show: Callable[[str], None]) -> None:
    st.markdown("#### Viewer identity in the app")
    st.caption(LOGIN_HELP)
    key = f"identity_headers_{conf.app_id}"
    ss[key] = oidc_clients.identity_headers_on(ctx, conf.app_id)

    def change() -> None:
        on = bool(ss[key])
        run("identity_headers",
            lambda: oidc_clients.set_identity_headers(ctx, user, conf.app_id, on),
            "Saved: the app now receives the viewer's identity headers." if on else
            "Saved: the app no longer receives identity headers.")

    st.toggle("Send identity headers to the app", key=key, on_change=change,
              disabled=not conf.can_manage, help=HEADERS_HELP)
    show("identity_headers")
