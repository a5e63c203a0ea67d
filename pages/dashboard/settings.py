"""App settings, as Community Cloud's settings dialog: General, Sharing, Secrets, and Sleep.

- General: the custom subdomain (checked as you type; the old URL stops working at once),
  the Python version (changing it redeploys: said, and offered as one button), the memory
  limit (site admins set it; others see it), and the push webhook.
- Sharing: public or private; viewers invited by email (private apps); remove them;
  viewer identity in the app (st.login, the identity headers switch: `_viewer_identity.py`).
- Secrets: a TOML editor. Saving validates (an error names the line and shows it),
  encrypts, and restarts the app; root-level string keys are environment variables too.
- Sleep: the app's sleep policy and whether a visit wakes it (`pages/dashboard/_sleep.py`).

Every action goes through `backend` (which checks the role again); viewers see the values
without the forms. Each form's error is shown under it and survives the rerun.
"""

from __future__ import annotations

from typing import Any

import streamlit as st

from backend.apps import hooks, sharing
from backend.apps import secrets as app_secrets
from backend.apps import service as app_service
from backend.apps import settings as app_settings
from backend.context import Context
from backend.errors import BackendError
from backend.github import deploy as github_deploy
from pages.dashboard import _previews as preview_view
from pages.dashboard import _repo_access as repo_access
from pages.dashboard import _sleep as sleep_view
from pages.dashboard import _ui as ui
from pages.dashboard import _viewer_identity as viewer_identity

ERRORS = "_settings_errors"
DONE = "_settings_done"
ss = st.session_state


def errors() -> dict[str, Any]:
    return ss.setdefault(ERRORS, {})


def show(field: str) -> None:
    """The error (and success) of one form, under it."""
    error = errors().get(field)
    if error:
        st.error(str(error), icon=ui.ICON["error"])
    done = ss.get(DONE, {}).pop(field, None)
    if done:
        st.success(done)


def run(field: str, action: Any, success: str | Any) -> None:
    """Call `action()`; keep its error (or success message) for `show(field)`."""
    errors().pop(field, None)
    try:
        result = action()
    except BackendError as e:
        errors()[field] = e
        return
    ss.setdefault(DONE, {})[field] = success(result) if callable(success) else success


# General --------------------------------------------------------------------------------
def python_caption(conf: Any) -> str:
    """Which Python the app runs on (what its environment was built with) and why."""
    why = "chosen here" if conf.python_choice else \
        f"no version chosen here: the repository's .python-version, else the server " \
        f"default {conf.python_version}"
    if not conf.built_python:
        return f"The app will run on **Python {conf.python_version}** ({why}) once built."
    return f"The app runs on **Python {conf.built_python}** ({why})."


