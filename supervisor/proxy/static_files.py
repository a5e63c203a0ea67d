"""Streamlit's own static files, served by the proxy from the app's environment.

The index page shell, the JS/CSS bundles and the package's media are files of the
environment the app runs in (`<env>/lib/python*/site-packages/streamlit/static`), the
same for every app on it. The proxy answers them itself, read and compressed once and
kept in memory, instead of waiting on each app's server; the app is left its websocket
and its dynamic endpoints (`/_stcore/*`, `/media/*`, `/component/*`, `/app/static/*`,
page names of a multipage app, which Streamlit answers with the index itself).

Only apps on the process runtime have an environment on this host (`Route.static_env`,
the environment's hash under `settings.envs_path`); every other request, and every path
that is not a file here, is forwarded as before. `StaticFiles.response` is called by
`AppHost` where it would forward to the app, so a private app's files are refused
exactly as its other paths are.

The environment was built by package code we do not trust (a repository's requirements
may install a `streamlit` of its own or plant symlinks), so a file is served only when:
its path has no empty, dot-leading or backslash segment; its extension is in `TYPES`
(which also gives its content type); its real path (symlinks resolved) is inside the real
static directory, which is itself inside the real environment directory; it is opened
without following a final symlink and is a regular file of at most `MAX_FILE` bytes.
Anything else falls back to the app, which serves its own environment's files as it
always did. The cache holds at most `MAX_CACHE` bytes (oldest entries dropped first) and
an entry is reused only while the file's (mtime, size, inode) are unchanged.

Headers: hashed bundle names (`name.HASH.ext`) get `public, max-age=31536000,
immutable`; the index page and other names `no-cache` with an `ETag` (a matching
`If-None-Match` is answered 304). Bodies are gzip-compressed once (brotli too when the
`brotli` module is installed) and sent compressed to clients that accept it.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import re
import stat
import time
import zlib
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from supervisor.proxy import inject

log = logging.getLogger("supervisor.proxy")

MAX_FILE = 8 * 1024 * 1024
MAX_CACHE = 160 * 1024 * 1024
ROOT_RECHECK = 10.0  # seconds a missing static directory is remembered as missing
INDEX = "index.html"
IMMUTABLE = "public, max-age=31536000, immutable"
# Extension -> content type; the only files served.
TYPES = {
    ".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
    ".json": "application/json", ".map": "application/json", ".svg": "image/svg+xml",
    ".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".gif": "image/gif",
    ".ico": "image/x-icon", ".webp": "image/webp", ".woff": "font/woff",
    ".woff2": "font/woff2", ".ttf": "font/ttf", ".otf": "font/otf", ".wasm": "application/wasm",
    ".txt": "text/plain; charset=utf-8",
}
COMPRESSIBLE = frozenset({".html", ".js", ".mjs", ".css", ".json", ".map", ".svg", ".ttf",
                          ".otf", ".wasm", ".txt", ".ico"})
# First path segments Streamlit answers dynamically: never ours.
DYNAMIC = frozenset({"_stcore", "media", "component", "app"})
_HASHED = re.compile(r"\.[A-Za-z0-9_-]{8,}\.[a-z0-9]+$")

try:  # optional, as in inject.py
    import brotli
except ImportError:  # pragma: no cover - depends on the environment
    brotli = None


def static_name(path: str) -> str | None:
    """The file under the static directory that `path` names, or None when it is not one
    we may serve: `/` is the index; else `/static/...` or a single top-level name, each
    segment plain (no empty, `.`-leading, backslash or NUL segment), a known extension."""
    if path == "/":
        return INDEX
    parts = path[1:].split("/") if path.startswith("/") else []
    if not parts or parts[0] in DYNAMIC or (len(parts) > 1 and parts[0] != "static"):
        return None
    for part in parts:
        if not part or part.startswith(".") or "\\" in part or "\0" in part:
            return None
    if os.path.splitext(parts[-1])[1].lower() not in TYPES:
        return None
    return "/".join(parts)


@dataclass(frozen=True)
class Entry:
    real: str
    key: tuple[int, int, int]  # (mtime_ns, size, inode) when read
    kind: str
    cache_control: str
    etag: str
    body: bytes
    gzip: bytes | None
    br: bytes | None

    @property
    def weight(self) -> int:
        return len(self.body) + len(self.gzip or b"") + len(self.br or b"")


def _within(real: str, root: str) -> bool:
    return real.startswith(root + os.sep)


def _file_key(st: os.stat_result) -> tuple[int, int, int]:
    return (st.st_mtime_ns, st.st_size, st.st_ino)


def find_root(env: Path) -> str | None:
    """The real path of the environment's Streamlit static directory, None when there is
    none or it leads out of the environment (a symlinked `streamlit` or `static`)."""
    try:
        env_real = os.path.realpath(env)
        found = sorted(env.glob("lib/python*/site-packages/streamlit/static"))
    except OSError:
        return None
    for candidate in found:
        real = os.path.realpath(candidate)
        if _within(real, env_real) and os.path.isdir(real):
            return real
    return None


def read_entry(root: str, name: str, tags: bytes | None) -> Entry | None:
    """Read and compress `name` under `root` (blocking), None when it may not be served."""
    real = os.path.realpath(os.path.join(root, name))
    if not _within(real, root):
        return None
    try:
        fd = os.open(real, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size > MAX_FILE:
            return None
        with os.fdopen(os.dup(fd), "rb") as f:
            body = f.read(MAX_FILE + 1)
    finally:
        os.close(fd)
    if len(body) > MAX_FILE:
        return None
    ext = os.path.splitext(name)[1].lower()
    if name == INDEX and tags:
        body = inject.insert_tags(body, tags) or body
    gz = br = None
    if ext in COMPRESSIBLE and len(body) > 1024:
        compressor = zlib.compressobj(6, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
        gz = compressor.compress(body) + compressor.flush()
        if brotli is not None:
            br = brotli.compress(body, quality=5)
    hashed = name.startswith("static/") and _HASHED.search(name) is not None
    etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
    return Entry(real=real, key=_file_key(st), kind=TYPES[ext],
                 cache_control=IMMUTABLE if hashed else "no-cache", etag=etag,
                 body=body, gzip=gz, br=br)


def _accepts(request: web.BaseRequest, coding: str) -> bool:
    for item in request.headers.get("Accept-Encoding", "").split(","):
        token, _, params = item.strip().partition(";")
        if token.strip().lower() == coding:
            return params.replace(" ", "") not in ("q=0", "q=0.0", "q=0.00", "q=0.000")
    return False


def _fresh(entry: Entry) -> bool:
    try:
        st = os.lstat(entry.real)
    except OSError:
        return False
    return stat.S_ISREG(st.st_mode) and _file_key(st) == entry.key


class StaticFiles:
    """The cache of environments' static files (see the module docstring)."""

    def __init__(self, envs_path: Path, max_cache: int = MAX_CACHE) -> None:
        self.envs_path = envs_path
        self.max_cache = max_cache
        self._roots: dict[str, tuple[str | None, float]] = {}
        self._cache: OrderedDict[tuple[str, str, bytes], Entry] = OrderedDict()
        self._size = 0
        self._loading: dict[tuple[str, str, bytes], asyncio.Future[Entry | None]] = {}

    def _root(self, env_hash: str) -> str | None:
        known = self._roots.get(env_hash)
        now = time.monotonic()
        if known is not None and (known[0] is not None or now - known[1] < ROOT_RECHECK):
            return known[0]
        if not env_hash or "/" in env_hash or env_hash.startswith("."):
            root = None
        else:
            root = find_root(self.envs_path / env_hash)
        self._roots[env_hash] = (root, now)
        return root

    async def response(self, request: web.BaseRequest, env_hash: str,
                       tags: bytes | None, set_cookies: tuple[str, ...] = ()
                       ) -> web.Response | None:
        """Our answer to `request` from the static files of environment `env_hash`, or
        None to forward it to the app. `tags` go into the index page (the overlay);
        `set_cookies` are `Set-Cookie` values to add."""
        if request.method not in ("GET", "HEAD") or not env_hash:
            return None
        name = static_name(request.path)
        if name is None:
            return None
        root = self._root(env_hash)
        if root is None:
            return None
        entry = await self._entry(root, name, tags if name == INDEX else None)
        if entry is None:
            return None
        return self._answer(request, entry, set_cookies)

    async def _entry(self, root: str, name: str, tags: bytes | None) -> Entry | None:
        key = (root, name, tags or b"")
        entry = self._cache.get(key)
        if entry is not None and _fresh(entry):
            self._cache.move_to_end(key)
            return entry
        pending = self._loading.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[Entry | None] = asyncio.get_running_loop().create_future()
        self._loading[key] = future
        try:
            entry = await asyncio.to_thread(read_entry, root, name, tags)
        except OSError as exc:
            log.info("static_read_failed root=%s name=%s error=%s", root, name, exc)
            entry = None
        finally:
            del self._loading[key]
        future.set_result(entry)
        self._store(key, entry)
        return entry

    def _store(self, key: tuple[str, str, bytes], entry: Entry | None) -> None:
        old = self._cache.pop(key, None)
        if old is not None:
            self._size -= old.weight
        if entry is None or entry.weight > self.max_cache:
            return
        self._cache[key] = entry
        self._size += entry.weight
        while self._size > self.max_cache:
            _, dropped = self._cache.popitem(last=False)
            self._size -= dropped.weight

    def _answer(self, request: web.BaseRequest, entry: Entry,
                set_cookies: tuple[str, ...]) -> web.Response:
        headers = {"Cache-Control": entry.cache_control, "ETag": entry.etag,
                   "X-Content-Type-Options": "nosniff"}
        if entry.gzip is not None:
            headers["Vary"] = "Accept-Encoding"
        if entry.etag in (t.strip().removeprefix("W/") for t in
                          request.headers.get("If-None-Match", "").split(",")):
            response = web.Response(status=304, headers=headers)
        else:
            body = entry.body
            if entry.br is not None and _accepts(request, "br"):
                body, headers["Content-Encoding"] = entry.br, "br"
            elif entry.gzip is not None and _accepts(request, "gzip"):
                body, headers["Content-Encoding"] = entry.gzip, "gzip"
            headers["Content-Type"] = entry.kind
            response = web.Response(body=body, headers=headers)
        for cookie in set_cookies:
            response.headers.add("Set-Cookie", cookie)
        return response
