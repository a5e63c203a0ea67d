"""The one deploy use-case: every check a deploy from a git URL makes before anything is
queued, for the dashboard's deploy form, the API's `POST /apps` and the CLI (which calls
the API) alike, so the same request gets the same answer from each.

`deploy(ctx, user, request)` checks, in this order, and raises the first problem as a
`ValidationError` naming the field at fault (a `Conflict` for a taken subdomain):
1. the fields themselves: repository URL, branch, main file, Python version (one this
   server offers), subdomain (valid and free), secrets (TOML);
2. the repository: reachable, the branch exists, the main file is on it
   (`backend.repositories.checks.check_main_file_in`);
3. its dependency file parses: requirements.txt line by line as requirements,
   pyproject.toml and uv.lock as TOML (`dependency_problem`);
4. what it asks of the runtime: packages.txt and the Python version
   (`backend.app_requirements`).
Steps 2 to 4 read one snapshot of the branch (a single shallow clone that fetches only its
small files, `backend.repositories.checks.open_branch`); `apps.deploy_app` then queues
the app without fetching the repository again.
A private repository on any git host comes with its credential (`request.credential`),
which the checks use and which is stored with the app. Then the secrets are stored.
Deploys from GitHub (`backend.github.deploy`) pick repository, branch and main file from
GitHub's own lists and queue through `apps.deploy_app` too.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass

from packaging.requirements import InvalidRequirement, Requirement

from backend import app_requirements
from backend.apps import secrets as app_secrets
from backend.apps import service as app_service
from backend.apps.service import AppView
from backend.context import Context
from backend.errors import Conflict, ValidationError
from backend.repositories import checks as repos
from backend.repositories import credentials
from backend.repositories.credentials import GitCredential
from backend.repositories.files import excerpt
from backend.validation import (
    validate_branch,
    validate_main_file,
    validate_python_version,
    validate_repo_url,
    validate_subdomain,
)
from models import User

DEPENDENCY_FILES = ("requirements.txt", "pyproject.toml", "uv.lock")
# A requirements line that is not a PEP 508 requirement but that pip and uv accept.
NOT_A_NAME = re.compile(r"^(-|\.|/|[a-z][a-z0-9+.-]*://|[A-Za-z]:\\)")


@dataclass(frozen=True)
class DeployRequest:
    """What a person asks to deploy (fields as typed; `deploy` validates them)."""

    repo_url: str
    branch: str = "main"
    main_file: str = "streamlit_app.py"
    subdomain: str = ""
    python_version: str = ""
    secrets: str = ""
    # A private repository on any git host: its deploy key or access token
    # (`backend.repositories.credentials`). A deploy key made for this request that the
    # developer has not added to the host yet (`key_not_added_yet`) cannot read the
    # repository: steps 2 to 4 are left to the build, which says to add the key.
    credential: GitCredential | None = None
    key_not_added_yet: bool = False


def requirements_problem(content: bytes) -> str:
    """Why a requirements.txt does not parse ('' when it does): the first line that is
    neither a requirement, an option, a path nor a URL."""
    text = content.decode("utf-8", errors="replace").replace("\\\n", " ")
    for number, raw in enumerate(text.splitlines(), 1):
        line = re.sub(r"(^|\s)#.*$", "", raw).strip()
        line = re.split(r"\s--?[a-z]", line, maxsplit=1)[0].strip()  # --hash=… and the like
        if not line or NOT_A_NAME.match(line):
            continue
        try:
            Requirement(line)
        except InvalidRequirement as e:
            return (f"requirements.txt line {number} is not a requirement: "
                    f"'{excerpt(raw.strip())}' ({excerpt(str(e).splitlines()[0])}). Write one "
                    "package per line, like 'pandas>=2', then push.")
    return ""


def dependency_problem(files: dict[str, bytes]) -> str:
    """Why the repository's dependency file cannot be installed as it is ('' when it
    parses). uv.lock and pyproject.toml must be TOML; requirements.txt, requirements."""
    for name in ("uv.lock", "pyproject.toml"):
        if name in files:
            try:
                tomllib.loads(files[name].decode("utf-8", errors="replace"))
            except tomllib.TOMLDecodeError as e:
                return (f"{name} is not valid TOML ({excerpt(str(e))}). Fix it and push.")
    if "requirements.txt" in files:
        return requirements_problem(files["requirements.txt"])
    return ""


def check_fields(ctx: Context, request: DeployRequest) -> None:
    """Step 1: the request's own fields (no network)."""
    validate_repo_url(request.repo_url, ctx.settings.allow_local_repos)
    validate_branch(request.branch)
    validate_main_file(request.main_file)
    validate_python_version(request.python_version, app_service.offered_python_versions(ctx))
    typed = request.subdomain.strip()
    if typed:
        sub = validate_subdomain(typed)
        if not app_service.subdomain_available(ctx, sub):
            raise Conflict("subdomain", f"The subdomain '{sub}' is taken; choose another.")
    if request.secrets.strip():
        app_secrets.validate_for_deploy(request.secrets)


def check_repository(ctx: Context, request: DeployRequest) -> None:
    """Steps 2 to 4, on one snapshot of the branch (`repos.open_branch`): the branch and
    main file exist, the dependency file parses, the runtime can give what the repository
    asks for."""
    with repos.open_branch(ctx, request.repo_url, request.branch,
                           credential=request.credential) as snapshot:
        repos.check_main_file_in(snapshot, request.main_file)
        problem = dependency_problem(snapshot.read_many(DEPENDENCY_FILES))
        if problem:
            raise ValidationError("dependencies", problem)
        python_version = validate_python_version(request.python_version,
                                                 app_service.offered_python_versions(ctx))
        app_requirements.check_repository(ctx, snapshot.repo_url, snapshot.branch,
                                          python_version, request.main_file,
                                          snapshot=snapshot)


def deploy(ctx: Context, user: User, request: DeployRequest) -> AppView:
    """Check everything (module docstring), queue the app, store its secrets."""
    check_fields(ctx, request)
    if request.credential is not None:
        credentials.require_url_for(request.credential, request.repo_url)
    if not request.key_not_added_yet:
        check_repository(ctx, request)
    view = app_service.deploy_app(
        ctx, user, repo_url=request.repo_url, branch=request.branch,
        main_file=request.main_file, subdomain=request.subdomain,
        python_version=request.python_version, repository_checked=True,
        credential=request.credential)
    if request.secrets.strip():
        app_secrets.set_secrets(ctx, user, view.id, request.secrets, False)
    return view
