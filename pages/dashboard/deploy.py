"""Deploy an app: repository, branch, main file, subdomain and Python version.

The fields are plain widgets rather than an `st.form`, so that the subdomain suggestion and
the resulting URL follow the repository as it is typed. Deploy runs in the button's callback,
before the page renders, so a `ValidationError` is shown under the field it names. After a
deploy the page follows the app live until it runs (a link to open it) or fails (the reason
and the log tail).
"""

from __future__ import annotations

from typing import Any

import streamlit as st

from backend import apps as app_service
from backend import platform
from backend.appstate import FAILED_STATES, OVEN_STATES
from backend.context import Context
from backend.errors import BackendError, NotFound, ValidationError
from backend.validation import repo_owner_and_name
from pages.dashboard import _ui as ui

ERRORS = "_deploy_errors"
DEPLOYED = "_deployed_app_id"
SUGGESTED = "_deploy_suggested_subdomain"
FIELDS = {"repo_url": "deploy_repo", "branch": "deploy_branch",
          "main_file": "deploy_main_file", "subdomain": "deploy_subdomain"}
DEFAULTS = {"deploy_repo": "", "deploy_branch": "main", "deploy_main_file": "streamlit_app.py",
            "deploy_subdomain": ""}
PROGRESS = {"queued": (0.1, "Queued: waiting for the builder"),
            "building": (0.4, "Building: fetching the code and installing dependencies"),
            "starting": (0.8, "Starting: waiting for the app to answer")}

ss = st.session_state


def clear_error(field: str) -> None:
    ss.get(ERRORS, {}).pop(field, None)


def on_repo_change(ctx: Context) -> None:
    """Suggest a free subdomain from the repository, unless the person typed their own."""
    clear_error("repo_url")
    repo = ss.get("deploy_repo", "").strip()
    current = ss.get("deploy_subdomain", "")
    if not current or current == ss.get(SUGGESTED):
        suggestion = app_service.suggest_free_subdomain(ctx, repo) if repo else ""
        ss["deploy_subdomain"] = suggestion
        ss[SUGGESTED] = suggestion


def submit(ctx: Context, user: Any) -> None:
    ss[ERRORS] = {}
    try:
        app = app_service.deploy_app(
            ctx, user, repo_url=ss.get("deploy_repo", ""),
            branch=ss.get("deploy_branch", ""), main_file=ss.get("deploy_main_file", ""),
            subdomain=ss.get("deploy_subdomain", ""),
            python_version=ss.get("deploy_python") or "")
    except ValidationError as e:
        ss[ERRORS] = {e.field if e.field in FIELDS else "form": str(e)}
    except BackendError as e:  # PermissionDenied: not a developer of that workspace
        ss[ERRORS] = {"form": str(e)}
    else:
        ss[DEPLOYED] = app.id
        for key, value in DEFAULTS.items():
            ss[key] = value
        ss.pop(SUGGESTED, None)


def field_error(field: str) -> None:
    message = ss.get(ERRORS, {}).get(field)
    if message:
        st.error(message, icon=":material/error:")


def deploy_form(ctx: Context, user: Any) -> None:
    for key, value in DEFAULTS.items():
        ss.setdefault(key, value)
    local = " or an absolute path to a repository on this server" \
        if ctx.settings.allow_local_repos else ""
    st.text_input(
        "Repository", key="deploy_repo", on_change=on_repo_change, args=(ctx,),
        placeholder="https://github.com/owner/repo",
        help=f"Any git URL (https://…, ssh://…, git@host:owner/repo.git){local}. The "
             "repository's owner becomes the app's workspace.")
    field_error("repo_url")
    repo = ss["deploy_repo"].strip()
    if repo:
        st.caption(f"Workspace: **{ui.md(repo_owner_and_name(repo)[0])}** "
                   "(the repository's owner)")
    left, right = st.columns(2)
    with left:
        st.text_input("Branch", key="deploy_branch", on_change=clear_error, args=("branch",))
        field_error("branch")
    with right:
        st.text_input("Main file path", key="deploy_main_file", on_change=clear_error,
                      args=("main_file",),
                      help="The Python file Streamlit runs, relative to the repository "
                           "root, such as streamlit_app.py or app/main.py.")
        field_error("main_file")
    st.text_input("App URL (custom subdomain)", key="deploy_subdomain",
                  on_change=clear_error, args=("subdomain",),
                  placeholder="made from the repository name",
                  help="Lowercase letters, digits and hyphens. Leave it empty to use a free "
                       "name made from the repository.")
    field_error("subdomain")
    sub = ss["deploy_subdomain"].strip().lower() or (
        app_service.suggest_free_subdomain(ctx, repo) if repo else "")
    st.caption(f"Your app will be at **{ui.md(ctx.settings.public_url(sub or 'your-app'))}**")

    with st.expander("Advanced settings"):
        versions = list(platform.read_platform(ctx).python_versions)
        default = ctx.settings.default_python
        if default not in versions:
            versions.insert(0, default)
        ss.setdefault("deploy_python", default)
        st.selectbox("Python version", versions, key="deploy_python",
                     help="The Python version the app's environment is built with.")

    field_error("form")
    st.button("Deploy", type="primary", key="deploy_submit", on_click=submit,
              args=(ctx, user), icon=":material/rocket_launch:", width="stretch")


def progress(ctx: Context, user: Any, app_id: int) -> bool:
    """The deployed app's progress; True while it is still in the oven."""
    try:
        app = app_service.get_app(ctx, user, app_id)
        logs = app_service.read_logs(ctx, user, app_id)
    except NotFound:
        st.info("This app has been deleted.")
        return False
    except BackendError as e:
        st.error(str(e))
        return False
    st.markdown(f"#### {ui.md(app.subdomain)}")
    st.caption(f"{ui.md(app.repo_url)} · {ui.md(app.branch)} · {ui.md(app.main_file)}")
    if app.state in OVEN_STATES:
        value, text = PROGRESS[app.state]
        st.subheader("🍳 Your app is in the oven")
        st.progress(value, text=text)
        if app.state_reason:
            st.caption(ui.md(app.state_reason))
        st.code(ui.last_lines(logs["build"], 15) or "Waiting for the build to start…",
                language=None)
    elif app.state == "running":
        st.success("🎉 Your app is live!")
        st.link_button("Open your app", app.url, type="primary",
                       icon=":material/open_in_new:", width="stretch")
        st.caption(ui.md(app.url))
    elif app.state in FAILED_STATES:
        st.error(f"{ui.status_label(app.state)}: {app.state_reason or 'no reason given'}")
        log = logs["build"] if app.state == "build_failed" else logs["app"] or logs["build"]
        st.code(ui.last_lines(log, 40) or "(the log is empty)", language=None)
        st.markdown("Fix the problem in the repository and push: the app is rebuilt "
                    "automatically. You can also reboot it from its page.")
    else:
        ui.status_badge(app)
    st.page_link(ui.APP, label="Details / logs", icon=":material/article:",
                 query_params={"app": str(app.id)})
    return app.state in ui.BUSY_STATES


st.set_page_config(layout="centered")
ctx, user = ui.page_context()
st.title("Deploy an app")
if ss.get(DEPLOYED) is not None:
    app_id = ss[DEPLOYED]
    ui.live("deploy_progress", lambda: progress(ctx, user, app_id))
    if st.button("Deploy another app", key="deploy_another", icon=":material/add:"):
        ss.pop(DEPLOYED, None)
        st.rerun()
else:
    st.caption("Deploy a Streamlit app from a git repository. Every push to the branch "
               "updates the app.")
    deploy_form(ctx, user)
