"""App secrets: a TOML document per app, like Community Cloud's secrets box.

- Validated on save (`parse_secrets`): a TOML error names its line and column, and the page
  shows that line. At most `MAX_BYTES`, and arrays, inline tables and tables nested at most
  `MAX_DEPTH` deep (Python's TOML parser recurses once per `[` or `{`, so a few hundred
  of them would exhaust the interpreter's stack, and its time grows with the square of a
  dotted key's parts: both are counted before parsing, and the parsed document's depth is
  measured without recursion).
- Encrypted at rest: the `AppSecret` row holds a Fernet token (AES-128-CBC + HMAC-SHA256) of
  the TOML text. The key is derived from the server secret `app_secrets` that
  `backend.accounts.keys.load_or_create_secret` keeps in `<data_dir>/keys/app_secrets` (mode 0600,
  directory 0700, created with O_EXCL on first use).
- For the runtime: `<settings.apps_path>/<app_id>/secrets.toml` (mode 0600, written
  atomically). Both engines hand it to the app as `.streamlit/secrets.toml` (the process
  runtime copies it into the checkout, Docker mounts it read-only); the supervisor deletes
  the directory with the app. Clearing the secrets writes an empty file, so a copy made by
  an earlier start is overwritten too.
- Root-level keys with string values are also environment variables of the app, as on
  Community Cloud: `runtime_env_vars()` reads them from the runtime file for the
  supervisor's `AppSpec.env_vars` (names that would break the process, such as PATH, HOME
  or LD_*, are left out).
- Saving restarts the app (`backend.apps.service.reboot_app`) when an instance may already have
  read the old file (starting, running, crashed, over its limit). An app still queued or
  building picks the new file up when it starts: the file is written before the state is
  read, and the supervisor reads the file only after it recorded `starting`.
- Values never reach a log: events say who changed the secrets and how many keys, nothing
  else. Every value a save holds, and every value it replaces, is kept in the app's
  history (`AppSecretValue`: encrypted with the same key, found again by an HMAC
  fingerprint, deleted with the app); `every_value()` reads it for
  `backend.apps.log_masking`, which masks them in every log text we show.
"""

from __future__ import annotations

import re
import string
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet, InvalidToken
from sqlmodel import select

from backend.accounts import sealing
from backend.apps import secret_history as history
from backend.apps import service as app_service
from backend.apps.secret_history import leaf_values as leaf_values  # re-export
from backend.apps.service import load_app_for
from backend.context import Context
from backend.errors import BackendError, ValidationError
from backend.platform.settings import Settings
from models import App, AppEvent, AppSecret, AppSecretValue, User, session_scope, utcnow

KEY_NAME = sealing.KEY_NAME
MAX_BYTES = 64 * 1024
MAX_DEPTH = 32  # arrays, inline tables and tables inside one another
RUNTIME_FILE = "secrets.toml"
RESTART_STATES = frozenset({"starting", "running", "crashed", "over_limit"})
ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
ENV_DENY = frozenset({"PATH", "HOME", "LANG", "PWD", "SHELL", "USER", "VIRTUAL_ENV",
                      "PYTHONPATH", "PYTHONHOME", "PYTHONUNBUFFERED", "PYTHONSTARTUP"})
ENV_DENY_PREFIXES = ("LD_", "STCLOUD_", "STREAMLIT_", "PYTHON", "UV_")
_TOML_POSITION = re.compile(r"\s*\(at line (\d+), column (\d+)\)\s*$")
_KEY_CHARS = frozenset(string.ascii_letters + string.digits + "_- \t")  # bare key parts
_TOML_END = re.compile(r"\s*\(at end of document\)\s*$")


@dataclass(frozen=True)
class SecretsSaved:
    keys: int  # number of root-level keys (tables count as one)
    env_vars: tuple[str, ...]  # names exported as environment variables
    restarted: bool


class SecretsError(ValidationError):
    """Invalid TOML; `line` (1-based, 0 when unknown) and `column` point at the problem."""

    def __init__(self, message: str, line: int = 0, column: int = 0) -> None:
        super().__init__("secrets", message)
        self.line = line
        self.column = column


# Validation --------------------------------------------------------------------------------
def parse_secrets(text: str) -> dict[str, Any]:
    """The TOML document as a dict, or `SecretsError` saying which line is wrong (also for
    a document over `MAX_BYTES` or nested deeper than `MAX_DEPTH`)."""
    size = len(text.encode())
    if size > MAX_BYTES:
        raise SecretsError(f"Secrets are limited to {MAX_BYTES // 1024} KB and these are "
                           f"{size / 1024:.0f} KB; keep only the values the app reads, and "
                           "keep large files (certificates, data) out of the secrets.")
    too_deep = _too_deep_at(text, MAX_DEPTH)
    if too_deep is not None:
        line, column = too_deep
        raise SecretsError(f"Line {line}, column {column}: arrays, tables or dotted keys are "
                           f"nested more than {MAX_DEPTH} deep. Flatten the structure (use "
                           "[section] tables with simple values).", line, column)
    try:
        data = tomllib.loads(text)
    except RecursionError:  # nesting the bracket count above did not see
        raise SecretsError(f"Arrays and tables are nested more than {MAX_DEPTH} deep; "
                           "flatten the structure.") from None
    except tomllib.TOMLDecodeError as e:
        raise _decode_error(text, e) from None
    deep_key = _key_deeper_than(data, MAX_DEPTH)
    if deep_key is not None:
        raise SecretsError(f"The key {deep_key} is nested more than {MAX_DEPTH} tables deep; "
                           "use fewer dotted parts or [section] levels.")
    return data


