"""Deploy an app: repository, branch, main file, subdomain; Python version and secrets under
"Advanced settings", with the access token or deploy key of a private repository on any
git host (`_repo_access`).

The fields are plain widgets rather than an `st.form`, so that the subdomain suggestion,
its availability and the resulting URL follow what is typed, and the repository, branch
and main file are checked as they are typed: the repository's branches and the branch's
Python files (subfolders included, offered as a list) come from
`backend.repositories.live`, cached per repository and branch for a few seconds so typing
does not run git per key. On Deploy, before anything is
queued, `backend.apps.deploy.deploy` (the API's and the CLI's deploy too) checks the fields,
the secrets as TOML, that the branch exists and has the main file (a shallow, blob-less
clone, time-bounded), that the dependency file parses and that the runtime offers what the
repository asks for, so a typo is shown under its field instead of ending in a failed
build. Each `ValidationError`
is shown under the field it names. After a deploy the page follows the app live until it
runs (a link to open it) or fails (the reason and the log tail).

When the user has connected GitHub (Account page), the page offers "From GitHub" (the
default then) next to "Any git URL": pickers for the repository (those the user
administers, with a search), its branch and its main file (`backend.github.deploy`), and
Deploy calls `deploy_from_github` (deploy key for a private repository, webhook).
"""

from __future__ import annotations

from typing import Any

import streamlit as st

from backend.apps import deploy as deploy_usecase
from backend.apps import logs as app_logs
from backend.apps import secrets as app_secrets
from backend.apps import service as app_service
from backend.apps.state import FAILED_STATES, OVEN_STATES
from backend.context import Context
from backend.errors import BackendError, NotFound, ValidationError
from backend.github import accounts as github
from backend.github import deploy as github_deploy
from backend.repositories import live
from backend.validation import repo_owner_and_name, validate_subdomain
from pages.dashboard import _repo_access as repo_access
from pages.dashboard import _ui as ui

ERRORS = "_deploy_errors"
DEPLOYED = "_deployed_app_id"
SUGGESTED = "_deploy_suggested_subdomain"
SUBMITTED = "_deploy_submitted"
FIELDS = {"repo_url": "deploy_repo", "branch": "deploy_branch",
          "main_file": "deploy_main_file", "subdomain": "deploy_subdomain",
          "secrets": "deploy_secrets", "git_token": "deploy_git_token"}
DEFAULTS = {"deploy_repo": "", "deploy_branch": "main", "deploy_main_file": "streamlit_app.py",
            "deploy_subdomain": "", "deploy_secrets": ""}
PROGRESS = {"queued": (0.1, "Queued: waiting for the builder"),
            "building": (0.4, "Building: fetching the code and installing dependencies"),
            "starting": (0.8, "Starting: waiting for the app to answer")}

FROM_GITHUB, FROM_URL = "github", "url"
SOURCES = {FROM_GITHUB: "From GitHub", FROM_URL: "Any git URL"}
GH_FIELDS = {"repo": "repo_url", "full_name": "repo_url"}  # ValidationError.field → ours

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
    """Check, deploy, store the secrets; errors go under their fields."""
    ss[ERRORS] = {}
    repo, branch, main_file = (ss.get(k, "") for k in
                               ("deploy_repo", "deploy_branch", "deploy_main_file"))
    secrets_text = ss.get("deploy_secrets", "")
    typed = ss.get("deploy_subdomain", "").strip()
    from_github = ss.get("deploy_source") == FROM_GITHUB and github_connected(ctx, user)
    try:
        if from_github:
            if typed and not app_service.subdomain_available(ctx, validate_subdomain(typed)):
                raise ValidationError("subdomain", f"The subdomain '{typed.lower()}' is "
                                      "taken; choose another.")
            if secrets_text.strip():
                app_secrets.validate_for_deploy(secrets_text)
            full_name = ss.get("deploy_gh_repo") or ""
            if not full_name:
                raise ValidationError("repo", "Choose a repository.")
            app = github_deploy.deploy_from_github(
                ctx, user, full_name, ss.get("deploy_gh_branch") or "",
                ss.get("deploy_gh_main_file") or "", subdomain=typed,
                python_version=ss.get("deploy_python") or "")
            if secrets_text.strip():
                app_secrets.set_secrets(ctx, user, app.id, secrets_text)
        else:  # the use-case the API and the CLI run too
            app = deploy_usecase.deploy(ctx, user, deploy_usecase.DeployRequest(
                repo_url=repo, branch=branch, main_file=main_file,
                subdomain=ss.get("deploy_subdomain", ""),
                python_version=ss.get("deploy_python") or "", secrets=secrets_text,
                credential=repo_access.deploy_credential()))
            repo_access.forget_deploy_fields()
    except ValidationError as e:
        field = GH_FIELDS.get(e.field, e.field) if from_github else e.field
        ss[ERRORS] = {field if field in FIELDS else "form": str(e)}
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


