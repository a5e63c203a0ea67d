"""Validators for what people type: subdomains, repository URLs, branches, file paths.

Each returns the cleaned value or raises `ValidationError(field, message)`.
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath
from urllib.parse import urlparse

from backend.errors import ValidationError

SUBDOMAIN_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
RESERVED_SUBDOMAINS = frozenset({
    "www", "api", "admin", "dashboard", "app", "apps", "static", "status", "docs", "auth",
    "login", "logout", "signin", "share", "mail", "smtp", "support", "help", "cdn", "assets",
    "localhost", "_stcore", "stcloud", "cloud",
})
REMOTE_SCHEMES = frozenset({"https", "http", "ssh", "git"})
SCP_LIKE_RE = re.compile(r"^[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:(?!//)[^\s]+$")


def validate_subdomain(value: str) -> str:
    sub = value.strip().lower()
    if not sub:
        raise ValidationError("subdomain", "Choose a subdomain: letters, digits and hyphens.")
    if not SUBDOMAIN_RE.match(sub):
        raise ValidationError(
            "subdomain", f"'{value}' is not a valid subdomain: use 1 to 63 lowercase letters, "
            "digits and hyphens, not starting or ending with a hyphen.")
    if sub in RESERVED_SUBDOMAINS:
        raise ValidationError("subdomain", f"'{sub}' is reserved; choose another subdomain.")
    return sub


def suggest_subdomain(repo_url: str, branch: str = "", main_file: str = "") -> str:
    """A valid subdomain made from the repository name (the deploy form's suggestion)."""
    name = repo_name(repo_url)
    base = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")[:50] or "app"
    if base in RESERVED_SUBDOMAINS:
        base = f"{base}-app"
    return base


def validate_repo_url(value: str, allow_local: bool) -> str:
    url = value.strip()
    if not url:
        raise ValidationError("repo_url", "Enter the repository's git URL.")
    if url.startswith("-") or any(c.isspace() or c == "\0" for c in url):
        raise ValidationError("repo_url", "A repository URL has no spaces and does not start "
                              "with '-'; check what you pasted.")
    if "::" in url.split("/", 1)[0]:
        raise ValidationError("repo_url", "Git transport helpers (such as ext::) are not "
                              "allowed; use an https, ssh or git URL.")
    if SCP_LIKE_RE.match(url):
        return url
    parsed = urlparse(url)
    if parsed.scheme in REMOTE_SCHEMES and parsed.netloc:
        return url
    is_local = parsed.scheme == "file" or (not parsed.scheme and url.startswith("/"))
    if is_local:
        if not allow_local:
            raise ValidationError("repo_url", "Local repositories are disabled on this server "
                                  "(setting allow_local_repos); use an https or ssh URL.")
        return url
    raise ValidationError("repo_url", f"'{url}' is not a git URL. Use https://host/owner/repo"
                          ", git@host:owner/repo.git, or an absolute local path.")


def repo_owner_and_name(repo_url: str) -> tuple[str, str]:
    """('owner', 'repo') from any supported URL form; the owner is the workspace."""
    url = repo_url.strip().rstrip("/")
    if SCP_LIKE_RE.match(url):
        path = url.split(":", 1)[1]
    else:
        parsed = urlparse(url)
        path = parsed.path if parsed.scheme else url
    parts = [p for p in path.split("/") if p]
    name = parts[-1] if parts else "repo"
    if name.endswith(".git"):
        name = name[:-4]
    owner = parts[-2] if len(parts) >= 2 else "local"
    return owner.lower(), name


def repo_name(repo_url: str) -> str:
    return repo_owner_and_name(repo_url)[1]


def validate_branch(value: str) -> str:
    branch = value.strip()
    if not branch:
        raise ValidationError("branch", "Enter a branch name.")
    bad = (branch.startswith(("-", "/")) or branch.endswith((".", "/", ".lock"))
           or ".." in branch or "//" in branch or "@{" in branch
           or re.search(r"[\x00-\x20~^:?*\[\\\x7f]", branch))
    if bad:
        raise ValidationError("branch", f"'{branch}' is not a valid branch name.")
    return branch


def validate_main_file(value: str) -> str:
    path = value.strip()
    if not path:
        raise ValidationError("main_file", "Enter the path of the app's main file, such as "
                              "streamlit_app.py.")
    pure = PurePosixPath(path)
    if pure.is_absolute() or ".." in pure.parts or path.startswith("-") or "\0" in path:
        raise ValidationError("main_file", "The main file must be a path inside the "
                              "repository, such as app/streamlit_app.py.")
    if pure.suffix != ".py":
        raise ValidationError("main_file", "The main file must be a Python file ending in .py.")
    return str(pure)