def _decode_error(text: str, e: tomllib.TOMLDecodeError) -> SecretsError:
    """The parser's error as a SecretsError naming the line and column."""
    message = str(e)
    match = _TOML_POSITION.search(message)
    if match:
        line, column = int(match.group(1)), int(match.group(2))
        reason = message[:match.start()].rstrip(".")
        return SecretsError(f"Line {line}, column {column}: {reason}. Secrets are TOML, "
                            'such as: api_key = "abc123"', line, column)
    if _TOML_END.search(message):
        line = max(1, len(text.splitlines()))
        reason = _TOML_END.sub("", message).rstrip(".")
        return SecretsError(f"Line {line} (end of the text): {reason}.", line, 0)
    return SecretsError(f"Not valid TOML: {message}")


def _too_deep_at(text: str, limit: int) -> tuple[int, int] | None:
    """(line, column) of the first `[` or `{` that opens more than `limit` levels, or of the
    dot that makes a dotted key longer than `limit` parts (the parser's time grows with the
    square of a key's parts), outside strings and comments; None when there is none (also
    for text the parser will refuse)."""
    depth, dots, line, line_start, i, n = 0, 0, 1, 0, 0, len(text)
    while i < n:
        c = text[i]
        if c == "\n":
            line, line_start, dots = line + 1, i + 1, 0
        elif c == "#":
            i = text.find("\n", i)
            if i < 0:
                return None
            continue
        elif c in "\"'":
            end = _string_end(text, i)
            if end < 0:
                return None
            newlines = text.count("\n", i, end)
            if newlines:
                line, line_start = line + newlines, text.rindex("\n", i, end) + 1
            i = end
            continue
        elif c in "[{":
            depth, dots = depth + 1, 0
            if depth > limit:
                return line, i - line_start + 1
        elif c in "]}":
            depth, dots = max(0, depth - 1), 0
        elif c == ".":
            dots += 1  # a float has one; only a dotted key has more
            if dots >= limit:
                return line, i - line_start + 1
        elif c not in _KEY_CHARS:  # =, a comma, a colon of a time...: the key ended
            dots = 0
        i += 1
    return None


def _string_end(text: str, start: int) -> int:
    """The index after the TOML string that opens at `start`; -1 when it is not closed."""
    quote = text[start]
    delimiter = quote * 3 if text.startswith(quote * 3, start) else quote
    i = start + len(delimiter)
    while i < len(text):
        if quote == '"' and text[i] == "\\":
            i += 2
        elif text.startswith(delimiter, i):
            return i + len(delimiter)
        elif text[i] == "\n" and len(delimiter) == 1:
            return -1
        else:
            i += 1
    return -1


def _key_deeper_than(data: dict[str, Any], limit: int) -> str | None:
    """The dotted path (shortened) of a value more than `limit` tables or arrays deep, or
    None; iterative, so no depth can exhaust the stack."""
    stack: list[tuple[Any, tuple[str, ...]]] = [(data, ())]
    while stack:
        value, path = stack.pop()
        if len(path) > limit:
            shown = ".".join(path[:3])
            return f"{shown}..."
        items = value.items() if isinstance(value, dict) else \
            enumerate(value) if isinstance(value, list) else ()
        stack.extend((v, (*path, str(k))) for k, v in items)
    return None


def env_vars_of(data: dict[str, Any]) -> dict[str, str]:
    """Root-level string values that become environment variables."""
    out = {}
    for name, value in data.items():
        if not isinstance(value, str) or not ENV_NAME_RE.match(name):
            continue
        if name.upper() in ENV_DENY or name.upper().startswith(ENV_DENY_PREFIXES):
            continue
        out[name] = value
    return out


# Encryption ----------------------------------------------------------------------------------
def _fernet(ctx: Context) -> Fernet:
    return sealing.fernet(ctx)


def encrypt(ctx: Context, text: str) -> str:
    return _fernet(ctx).encrypt(text.encode()).decode()


def decrypt(ctx: Context, token: str) -> str:
    if not token:
        return ""
    try:
        return _fernet(ctx).decrypt(token.encode()).decode()
    except InvalidToken:
        raise BackendError("This app's secrets cannot be decrypted: the server key "
                           f"(<data_dir>/keys/{KEY_NAME}) is not the one they were saved "
                           "with. Restore that file, or save the secrets again.") from None


# Runtime file --------------------------------------------------------------------------------
def runtime_path(settings: Settings, app_id: int) -> Path:
    return settings.apps_path / str(app_id) / RUNTIME_FILE