def github_connected(ctx: Context, user: Any) -> bool:
    try:
        return github.github_status(ctx, user) is not None
    except BackendError:
        return False


def keep_choice(key: str, options: list[str], preferred: str = "") -> None:
    """Before a selectbox: keep its value when still offered, else the preferred/first."""
    if ss.get(key) not in options:
        ss[key] = preferred if preferred in options else (options[0] if options else None)


def github_fields(ctx: Context, user: Any) -> str:
    """The repository, branch and main file pickers; the chosen repository (or "")."""
    st.text_input("Search your repositories", key="deploy_gh_query",
                  placeholder="owner/name or part of it",
                  help="Repositories where you are an admin on GitHub (needed to add the "
                       "webhook and, for a private one, a deploy key).")
    try:
        choices = github_deploy.list_admin_repos(ctx, user, ss.get("deploy_gh_query", ""))
    except BackendError as e:
        st.error(str(e), icon=ui.ICON["error"])
        return ""
    by_name = {c.full_name: c for c in choices}
    if not choices:
        st.info("No repository matches (only the ones you administer on GitHub are listed).")
        return ""
    keep_choice("deploy_gh_repo", list(by_name))
    full_name = st.selectbox(
        "Repository", list(by_name), key="deploy_gh_repo", on_change=clear_error,
        args=("repo_url",),
        format_func=lambda n: f"{n} 🔒" if by_name[n].private else n)
    field_error("repo_url")
    st.caption(f"Workspace: **{ui.md(full_name.split('/')[0])}** (the repository's owner)")
    left, right = st.columns(2)
    with left:
        try:
            branches = github_deploy.list_branches(ctx, user, full_name)
        except BackendError as e:
            st.error(str(e), icon=ui.ICON["error"])
            branches = []
        keep_choice("deploy_gh_branch", branches, by_name[full_name].default_branch)
        branch = st.selectbox("Branch", branches, key="deploy_gh_branch",
                              on_change=clear_error, args=("branch",))
        field_error("branch")
    with right:
        files: list[str] = []
        if branch:
            try:
                files = github_deploy.list_python_files(ctx, user, full_name, branch)
            except BackendError as e:
                st.error(str(e), icon=ui.ICON["error"])
        keep_choice("deploy_gh_main_file", files, "streamlit_app.py")
        st.selectbox("Main file path", files, key="deploy_gh_main_file",
                     on_change=clear_error, args=("main_file",),
                     help="The Python file Streamlit runs.")
        field_error("main_file")
    return full_name


def deploy_form(ctx: Context, user: Any) -> None:
    if ss.pop(SUBMITTED, False):  # before the widgets: submit() may reset their values
        with st.spinner("Checking the repository, the branch and the main file…"):
            submit(ctx, user)
        if ss.get(DEPLOYED) is not None:
            st.rerun()
    for key, value in DEFAULTS.items():
        ss.setdefault(key, value)
    if github_connected(ctx, user):
        ss.setdefault("deploy_source", FROM_GITHUB)
        source = st.radio("Source", list(SOURCES), key="deploy_source", horizontal=True,
                          format_func=SOURCES.get, label_visibility="collapsed")
    else:
        source = FROM_URL
    if source == FROM_GITHUB:
        full_name = github_fields(ctx, user)
        repo = f"https://github.com/{full_name}" if full_name else ""
    else:
        repo = url_fields(ctx)
    common_fields(ctx, repo, any_host=source == FROM_URL)


def url_fields(ctx: Context) -> str:
    """The repository URL, branch and main file inputs, checked as they are typed
    (`backend.repositories.live`); the repository typed."""
    local = " or an absolute path to a repository on this server" \
        if ctx.settings.allow_local_repos else ""
    st.text_input(
        "Repository", key="deploy_repo", on_change=on_repo_change, args=(ctx,),
        placeholder="https://github.com/owner/repo",
        help=f"Any git URL (https://…, ssh://…, git@host:owner/repo.git){local}. The "
             "repository's owner becomes the app's workspace.")
    field_error("repo_url")
    repo = ss["deploy_repo"].strip()
    names, repo_problem = repo_branches(ctx, repo)
    if repo_problem:
        live_problem("repo_url", repo_problem)
    elif repo:
        st.caption(f"Workspace: **{ui.md(repo_owner_and_name(repo)[0])}** "
                   "(the repository's owner)")
    left, right = st.columns(2)
    with left:
        st.text_input("Branch", key="deploy_branch", on_change=clear_error, args=("branch",),
                      live=True, help="Branches: " + ", ".join(names[:20]) if names else None)
        field_error("branch")
        branch = ss["deploy_branch"].strip()
        branch_ok = bool(names) and branch_check(ctx, repo, branch)
    with right:
        st.text_input("Main file path", key="deploy_main_file", on_change=clear_error,
                      args=("main_file",), live=True,
                      help="The Python file Streamlit runs, relative to the repository "
                           "root, such as streamlit_app.py or app/main.py.")
        field_error("main_file")
        if branch_ok:
            main_file_check(ctx, repo, branch)
    return repo


