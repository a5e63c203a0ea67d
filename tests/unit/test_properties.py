"""Property-based tests (hypothesis) of what people type: `backend/validation.py`, secrets
TOML (`backend/apps/secrets.py`), emails (`backend/apps/sharing.py`), token names and scopes
(`backend/accounts/api_tokens.py`), and the signed values of `backend/accounts/identity.py`.

Each validator returns a cleaned value or raises its documented error (`ValidationError`,
`SecretsError` for secrets), whatever the text; what it accepts keeps the promise that
makes it safe to hand to git, Streamlit or DNS. Deterministic: `derandomize=True`.
"""

from __future__ import annotations

import os
import re
import string
import subprocess
import tempfile
import unicodedata
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from backend import validation
from backend.accounts import api_tokens, identity
from backend.apps import secrets as app_secrets
from backend.apps import sharing
from backend.errors import ValidationError

PROPS = settings(max_examples=300, derandomize=True, deadline=None,
                 suppress_health_check=[HealthCheck.too_slow])
DNS_LABEL = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\Z")

# Text that looks like what gets typed or pasted, and text that is anything at all.
URLISH = st.text(alphabet=string.ascii_letters + string.digits + ":/@.-_~[]%?#=+ \t\n\x00\x1b",
                 max_size=60)
ANY_TEXT = st.text(max_size=80)
SCHEMES = st.sampled_from(["https://", "http://", "ssh://", "git://", "file://", "ext::",
                           "fd::", "FILE://", "", "-", "--upload-pack=", "git@", "/"])
REPO_URLS = st.one_of(ANY_TEXT, URLISH, st.builds(lambda a, b: a + b, SCHEMES, URLISH))


def _valid_or_error(fn: Callable[..., Any], *args: Any) -> Any:
    """fn(*args) or None when it raised ValidationError; anything else fails the test."""
    try:
        return fn(*args)
    except ValidationError as e:
        assert str(e) and e.field, "a ValidationError names its field and says what to do"
        return None


def _has_control(text: str) -> bool:
    return any(unicodedata.category(c) == "Cc" for c in text)


# Subdomains --------------------------------------------------------------------------------
@PROPS
@given(st.one_of(ANY_TEXT, st.from_regex(r"\A[a-zA-Z0-9-]{0,70}\Z")))
@example("K")  # KELVIN SIGN: lower() makes it 'k'
@example("a" * 64)
@example("-a")
@example("www")
def test_accepted_subdomains_are_dns_labels_and_never_reserved(value: str) -> None:
    sub = _valid_or_error(validation.validate_subdomain, value)
    if sub is not None:
        assert DNS_LABEL.match(sub) and sub.isascii() and len(sub) <= 63
        assert sub not in validation.RESERVED_SUBDOMAINS
        assert validation.validate_subdomain(sub) == sub  # idempotent


@PROPS
@given(REPO_URLS)
@example("https://x/" + "a" * 49 + "-b")  # truncation used to leave a trailing '-'
@example("https://[abc")
def test_suggested_subdomains_are_always_valid(url: str) -> None:
    sub = validation.suggest_subdomain(url)
    assert validation.validate_subdomain(sub) == sub