def write_runtime_file(settings: Settings, app_id: int, text: str) -> Path:
    """Write the plain TOML the app reads, mode 0600, atomically."""
    return sealing.write_private(runtime_path(settings, app_id), text)


def runtime_env_vars(settings: Settings, app_id: int) -> dict[str, str]:
    """Environment variables from the app's root-level string secrets (for the supervisor:
    `AppSpec(env_vars=runtime_env_vars(settings, app.id))`). {} without secrets."""
    try:
        text = runtime_path(settings, app_id).read_text()
    except (FileNotFoundError, NotADirectoryError):
        return {}
    try:
        return env_vars_of(tomllib.loads(text))
    except (tomllib.TOMLDecodeError, RecursionError):
        return {}


# Every value the secrets had ----------------------------------------------------------------
def every_value(ctx: Context, app_id: int) -> list[str]:
    """Every value the app's secrets have had since the history was kept, and the current
    ones (the stored document and the runtime file, which cover secrets saved before). A
    history row the key cannot decrypt (the key file was replaced) is skipped."""
    with session_scope(ctx.engine) as s:
        tokens = list(s.exec(select(AppSecretValue.ciphertext)
                             .where(AppSecretValue.app_id == app_id)).all())
        row = s.get(AppSecret, app_id)
        current = row.ciphertext if row else ""
    fernet = _fernet(ctx)

    def plain(token: str) -> str | None:
        try:
            return fernet.decrypt(token.encode()).decode()
        except InvalidToken:
            return None

    values = [v for v in map(plain, tokens) if v is not None]
    document = plain(current) if current else None
    if document is not None:
        values += history.values_of(document)
    try:
        values += history.values_of(runtime_path(ctx.settings, app_id).read_text())
    except (FileNotFoundError, NotADirectoryError):
        pass
    return values


# Services ------------------------------------------------------------------------------------
def get_secrets(ctx: Context, user: User, app_id: int) -> str:
    """The app's secrets as TOML text (developers of its workspace)."""
    with session_scope(ctx.engine) as s:
        load_app_for(s, user, app_id, "developer", "see this app's secrets")
        row = s.get(AppSecret, app_id)
        token = row.ciphertext if row else ""
    return decrypt(ctx, token)


def set_secrets(ctx: Context, user: User, app_id: int, text: str,
                restart: bool = True) -> SecretsSaved:
    """Validate, encrypt and store the secrets, write the runtime file, restart the app.

    `restart=False` leaves a running instance on the old secrets until its next start."""
    data = parse_secrets(text)
    token = encrypt(ctx, text)
    with session_scope(ctx.engine) as s:
        app = load_app_for(s, user, app_id, "developer", "change this app's secrets")
        row = s.get(AppSecret, app_id) or AppSecret(app_id=app_id)
        try:  # the replaced values stay masked too, also those saved before the history
            replaced = history.values_of(decrypt(ctx, row.ciphertext))
        except BackendError:
            replaced = []
        history.remember(s, ctx, app_id, history.leaf_values(data) + replaced)
        row.ciphertext = token
        row.updated_at = utcnow()
        s.add(row)
        s.add(AppEvent(app_id=app_id, from_state=app.state, to_state=app.state,
                       reason=f"Secrets updated by {user.username} ({len(data)} "
                              f"key{'' if len(data) == 1 else 's'})"))
        write_runtime_file(ctx.settings, app_id, text)  # inside: the row commits after it
    state = app_service.get_app(ctx, user, app_id).state  # read after the file is written
    restarted = restart and state in RESTART_STATES
    if restarted:
        app_service.reboot_app(ctx, user, app_id)
    return SecretsSaved(keys=len(data), env_vars=tuple(sorted(env_vars_of(data))),
                        restarted=restarted)


def set_secrets_for(ctx: Context, app_id: int, text: str, reason: str) -> None:
    """The platform's own write of an app's secrets (a preview's, from its parent's): as
    `set_secrets` (history for masking, runtime file, an event), without a person's
    permission check and without a restart."""
    data = parse_secrets(text)
    with session_scope(ctx.engine) as s:
        row = s.get(AppSecret, app_id) or AppSecret(app_id=app_id)
        history.remember(s, ctx, app_id, history.leaf_values(data))
        row.ciphertext = encrypt(ctx, text)
        row.updated_at = utcnow()
        s.add(row)
        app = s.get(App, app_id)
        state = app.state if app is not None else ""
        s.add(AppEvent(app_id=app_id, from_state=state, to_state=state, reason=reason))
        write_runtime_file(ctx.settings, app_id, text)


def secrets_text_of(ctx: Context, app_id: int) -> str:
    """The app's secrets as saved ("" without), for the platform's own use."""
    with session_scope(ctx.engine) as s:
        row = s.get(AppSecret, app_id)
        return decrypt(ctx, row.ciphertext) if row is not None else ""


def validate_for_deploy(text: str) -> None:
    """The deploy form's check before anything is queued."""
    parse_secrets(text)