def general(ctx: Context, user: Any, conf: Any) -> None:
    st.markdown("#### Custom subdomain")
    st.caption(f"Your app is at **{ui.md(conf.url)}**. Changing the subdomain moves it: the "
               "new URL works at once and the old one stops working (links to it break).")
    ss.setdefault("new_subdomain", conf.subdomain)
    st.text_input("Subdomain", key="new_subdomain", disabled=not conf.can_manage, live=True,
                  help="Lowercase letters, digits and hyphens.")
    wanted = ss["new_subdomain"].strip().lower()
    if conf.can_manage and wanted and wanted != conf.subdomain:
        if app_service.subdomain_available(ctx, wanted):
            st.caption(f":green[✓ {ui.md(ctx.settings.public_url(wanted))} is available]")
        else:
            st.caption(f":red[✗ {ui.md(wanted)} is taken]")
    if conf.can_manage:
        st.button("Save subdomain", key="save_subdomain", icon=ui.ICON["save"],
                  on_click=run, args=("subdomain", lambda: app_settings.change_subdomain(
                      ctx, user, conf.app_id, ss["new_subdomain"]),
                      lambda app: f"Moved: your app is now at {app.url}"))
    show("subdomain")

    st.markdown("#### Python version")
    st.caption(f"{python_caption(conf)} Changing it builds a new environment, so the app "
               "is **redeployed**: visitors see the oven page for a few minutes.")
    if conf.can_manage:
        versions = list(conf.python_versions)
        current = conf.python_version if conf.python_version in versions else versions[0]
        ss.setdefault("new_python", current)
        left, right = st.columns([1, 2], vertical_alignment="bottom")
        left.selectbox("Python version", versions, key="new_python")
        right.button(f"Redeploy with Python {ss['new_python']}", key="save_python",
                     icon=ui.ICON["reboot"], disabled=ss["new_python"] == conf.python_version,
                     on_click=run, args=("python", lambda: app_settings.change_python_version(
                         ctx, user, conf.app_id, ss["new_python"]),
                         "Redeploying with the new Python version: follow it on the App "
                         "details page."))
        show("python")

    st.markdown("#### Memory limit")
    kind = "set for this app" if conf.memory_custom else "the server default"
    st.caption(f"**{conf.memory_limit_mb} MiB** ({kind}). An app that uses more is stopped "
               "and shows the over-limit page.")
    if conf.can_set_memory:
        ss.setdefault("new_memory", conf.memory_limit_mb)
        left, mid, right = st.columns([1, 1, 1], vertical_alignment="bottom")
        left.number_input("Memory limit (MiB)", min_value=app_settings.MIN_MEMORY_MB,
                          max_value=app_settings.MAX_MEMORY_MB, step=128, key="new_memory")
        mid.button("Save limit", key="save_memory", icon=ui.ICON["save"], on_click=run,
                   args=("memory", lambda: app_settings.set_memory_limit(
                       ctx, user, conf.app_id, int(ss["new_memory"])),
                       "Saved; a running app restarts to apply it."))
        right.button(f"Use the default ({conf.default_memory_mb} MiB)", key="reset_memory",
                     disabled=not conf.memory_custom, on_click=run,
                     args=("memory", lambda: app_settings.set_memory_limit(
                         ctx, user, conf.app_id, None), "Back to the server default."))
        show("memory")
    else:
        st.caption("Site admins can change it.")

    gh = github_deploy.app_github_info(ctx, user, conf.app_id)
    if gh is not None:
        how = ("a GitHub webhook" if gh.mode == "webhook" else
               "polling the branch" + (f" ({gh.mode_reason})" if gh.mode_reason else ""))
        st.markdown(f"**GitHub:** `{ui.md(gh.repo_full_name)}`"
                    f"{' (private, read-only deploy key)' if gh.private else ''}; updates "
                    f"arrive by {ui.md(how)}.")
        if gh.last_error:
            st.warning(f"GitHub: {gh.last_error}", icon=":material/sync_problem:")
    if conf.can_manage:
        with st.expander("Push webhook (optional)"):
            info = hooks.webhook_info(ctx, user, conf.app_id)
            st.markdown("The server also polls the branch, so pushes arrive without a "
                        "webhook; a webhook makes them arrive at once. On GitHub add a "
                        "webhook with this URL, content type `application/json` and this "
                        "secret:")
            st.code(info.github_url, language=None)
            for host, url in info.host_urls:
                st.markdown(f"On {host}: a push webhook (JSON) with this URL and the "
                            "secret below as its secret:")
                st.code(url, language=None)
            st.markdown("Any other git host: POST to this URL with the header "
                        "`Authorization: Bearer <secret>`:")
            st.code(info.generic_url, language=None)
            st.code(info.secret, language=None)
        repo_access.settings_section(ctx, user, conf.app_id)


# Sharing --------------------------------------------------------------------------------
def sharing_tab(ctx: Context, user: Any, conf: Any) -> None:
    private = conf.visibility == "private"
    st.markdown("#### Who can view this app")
    key = f"visibility_{conf.app_id}"
    ss[key] = conf.visibility  # what is stored, also after a refused change

    def change() -> None:
        choice = ss[key]
        run("visibility", lambda: sharing.set_visibility(ctx, user, conf.app_id, choice),
            "Saved: " + ("anyone with the link can open the app." if choice == "public" else
                         "only workspace members and invited viewers can open the app "
                         "(they sign in first)."))

    st.radio("Who can view this app", ["public", "private"], key=key, on_change=change,
             disabled=not conf.can_manage, label_visibility="collapsed", horizontal=True,
             format_func=lambda v: "🌐 Public: anyone with the link" if v == "public" else
             "🔒 Private: members of the workspace and invited viewers")
    show("visibility")
    if not private:
        st.caption("Apps with no viewer for a while may go to sleep: the Sleep tab says "
                   "when.")

    st.markdown("#### Invited viewers")
    viewers = sharing.list_viewers(ctx, user, conf.app_id)
    st.caption("People outside the workspace who may open the app while it is private. "
               "They sign in with an account that has this email.")
    if conf.can_manage:
        def invite() -> None:
            email = ss.get("invite_email", "")
            run("invite", lambda: sharing.invite_viewer(ctx, user, conf.app_id, email),
                f"Invited {email.strip().lower()}.")
            if "invite" not in errors():
                ss["invite_email"] = ""

        with st.form("invite_form", border=False):
            left, right = st.columns([3, 1], vertical_alignment="bottom")
            left.text_input("Email", key="invite_email", placeholder="name@example.com")
            right.form_submit_button("Invite", icon=":material/person_add:", width="stretch",
                                     on_click=invite)
        show("invite")
    if not viewers:
        st.caption("No invited viewers yet.")
    for email in viewers:
        left, right = st.columns([4, 1], vertical_alignment="center")
        left.markdown(ui.md(email))
        if conf.can_manage:
            right.button("Remove", key=f"remove_viewer_{email}", icon=":material/person_remove:",
                         on_click=run, args=("invite", lambda e=email: sharing.remove_viewer(
                             ctx, user, conf.app_id, e), f"Removed {email}."))


