"""Masking an app's secret values in log text. `mask()` is the one function every log text
we show goes through: the dashboard's Logs page and its download, the Manage app panel's
Cloud logs and its download, the REST API (a tail, and a followed stream) and so the CLI,
the app host's crashed and build-failed pages and its `/status` progress line
(`backend.apps.logs.shown`, `backend.apps.failure_reports.readable`), and every reason
the supervisor records or mails, which may quote a log (state reasons, events, the last
deploy error, email details: `supervisor.control.app_records`).

Masked are the values the app's secrets have ever had, current, replaced and removed ones
(`backend.apps.secrets.every_value`), and the client secret and cookie secret of its
st.login() `[auth]` section (`backend.accounts.oidc_clients.secret_values`), by these
rules (`targets`):
- every string, integer and float in the TOML document, at any depth (tables, arrays,
  inline tables); key names are not masked, nor booleans and dates;
- a value is masked once it is `MIN_LENGTH` (6) characters or longer, surrounding
  whitespace stripped: shorter ones ("1", "true", "admin", a port) would cut ordinary
  words out of every line, and a secret that short is guessed anyway;
- each line of a multi-line value (a PEM key, a JSON credential) that is `MIN_LENGTH` or
  longer on its own, so a value printed line by line, or cut by a followed stream, is
  masked too;
- the value as `repr()` and JSON write it (quotes and backslashes escaped, newlines as
  `\\n`, non-ASCII as `\\uXXXX`), as `print(st.secrets)` or a logged dict shows it.
Every occurrence of every target is replaced by `MASK`; occurrences that overlap are
masked as one, so no piece of a value is left beside the mask.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from backend.accounts import oidc_clients
from backend.apps import secrets
from backend.context import Context

MIN_LENGTH = 6
MASK = "****"


def forms(value: str) -> set[str]:
    """The ways a log may show `value`: as is, and as repr() and JSON escape it."""
    return {value, repr(value)[1:-1], json.dumps(value)[1:-1],
            json.dumps(value, ensure_ascii=False)[1:-1]}


def targets(values: Iterable[str]) -> list[str]:
    """The texts to mask for these secret values (module docstring), longest first."""
    found: set[str] = set()
    for value in values:
        for form in forms(value):
            found.add(form.strip())
            found.update(line.strip() for line in form.splitlines())
    return sorted((t for t in found if len(t) >= MIN_LENGTH), key=lambda t: (-len(t), t))


def mask_text(text: str, masked: Iterable[str]) -> str:
    """`text` with every occurrence of every target replaced by `MASK`; overlapping or
    adjacent occurrences become one mask."""
    spans: list[tuple[int, int]] = []
    for target in masked:
        start = text.find(target)
        while start >= 0:
            spans.append((start, start + len(target)))
            start = text.find(target, start + 1)
    if not spans:
        return text
    spans.sort()
    out, cursor, end = [], 0, -1
    for start, stop in spans:
        if start > end:  # a new span: close the one before
            if end >= 0:
                out.append(MASK)
            out.append(text[cursor:start])
            end = stop
        else:
            end = max(end, stop)
        cursor = end
    out.append(MASK)
    out.append(text[cursor:])
    return "".join(out)


def mask(ctx: Context, app_id: int, text: str) -> str:
    """Log text of app `app_id` with every value its secrets ever had masked."""
    if not text:
        return text
    values = secrets.every_value(ctx, app_id) + oidc_clients.secret_values(ctx, app_id)
    return mask_text(text, targets(values))
