"""Validators for what people type: subdomains, repository URLs, branches, file paths.

Each returns the cleaned value or raises `ValidationError(field, message)`, and nothing
else, whatever the text (tests/unit/test_properties.py checks this with hypothesis). What they
guarantee, because the values reach git, Streamlit and DNS:

- subdomain: one DNS label, `[a-z0-9]`, inner hyphens, 1 to 63 characters, not reserved.
- repo URL: never starts with `-` (git option injection), never a transport helper
  (`ext::`, `fd::`), no host or path part starting with `-` (`ssh://-oProxyCommand=...`),
  no whitespace or control characters; `file://` and absolute paths only when the server
  allows local repositories, and without that setting no host written as a loopback,
  private, link-local or other non-public address, nor `localhost` (`backend.repositories.hosts`).
- branch: a name `git check-ref-format --branch` accepts; never starts with `-`, never
  contains `..` or control characters.
- python version: empty (the default) or `3.N`, one the selected runtime offers.
- main file: a relative `.py` path that stays inside the checkout (`main_file_in_checkout`
  also resolves symlinks of a real checkout); never starts with `-` once normalised.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from urllib.parse import urlparse

from backend.errors import ValidationError
from backend.repositories.files import RepoFileError, resolve_repo_path
from backend.repositories.hosts import literal_host_problem

SUBDOMAIN_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\Z")
RESERVED_SUBDOMAINS = frozenset({
    "www", "api", "admin", "dashboard", "app", "apps", "static", "status", "docs", "auth",
    "login", "logout", "signin", "share", "mail", "smtp", "support", "help", "cdn", "assets",
    "localhost", "_stcore", "stcloud", "cloud",
})
REMOTE_SCHEMES = frozenset({"https", "http", "ssh", "git"})
SCP_LIKE_RE = re.compile(r"^[A-Za-z0-9._-]+@[A-Za-z0-9.-]+:(?!//)[^\s]+\Z")
# The database columns' sizes (models/tables.py): longer values failed on PostgreSQL.
MAX_URL, MAX_OWNER, MAX_BRANCH, MAX_MAIN_FILE = 2048, 128, 255, 1024
PYTHON_VERSION_RE = re.compile(r"^3\.[0-9]{1,2}(?:\.[0-9]{1,2})?\Z")


def _has_control(text: str) -> bool:
    """Any ASCII or Unicode control character (newlines, escapes, NUL, DEL, C1)."""
    return any(unicodedata.category(c) == "Cc" for c in text)


def validate_subdomain(value: str) -> str:
    """The subdomain in lower case: one DNS label that is not reserved."""
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
    base = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")[:50].strip("-") or "app"
    if base in RESERVED_SUBDOMAINS:
        base = f"{base}-app"
    return base


def validate_repo_url(value: str, allow_local: bool) -> str:
    """A git URL git may fetch without being tricked into running something (see the
    module docstring); local paths only with `allow_local`."""
    url = value.strip()
    if not url:
        raise ValidationError("repo_url", "Enter the repository's git URL.")
    if len(url) > MAX_URL:
        raise ValidationError("repo_url", f"A repository URL has at most {MAX_URL} "
                              "characters; check what you pasted.")
    if len(repo_owner_and_name(url)[0]) > MAX_OWNER:
        raise ValidationError("repo_url", f"The repository's owner (the part before its "
                              f"name, which names the workspace) has at most {MAX_OWNER} "
                              "characters; check the URL.")
    if url.startswith("-") or any(c.isspace() for c in url) or _has_control(url):
        raise ValidationError("repo_url", "A repository URL has no spaces or control "
                              "characters and does not start with '-'; check what you "
                              "pasted.")
    if "::" in url.split("/", 1)[0]:
        raise ValidationError("repo_url", "Git transport helpers (such as ext::) are not "
                              "allowed; use an https, ssh or git URL.")
    dash = ValidationError("repo_url", "A host name or path in a repository URL cannot "
                           "start with '-'; check what you pasted.")
    if SCP_LIKE_RE.match(url):
        host, path = url.split("@", 1)[1].split(":", 1)
        if host.startswith("-") or path.startswith("-"):
            raise dash
        return url if allow_local else _public_host(url)
    try:
        parsed = urlparse(url)
    except ValueError:  # e.g. an unclosed [IPv6 literal
        raise ValidationError("repo_url", f"'{url}' is not a valid URL; check the host "
                              "name.") from None
    if parsed.scheme in REMOTE_SCHEMES and parsed.netloc:
        host = parsed.netloc.rsplit("@", 1)[-1]
        if host.startswith("-") or parsed.netloc.startswith("-") or \
                parsed.path.lstrip("/").startswith("-"):
            raise dash
        return url if allow_local else _public_host(url)
    is_local = parsed.scheme == "file" or (not parsed.scheme and url.startswith("/"))
    if is_local:
        if not allow_local:
            raise ValidationError("repo_url", "Local repositories are disabled on this server "
                                  "(setting allow_local_repos); use an https or ssh URL.")
        return url
    raise ValidationError("repo_url", f"'{url}' is not a git URL. Use https://host/owner/repo"
                          ", git@host:owner/repo.git, or an absolute local path.")


def _public_host(url: str) -> str:
    """`url` unless its host is written as a non-public address or a local name (names are
    resolved and checked when git fetches: `backend.repositories.hosts.public_fetch_target`)."""
    problem = literal_host_problem(url)
    if problem:
        raise ValidationError("repo_url", f"This server deploys only from public hosts "
                              f"(setting allow_local_repos is off): {problem}. Use the "
                              "repository's public https or ssh URL.")
    return url


def repo_owner_and_name(repo_url: str) -> tuple[str, str]:
    """('owner', 'repo') from any supported URL form; the owner is the workspace. On a git
    host the owner is the whole path before the name, as the host shows it (GitLab's
    `group/subgroup`); for a local path or file:// URL, the parent directory's name."""
    url = repo_url.strip().rstrip("/")
    on_host = True
    if SCP_LIKE_RE.match(url):
        path = url.split(":", 1)[1]
    else:
        try:
            parsed = urlparse(url)
        except ValueError:
            parsed = urlparse("")
        path = parsed.path if parsed.scheme else url
        on_host = parsed.scheme not in ("", "file")
    parts = [p for p in path.split("/") if p]
    name = parts[-1] if parts else "repo"
    name = name.removesuffix(".git")
    if len(parts) < 2:
        owner = "local"
    elif on_host:
        # Bitbucket Data Center serves https clones under /scm/<project>/<repo>.
        owner = "/".join(parts[1:-1] if parts[0] == "scm" and len(parts) > 2 else parts[:-1])
    else:
        owner = parts[-2]
    return owner.lower(), name