# Secrets --------------------------------------------------------------------------------
def secrets_tab(ctx: Context, user: Any, conf: Any) -> None:
    st.markdown("#### Secrets")
    st.caption("TOML, read by the app as `st.secrets` (for example "
               '`st.secrets["db"]["password"]`). Root-level keys with string values are '
               "also environment variables. Stored encrypted; never shown in logs. Saving "
               "restarts the app.")
    if not conf.can_manage:
        st.info("Secrets are shown to developers of this app's workspace.")
        return
    key = f"secrets_text_{conf.app_id}"
    if key not in ss:
        try:
            ss[key] = app_secrets.get_secrets(ctx, user, conf.app_id)
        except BackendError as e:
            st.error(str(e))
            ss[key] = ""
    st.text_area("Secrets (TOML)", key=key, height=260,
                 placeholder='api_key = "abc123"\n\n[database]\nuser = "me"\npassword = "…"')

    def save() -> None:
        run("secrets", lambda: app_secrets.set_secrets(ctx, user, conf.app_id, ss[key]),
            lambda saved: f"Saved {saved.keys} key{'' if saved.keys == 1 else 's'}"
            + (f"; environment variables: {', '.join(saved.env_vars)}" if saved.env_vars
               else "") + (". The app is restarting to use them." if saved.restarted
                           else ". The app uses them when it next starts."))

    st.button("Save secrets", key="save_secrets", type="primary", icon=ui.ICON["save"],
              on_click=save)
    error = errors().get("secrets")
    show("secrets")
    if isinstance(error, app_secrets.SecretsError) and error.line:
        lines = ss[key].splitlines()
        if 0 < error.line <= len(lines):
            marker = " " * max(error.column - 1, 0) + "^"
            st.code(f"{error.line:>4} | {lines[error.line - 1]}\n     | {marker}",
                    language=None)


ctx, user = ui.page_context()
st.title("App settings")
app_id = ui.app_picker(ctx, user)
if app_id is None:
    st.stop()
if ss.get("_settings_app") != app_id:  # another app: forget the last one's forms
    for name in [k for k in ss if str(k).startswith(("new_", "invite_"))]:
        del ss[name]
    ss[ERRORS], ss[DONE], ss["_settings_app"] = {}, {}, app_id
try:
    conf = app_settings.get_settings(ctx, user, app_id)
    app = app_service.get_app(ctx, user, app_id)
except BackendError as e:
    st.error(str(e))
    st.stop()
ui.status_badge(app)
if not conf.can_manage:
    st.caption(f"**{ui.VIEW_ONLY}**", help=ui.VIEW_ONLY_HELP)
ui.app_links(app, skip=ui.SETTINGS)
general_tab, share_tab, secret_tab, sleep_tab, preview_tab = st.tabs(
    ["General", "Sharing", "Secrets", "Sleep", "Previews"])
with general_tab:
    general(ctx, user, conf)
with share_tab:
    sharing_tab(ctx, user, conf)
    viewer_identity.section(ctx, user, conf, run, show)
with secret_tab:
    secrets_tab(ctx, user, conf)
with sleep_tab:
    sleep_view.sleep_tab(ctx, user, app_id, run, show)
with preview_tab:
    preview_view.settings_tab(ctx, user, app_id, conf.can_manage)
