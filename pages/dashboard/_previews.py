"""Preview apps in the dashboard (`backend.apps.previews`): the app Settings page's
Previews tab (on or off, how soon a preview sleeps, which secrets it gets) and the list of
an app's live previews on its details page."""

from __future__ import annotations

from typing import Any

import streamlit as st

from backend.apps import previews
from backend.context import Context
from backend.errors import BackendError
from pages.dashboard import _ui as ui

SECRETS_LABELS = {"app": "The app's secrets", "none": "No secrets",
                  "own": "Secrets of their own (below)"}


def settings_tab(ctx: Context, user: Any, app_id: int, can_manage: bool) -> None:
    st.markdown("#### Preview apps")
    st.caption("Each open pull request into this app's branch runs as an app of its own at "
               "`<subdomain>-pr-<number>`, private to this workspace, updated with each push "
               "and deleted when the pull request closes. The pull request gets a comment "
               "and a commit status with its URL. "
               "GitHub delivers pull requests through the app's webhook (apps deployed from "
               "GitHub have it; others: add the webhook with the pull request event).")
    try:
        conf = previews.get_config(ctx, user, app_id)
    except BackendError as e:
        st.error(str(e))
        return
    enabled = st.toggle("Deploy a preview of each pull request", value=conf.enabled,
                        key=f"previews_on_{app_id}", disabled=not can_manage)
    idle = st.number_input("A preview sleeps after this many minutes without a viewer",
                           min_value=previews.MIN_IDLE_MINUTES,
                           max_value=previews.MAX_IDLE_MINUTES, value=conf.idle_minutes,
                           step=5.0, format="%.0f", key=f"previews_idle_{app_id}",
                           disabled=not can_manage)
    forks = st.checkbox("Also pull requests from forks (their code is someone else's: they "
                        "get no secrets)", value=conf.allow_forks,
                        key=f"previews_forks_{app_id}", disabled=not can_manage)
    modes = list(SECRETS_LABELS)
    mode = st.radio("Secrets of a preview", modes, index=modes.index(conf.secrets_mode),
                    format_func=SECRETS_LABELS.get, horizontal=True,
                    key=f"previews_secrets_{app_id}", disabled=not can_manage)
    own = None
    if mode == "own":
        own = st.text_area("Preview secrets (TOML)", key=f"previews_own_{app_id}",
                           placeholder="Saved: hidden" if conf.has_own_secrets else
                           'api_key = "a test key"', height=120, disabled=not can_manage)
    if can_manage and st.button("Save preview settings", key=f"previews_save_{app_id}"):
        try:
            previews.set_config(ctx, user, app_id, enabled=enabled, idle_minutes=idle,
                                secrets_mode=mode, own_secrets=own or None,
                                allow_forks=forks)
            st.success("Saved.", icon=":material/check:")
        except BackendError as e:
            st.error(str(e))


def preview_list(ctx: Context, user: Any, app_id: int) -> None:
    """The app's live previews (nothing when it has none)."""
    try:
        found = previews.list_previews(ctx, user, app_id)
    except BackendError:
        return
    if not found:
        return
    st.markdown("#### Previews")
    for p in found:
        what = f"#{p.number}" if p.number else f"branch {ui.md(p.branch)}"
        title = f" · {ui.md(p.title)}" if p.title else ""
        fork = " · from a fork" if p.from_fork else ""
        st.markdown(f"- **{what}**{title} · [{ui.md(p.subdomain)}]({p.url}) · "
                    f"{ui.md(p.state)}{fork}")