def repo_name(repo_url: str) -> str:
    return repo_owner_and_name(repo_url)[1]


def validate_branch(value: str) -> str:
    """A branch name git accepts (`git check-ref-format --branch`): never starting with
    `-`, without `..`, control characters or a component starting with `.`."""
    branch = value.strip()
    if not branch:
        raise ValidationError("branch", "Enter a branch name.")
    if len(branch) > MAX_BRANCH:
        raise ValidationError("branch", f"A branch name has at most {MAX_BRANCH} characters "
                              "here; check its name.")
    parts = branch.split("/")
    bad = (branch.startswith(("-", "/")) or branch.endswith((".", "/"))
           or ".." in branch or "//" in branch or "@{" in branch or branch == "@"
           or any(p.startswith(".") or p.endswith(".lock") for p in parts)
           or re.search(r"[\x00-\x20~^:?*\[\\\x7f]", branch) or _has_control(branch))
    if bad:
        raise ValidationError("branch", f"'{branch}' is not a valid branch name.")
    return branch


def validate_python_version(value: str, offered: Sequence[str]) -> str:
    """'' (the server's default) or a `3.N` version in `offered`, the versions the selected
    runtime reports (`backend.apps.service.offered_python_versions`); anything else would be stored
    and fail only at build time, or reach a Docker image tag."""
    version = value.strip()
    if not version:
        return ""
    if not PYTHON_VERSION_RE.match(version) or version not in offered:
        shown = f"'{version[:20]}'" if version.isprintable() else "(that value)"
        raise ValidationError("python_version", f"Python {shown} is not offered by this "
                              f"server; choose one of {', '.join(offered)}, or leave it "
                              "empty for the default.")
    return version


def validate_main_file(value: str) -> str:
    """The normalised relative path of a `.py` file inside the repository (never absolute,
    never through `..`, never starting with `-`, no control characters)."""
    path = value.strip()
    if not path:
        raise ValidationError("main_file", "Enter the path of the app's main file, such as "
                              "streamlit_app.py.")
    if len(path) > MAX_MAIN_FILE:
        raise ValidationError("main_file", f"The main file's path has at most "
                              f"{MAX_MAIN_FILE} characters.")
    pure = PurePosixPath(path)
    if pure.is_absolute() or ".." in pure.parts or path.startswith("-") or \
            str(pure).startswith("-") or _has_control(path):
        raise ValidationError("main_file", "The main file must be a path inside the "
                              "repository, such as app/streamlit_app.py.")
    if pure.suffix != ".py":
        raise ValidationError("main_file", "The main file must be a Python file ending in .py.")
    return str(pure)


def main_file_in_checkout(checkout: Path, main_file: str) -> Path:
    """The main file's real path in `checkout`, symlinks resolved the way every platform
    read of a checkout resolves them (`backend.repositories.files`); `ValidationError` when it (or
    a directory on the way) is a symlink that leads out of the checkout, e.g. a repository
    committing `streamlit_app.py -> /etc/passwd`."""
    relative = validate_main_file(main_file)
    try:
        return resolve_repo_path(checkout, relative)
    except RepoFileError as e:
        raise ValidationError("main_file", f"The main file {e.message}") from None