# Repository URLs ---------------------------------------------------------------------------
@PROPS
@given(REPO_URLS, st.booleans())
@example("ext::sh -c touch% /tmp/pwned", True)
@example("ext::sh", True)
@example("fd::17", True)
@example("ssh://-oProxyCommand=touch/x", False)
@example("git@-oProxyCommand=x:repo", False)
@example("git@host:-upload-pack", False)
@example("https://[::1", False)
@example("file:///srv/git/r.git", False)
@example("/srv/git/r.git", False)
@example("https://github.com/a/b.git\n", False)
def test_repo_urls_never_reach_git_as_options_helpers_or_local_paths(url: str,
                                                                     allow_local: bool) -> None:
    got = _valid_or_error(validation.validate_repo_url, url, allow_local)
    if got is None:
        return
    assert got == got.strip() and got
    assert not got.startswith("-")
    assert "::" not in got.split("/", 1)[0], "a transport helper such as ext:: got through"
    assert not any(c.isspace() for c in got) and not _has_control(got)
    lowered = got.lower()
    local = lowered.startswith("file:") or got.startswith("/")
    if not allow_local:
        assert not local, "a local repository was accepted although local repos are off"
    if not local:
        # The host (and the path git passes to ssh) never looks like an option.
        if "://" in got:
            rest = got.split("://", 1)[1]
            host = rest.split("/", 1)[0].rsplit("@", 1)[-1]
        else:
            host, _, rest = got.split("@", 1)[1].partition(":")
            assert not rest.startswith("-")
        assert not host.startswith("-")
    owner, name = validation.repo_owner_and_name(got)  # never raises on what it accepted
    assert isinstance(owner, str) and isinstance(name, str)


@PROPS
@given(ANY_TEXT)
@example("https://[abc")
def test_repo_owner_and_name_never_raise(url: str) -> None:
    owner, name = validation.repo_owner_and_name(url)
    assert isinstance(owner, str) and isinstance(name, str)


# Branches ----------------------------------------------------------------------------------
BRANCHISH = st.text(alphabet=string.ascii_letters + "-./_@{}~^:?*[\\ \x00\x01\x7f\x85é",
                    max_size=30)


@PROPS
@given(st.one_of(ANY_TEXT, BRANCHISH))
@example("-b")
@example("--upload-pack=x")
@example("a..b")
@example("a/.hidden")
@example("x.lock/y")
@example("@")
@example("a\x85b")
def test_accepted_branches_are_never_options_ranges_or_control_chars(value: str) -> None:
    branch = _valid_or_error(validation.validate_branch, value)
    if branch is not None:
        assert not branch.startswith("-")
        assert ".." not in branch
        assert not _has_control(branch) and " " not in branch


@settings(max_examples=120, derandomize=True, deadline=None)
@given(BRANCHISH)
@example("a/.b")
@example("x.lock/y")
def test_accepted_branches_are_branch_names_to_git(value: str) -> None:
    """What we accept, git accepts too (so a branch never fails later in a clone)."""
    branch = _valid_or_error(validation.validate_branch, value)
    if branch is None:
        return
    done = subprocess.run(["git", "check-ref-format", "--branch", branch],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, f"git refuses branch {branch!r}: {done.stderr}"


# Main files --------------------------------------------------------------------------------
PATHISH = st.text(alphabet=string.ascii_letters + "./-_~\\ \x00\n", max_size=30).map(
    lambda s: s + ".py")


@PROPS
@given(st.one_of(ANY_TEXT, PATHISH))
@example("../x.py")
@example("/etc/x.py")
@example("./-x.py")  # normalised to "-x.py": `streamlit run -x.py` would be an option
@example("a/../../x.py")
@example("a\nb.py")
def test_main_files_stay_inside_the_checkout(value: str) -> None:
    got = _valid_or_error(validation.validate_main_file, value)
    if got is None:
        return
    assert got.endswith(".py") and not got.startswith(("-", "/"))
    assert not _has_control(got)
    with tempfile.TemporaryDirectory() as tmp:
        checkout = Path(tmp, "checkout")
        checkout.mkdir()
        resolved = (checkout / got).resolve()
        assert resolved.is_relative_to(checkout.resolve())
        assert validation.main_file_in_checkout(checkout, got) == resolved


def test_main_file_symlinks_out_of_the_checkout_are_refused(tmp_path: Path) -> None:
    checkout = tmp_path / "checkout"
    (checkout / "pkg").mkdir(parents=True)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "evil.py").write_text("print('not ours')\n")
    (checkout / "inside.py").write_text("import streamlit\n")
    os.symlink(outside / "evil.py", checkout / "app.py")  # file symlink out
    os.symlink(outside, checkout / "linked")  # directory symlink out
    os.symlink("inside.py", checkout / "alias.py")  # symlink that stays inside
    for bad in ("app.py", "linked/evil.py"):
        with pytest.raises(ValidationError, match="outside the repository"):
            validation.main_file_in_checkout(checkout, bad)
    assert validation.main_file_in_checkout(checkout, "alias.py") == \
        (checkout / "inside.py").resolve()
    with pytest.raises(ValidationError):
        validation.main_file_in_checkout(checkout, "../outside/evil.py")