def live_problem(field: str, message: str) -> None:
    """A problem found while typing, unless Deploy already put one under the field."""
    if not ss.get(ERRORS, {}).get(field):
        st.caption(f":red[✗ {ui.md(message)}]")


def repo_branches(ctx: Context, repo: str) -> tuple[list[str], str]:
    """The repository's branches, or why it cannot be read (both empty before typing)."""
    if not repo:
        return [], ""
    try:
        return live.branches(ctx, repo), ""
    except ValidationError as e:
        return [], str(e).split("\n\n")[0]


def branch_check(ctx: Context, repo: str, branch: str) -> bool:
    """Say whether the typed branch exists; True when it does."""
    try:
        problem = live.branch_problem(ctx, repo, branch) if branch else "Type a branch."
    except ValidationError as e:
        problem = str(e).split("\n\n")[0]
    if problem:
        live_problem("branch", problem)
        return False
    st.caption(":green[✓ branch found]")
    return True


def main_file_check(ctx: Context, repo: str, branch: str) -> None:
    """Say whether the typed main file is on the branch; offer its Python files."""
    main_file = ss["deploy_main_file"].strip()
    try:
        found = live.python_files(live.files(ctx, repo, branch))
    except ValidationError as e:
        live_problem("main_file", str(e).split("\n\n")[0])
        return
    problem = live.main_file_problem(ctx, repo, branch, main_file) if main_file else \
        "Type or choose the main file."
    if problem:
        live_problem("main_file", problem)
    else:
        st.caption(":green[✓ file found]")
    if found:
        st.selectbox("Python files on this branch", found, key="deploy_main_pick",
                     index=None, placeholder="Choose one…", on_change=pick_main_file,
                     label_visibility="collapsed")


def pick_main_file() -> None:
    """The file chosen in the list becomes the main file path."""
    picked = ss.get("deploy_main_pick")
    if picked:
        ss["deploy_main_file"] = picked
        clear_error("main_file")
    ss["deploy_main_pick"] = None


def common_fields(ctx: Context, repo: str, any_host: bool = True) -> None:
    """Subdomain (and the URL it gives), advanced settings (with `any_host`, the
    repository access of a private repository on any git host), the Deploy button."""
    st.text_input("App URL (custom subdomain)", key="deploy_subdomain",
                  on_change=clear_error, args=("subdomain",), live=True,
                  placeholder="made from the repository name",
                  help="Lowercase letters, digits and hyphens. Leave it empty to use a free "
                       "name made from the repository.")
    field_error("subdomain")
    typed = ss["deploy_subdomain"].strip().lower()
    sub = typed or (app_service.suggest_free_subdomain(ctx, repo) if repo else "")
    url = ui.md(ctx.settings.public_url(sub or "your-app"))
    if typed and not app_service.subdomain_available(ctx, typed):
        st.caption(f":red[✗ **{ui.md(typed)}** is taken; choose another subdomain.]")
    else:
        st.caption(f"Your app will be at **{url}**" + (" :green[✓ available]" if typed else ""))

    with st.expander("Advanced settings"):
        versions = list(app_service.offered_python_versions(ctx))
        ss.setdefault("deploy_python", ctx.settings.default_python)
        st.selectbox("Python version", versions, key="deploy_python",
                     help="The Python version the app's environment is built with. "
                          "Changing it later redeploys the app.")
        st.text_area("Secrets", key="deploy_secrets", height=140, on_change=clear_error,
                     args=("secrets",),
                     placeholder='api_key = "abc123"\n\n[database]\npassword = "…"',
                     help="TOML, read by the app as st.secrets; root-level string keys are "
                          "also environment variables. Stored encrypted; you can change "
                          "them later in the app's settings.")
        field_error("secrets")
        if any_host:
            repo_access.deploy_fields()
            field_error("git_token")

    field_error("form")
    st.button("Deploy", type="primary", key="deploy_submit", icon=":material/rocket_launch:",
              width="stretch", on_click=lambda: ss.update({SUBMITTED: True}))


def progress(ctx: Context, user: Any, app_id: int) -> bool:
    """The deployed app's progress; True while it is still in the oven."""
    try:
        app = app_service.get_app(ctx, user, app_id)
        logs = app_logs.read_logs(ctx, user, app_id)
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
    ui.app_links(app)
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
