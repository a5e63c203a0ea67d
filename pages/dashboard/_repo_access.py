"""Repository access for private repositories on any git host: the deploy form's
"Private repository" choice (an access token over https, or a deploy key over ssh that the
page makes and shows before Deploy), and the app Settings page's "Repository access"
(what the app uses now, replace it, remove it). `backend.repositories.credentials` stores
and checks them; no page ever shows a token or a private key once entered."""

from __future__ import annotations

from typing import Any

import streamlit as st

from backend.context import Context
from backend.errors import BackendError
from backend.repositories import credentials
from backend.repositories.credentials import GitCredential

NONE, TOKEN, KEY = "none", "token", "deploy_key"
CHOICES = {NONE: "Public repository", TOKEN: "Access token (https URL)",
           KEY: "Deploy key (ssh URL)"}
PAIR = "_deploy_key_pair"  # the deploy form's key, made once per session until deployed
WHERE_KEYS = ("GitLab: Settings → Repository → Deploy keys · Gitea/Forgejo: Settings → "
              "Deploy keys · Bitbucket: Repository settings → Access keys · a plain server: "
              "the git user's authorized_keys. Read access is enough.")
TOKEN_USERS = ("GitLab: any name, such as oauth2 · Gitea/Forgejo: the token's owner · "
               "Bitbucket: x-token-auth")

ss = st.session_state


def deploy_fields() -> None:
    """The deploy form's "Private repository" choice (in Advanced settings)."""
    choice = st.radio("Repository access", list(CHOICES), key="deploy_access",
                      format_func=CHOICES.get, horizontal=True,
                      help="For a private repository on GitLab, Gitea, Forgejo, Bitbucket "
                           "or your own git server.")
    if choice == TOKEN:
        st.text_input("Access token", key="deploy_git_token", type="password",
                      help="A token with read access to the repository's code.")
        st.text_input("Token username", key="deploy_git_username", placeholder="oauth2",
                      help=TOKEN_USERS)
    elif choice == KEY:
        pair = ss.get(PAIR)
        if not isinstance(pair, GitCredential):
            pair = ss[PAIR] = credentials.new_deploy_key(ss.get("deploy_subdomain", ""))
        st.markdown("Add this public key to the repository as a **read-only deploy key**, "
                    "then Deploy:")
        st.code(pair.public_key, language=None)
        st.caption(WHERE_KEYS)


def deploy_credential() -> GitCredential | None:
    """What the deploy form's fields ask for (ValidationError when a token is malformed)."""
    choice = ss.get("deploy_access", NONE)
    if choice == TOKEN:
        return credentials.access_token(ss.get("deploy_git_token", ""),
                                        ss.get("deploy_git_username", ""))
    if choice == KEY and isinstance(ss.get(PAIR), GitCredential):
        return ss[PAIR]
    return None


def forget_deploy_fields() -> None:
    """After a deploy: the next app gets a key of its own, and the token is dropped."""
    for key in (PAIR, "deploy_git_token", "deploy_git_username"):
        ss.pop(key, None)
    ss["deploy_access"] = NONE


def settings_section(ctx: Context, user: Any, app_id: int) -> None:
    """The app Settings page's "Repository access" expander (developers)."""
    with st.expander("Repository access (private repositories on any git host)"):
        try:
            info = credentials.describe(ctx, user, app_id)
        except BackendError as e:
            st.warning(str(e))
            return
        if info.kind == KEY:
            st.markdown("The app reads its repository with this **deploy key**:")
            st.code(info.public_key, language=None)
            st.caption(WHERE_KEYS)
        elif info.kind == TOKEN:
            st.markdown(f"The app reads its repository with an **access token** "
                        f"(username `{info.username}`).")
        else:
            st.markdown("No credential: the repository is read as public.")
        token = st.text_input("New access token", key=f"access_token_{app_id}",
                              type="password")
        username = st.text_input("Token username", key=f"access_user_{app_id}",
                                 placeholder="oauth2", help=TOKEN_USERS)
        left, middle, right = st.columns(3)
        change: GitCredential | None | str = ""
        try:
            if left.button("Use this token", key=f"access_set_{app_id}",
                           disabled=not token):
                change = credentials.access_token(token, username)
            if middle.button("New deploy key", key=f"access_key_{app_id}"):
                change = credentials.new_deploy_key(f"app-{app_id}")
            if right.button("Remove", key=f"access_rm_{app_id}", disabled=not info.kind):
                change = None
            if change != "":
                credentials.set_credential(ctx, user, app_id,
                                           change if isinstance(change, GitCredential)
                                           else None)
                st.rerun()
        except BackendError as e:
            st.error(str(e))
        st.caption("A new credential is used from the next fetch; reboot the app to clone "
                   "with it now.")
