"""A warm slot's program: an interpreter of one environment that has already imported
Streamlit and the environment's heavy libraries, waiting to become one app's instance.

The process runtime's warm pool (`warm_pool.py`) starts it in a sandbox exactly like an app
instance's (empty /app tmpfs as its working directory), as a uid of its own:

    python zygote.py

It imports Streamlit's CLI, server, script runner and elements, pandas, numpy, pyarrow
and altair, and what Streamlit's server start and first session import lazily (`LAZY`),
those installed (each import guarded), writes "ready" on the file descriptor
named by STCLOUD_READY_FD, then blocks reading ONE JSON line on stdin (a pipe only the
supervisor holds; end of file means the supervisor is gone, and the slot exits). The line:

    {"main_file": ..., "argv": [streamlit script, "run", ...], "env": {...},
     "secrets": text or null, "secrets_files": true when Streamlit reads --secrets.files}

Then stdin is closed for good (a second line is never read: a slot serves one app), the
app's variables are set, its runtime secrets are written to a 0600 file at the path a cold
start has them (/run/secrets/secrets.toml, a small tmpfs of the slot's own), and
`workdir.main` runs as it does for a cold start (copy the checkout into /app, link .git,
the mirror thread, the venv's `streamlit` in this interpreter).
Standard library only, Python 3.8+.
"""

from __future__ import annotations

import importlib
import json
import os
import sys

SECRETS_DIR = "/run/secrets"  # a tmpfs of the slot, as the cold start's file
HEAVY = ("pandas", "numpy", "pyarrow", "altair")
# What Streamlit's server start and first session import lazily (those a release has):
# its ASGI server and websocket stack, the file watcher, Arrow's pandas bridge, narwhals.
LAZY = ("streamlit.web.server.starlette", "streamlit.web.server.server",
        "streamlit.watcher.polling_path_watcher", "streamlit.runtime.scriptrunner.magic_funcs",
        "uvicorn.main", "uvicorn.server", "uvicorn.config", "uvicorn.lifespan.on",
        "uvicorn.protocols.http.h11_impl", "uvicorn.protocols.websockets.websockets_impl",
        "starlette.websockets", "websockets", "anyio._backends._asyncio", "h11", "tornado.web",
        "requests", "narwhals", "pyarrow.pandas_compat", "multiprocessing.connection",
        "logging.config", "logging.handlers", "configparser", "http.cookiejar")


def preload() -> list[str]:
    """Import what every app of this environment will import; returns what was loaded."""
    loaded = []
    for name in ("streamlit", "streamlit.web.cli", "streamlit.web.bootstrap",
                 "streamlit.web.server", "streamlit.runtime.scriptrunner",
                 "streamlit.elements", *HEAVY, *LAZY):
        try:
            __import__(name)
            loaded.append(name)
        except Exception:  # an environment without it: the app imports what it has
            pass
    return loaded


def signal_ready() -> None:
    fd = int(os.environ.pop("STCLOUD_READY_FD", "-1"))
    if fd < 0:
        return
    try:
        os.write(fd, b"ready\n")
    finally:
        os.close(fd)


def read_go() -> dict:  # type: ignore[type-arg]
    """The one go line; stdin is then /dev/null, so nothing else is ever read."""
    line = sys.stdin.buffer.readline()
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    if not line.strip():
        sys.exit(0)  # the supervisor is gone: a slot dies with it
    go = json.loads(line)
    if not isinstance(go, dict):
        sys.exit("stcloud: the warm slot's go line is not an object")
    return go


def write_secrets(text: str) -> str:
    path = os.path.join(SECRETS_DIR, "secrets.toml")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    return path


def main() -> None:
    preload()
    signal_ready()
    go = read_go()
    workdir = importlib.import_module("workdir")  # bound beside this script (sys.path[0])
    argv = [str(a) for a in go["argv"]]
    os.environ.update({str(k): str(v) for k, v in dict(go.get("env") or {}).items()})
    if go.get("secrets") is not None:
        path = write_secrets(str(go["secrets"]))
        if go.get("secrets_files", True):
            argv += ["--secrets.files", path]
        else:
            os.environ[workdir.SECRETS_COPY_ENV] = path
    workdir.main([workdir.CHECKOUT_IN_INSTANCE, str(go["main_file"]), "--", *argv])


if __name__ == "__main__":
    main()
