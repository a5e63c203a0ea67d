"""What a deployer sees carries no host detail: no data directory, no environment directory,
no host interpreter path, no internal instance address.

`sanitize(settings, text)` replaces host paths with neutral names: an environment
(`<envs>/<hash>…`) becomes `<env>`, an app's checkout becomes `/app` (what the sandboxed app
itself sees), uv's temporary build environments `<build-env>` and its cache `<uv-cache>`, a host
interpreter prefix
(pyenv's, or ours) `<python>`, and anything else under the data directory `<data>`.
`show_app_log(text, public_url)` also replaces the internal URLs Streamlit prints at start
("You can now view your Streamlit app in your browser", `URL: http://127.0.0.1:NNNNN`)
with the app's public URL. Both only rewrite text being shown; the log files stay as written.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

from backend.platform.settings import Settings

PYENV = re.compile(r"(?:/[^\s'\"`:]*)?/\.pyenv/versions/[^/\s'\"`]+")
UV_BUILD_ENV = re.compile(r"(?:/[^\s'\"`:]*)?/builds-v\d+/\.tmp[\w-]+")
INTERNAL_URL = re.compile(r"https?://(?:127\.\d+\.\d+\.\d+|0\.0\.0\.0|localhost|10\.0\.2\.\d+|"
                          r"\[::1?\]|unix:[^\s]*)(?::\d+)?(?:/[^\s]*)?")
STARTED_ON = re.compile(r"(started on) (?:127\.\d+\.\d+\.\d+|0\.0\.0\.0|localhost|"
                        r"10\.0\.2\.\d+|\[::1?\]|unix:\S*)(?::\d+)?")
WORKING_DIRS = ("/tmp", os.getcwd(), os.path.expanduser("~"), "/")
URL_LINE = re.compile(r"^(\s*)(?:Local |Network |External )?URL: \S+\s*$")


def _spelled(path: Path) -> str:
    """A regex for `path` as tools print it: absolute (as given or resolved), or relative to
    a working directory a tool may have had (uv prints a path under its working directory
    relative to it): /tmp, ours, HOME, or /."""
    forms: set[str] = set()
    for absolute in {str(path), str(path.resolve())}:
        forms.add(re.escape(absolute))
        for cwd in WORKING_DIRS:
            if absolute.startswith(cwd.rstrip("/") + "/"):
                relative = absolute[len(cwd.rstrip("/")) + 1:]
                if "/" in relative:  # at least two components: a bare "envs" stays
                    forms.add(r"(?<![\w/.-])" + re.escape(relative))
    return "(?:" + "|".join(sorted(forms, key=len, reverse=True)) + ")"


def _prefixes(settings: Settings) -> list[tuple[str, str]]:
    """(host path pattern, neutral name), most specific first."""
    end = r"(?=[/\s'\"`]|$)"
    envs, apps = _spelled(Path(settings.envs_path)), _spelled(Path(settings.apps_path))
    pairs = [(envs + r"/[^/\s'\"`]+/\.stcloud-src/", ""),
             (envs + r"/[^/\s'\"`]+", "<env>"),
             (apps + r"/\d+/[^/\s'\"`]+", "/app"),
             (_spelled(Path(settings.uv_cache_path)) + end, "<uv-cache>")]
    for prefix in {sys.base_prefix, sys.prefix}:
        if prefix not in ("/usr", "/"):
            pairs.append((re.escape(prefix) + end, "<python>"))
    pairs.append((_spelled(Path(settings.data_dir)) + end, "<data>"))
    return pairs


def sanitize(settings: Settings, text: str) -> str:
    """`text` with host paths replaced by neutral names (see the module docstring)."""
    for pattern, neutral in _prefixes(settings):
        text = re.sub(pattern, neutral, text)
    text = UV_BUILD_ENV.sub("<build-env>", text)
    return PYENV.sub("<python>", text)


def show_app_log(settings: Settings, text: str, public_url: str) -> str:
    """An app log as a deployer sees it: sanitized, Streamlit's internal URLs replaced by
    `public_url` (one `URL:` line where Streamlit printed several)."""
    out: list[str] = []
    for line in sanitize(settings, text).split("\n"):
        url_line = URL_LINE.match(line)
        if url_line:
            indent = url_line.group(1)
            shown = f"{indent}URL: {public_url}"
            if out and out[-1] == shown:
                continue
            out.append(shown)
            continue
        line = STARTED_ON.sub(r"\1 the app's address", line)
        out.append(INTERNAL_URL.sub(public_url, line))
    return "\n".join(out)