# Secrets TOML ------------------------------------------------------------------------------
TOMLISH = st.text(alphabet=string.ascii_letters + string.digits + ' ="\'[]{}.,#\n\t\\-+:_',
                  max_size=120)


@PROPS
@given(st.one_of(ANY_TEXT, TOMLISH))
@example('a = "x"\nb = ')
@example("[a]\n[a]")
@example('k = """')
@example("\x00")
def test_secrets_toml_errors_are_only_secrets_error(text: str) -> None:
    try:
        data = app_secrets.parse_secrets(text)
    except app_secrets.SecretsError as e:
        assert e.field == "secrets" and str(e)
        assert e.line >= 0 and e.column >= 0
        if e.line:
            assert e.line <= max(1, text.count("\n") + 1)
        return
    assert isinstance(data, dict)
    env = app_secrets.env_vars_of(data)
    for name in env:  # never a variable that would change how the app's process runs
        assert re.match(r"^[A-Za-z_][A-Za-z0-9_]*\Z", name)
        assert name.upper() not in app_secrets.ENV_DENY
        assert not name.upper().startswith(app_secrets.ENV_DENY_PREFIXES)


def test_secrets_over_the_size_limit_are_a_secrets_error() -> None:
    with pytest.raises(app_secrets.SecretsError, match="limited"):
        app_secrets.parse_secrets('k = "' + "x" * app_secrets.MAX_BYTES + '"')


# Emails, tokens ----------------------------------------------------------------------------
@PROPS
@given(st.one_of(ANY_TEXT, st.emails().map(str)))
@example("a@b.co\n")
@example("a@@b.co")
def test_accepted_emails_have_one_at_and_no_spaces(value: str) -> None:
    got = _valid_or_error(sharing.validate_email, value)
    if got is not None:
        assert got.count("@") == 1 and not any(c.isspace() for c in got)
        assert got == got.lower()


@PROPS
@given(st.one_of(ANY_TEXT, st.lists(ANY_TEXT, max_size=4)))
def test_token_scopes_are_known_scopes_or_a_validation_error(scopes: str | list[str]) -> None:
    got = _valid_or_error(api_tokens.normalise_scopes, scopes)
    if got is not None:
        assert got and set(got) <= set(api_tokens.SCOPES)


# Signed values and redirect targets ----------------------------------------------------------
@PROPS
@given(st.one_of(st.none(), ANY_TEXT, URLISH))
@example("//evil.example/")
@example("/\\evil.example")
@example("/__stcloud/authorize")
def test_next_is_always_a_path_on_this_host(value: str | None) -> None:
    got = identity.safe_next(value)
    assert got.startswith("/") and not got.startswith("//") and "\\" not in got
    assert not _has_control(got.replace("\x85", ""))  # only ASCII controls matter to URLs
    assert got == "/" or got == value


@PROPS
@given(st.one_of(st.none(), ANY_TEXT, URLISH))
def test_forged_signed_values_are_never_accepted(value: str | None) -> None:
    key = b"k" * 32
    for purpose in ("session", "panel", "csrf", "signout", "return"):
        assert identity.verify(key, purpose, value) is None
    assert not identity.csrf_token_valid(key, "a.localhost", value)
    assert identity.dashboard_username("key", value) is None
