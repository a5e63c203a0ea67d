"""The package cache a sandboxed build step of the process runtime may write.

Every sandboxed build of a scope reads one cache (`<uv cache>/sandboxed`), owned by the
build user. A step that may run package code (an sdist's setup.py, a build backend, a local
package of the repository) must not write to it: it would plant files in wheels that other
apps' builds copy into their environments. So (`process_build`):

- the wheels-only step (one `uv pip install --no-build` into the empty environment: no
  package code runs) binds the shared cache writable and fills it;
- every other step binds `cache_view` writable as its uv cache: with root, an overlayfs
  mount whose lower layer is the shared cache (warm) and whose upper layer is this build's
  scratch directory, unmounted and removed when the build ends; without root (no mount),
  an empty cache of the build's own, so such builds download again what they need. The
  shared cache itself is bound read-only beside it: overlayfs may not show a file made in
  its lower layer after the mount looked for it, and a find-links folder in the cache
  (what a sandboxed build can read) must read as it is now.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from supervisor.runtimes import sandbox

log = logging.getLogger("supervisor.runtimes.process")
# Bytecode for a venv's site-packages (argv[1]), compiled by one `compileall` process per
# CPU: the wheels-only step may not let uv compile it (that starts the venv's Python with
# the shared cache writable), and `compileall -j` needs semaphores the sandbox lacks.
COMPILE_SCRIPT = """import os, subprocess, sys
site = sys.argv[1]
names = sorted(os.path.join(site, n) for n in os.listdir(site))
parts = [names[i::os.cpu_count() or 1] for i in range(os.cpu_count() or 1)]
procs = [subprocess.Popen([sys.executable, "-m", "compileall", "-q", *p]) for p in parts if p]
sys.exit(max([p.wait() for p in procs] or [0]))
"""
VIEW_PREFIX = ".view-"  # scratch directories beside the shared cache


def planned_package(name: str, line: str) -> bool:
    """Does a line of `uv pip install --dry-run` (" + streamlit==1.2") name `name`?"""
    return re.match(rf"^\s*\+ {re.escape(name)}(==| @)", line, re.IGNORECASE) is not None


def _mount(lower: Path, scratch: Path) -> Path | None:
    """Mount the copy-on-write view of `lower` under `scratch`; its path, or None when
    the kernel refused (logged)."""
    upper, work, merged = scratch / "upper", scratch / "work", scratch / "merged"
    for path in (upper, work, merged):
        path.mkdir()
    sandbox.chown_tree(upper, sandbox.BUILDER_UID)
    os.chmod(upper, 0o700)
    opts = f"lowerdir={lower},upperdir={upper},workdir={work}"
    done = subprocess.run(["mount", "-t", "overlay", "overlay", "-o", opts, str(merged)],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        log.warning("package cache view: mount failed: %s", done.stderr.strip()[-300:])
        return None
    return merged


def _unmount(merged: Path) -> None:
    subprocess.run(["umount", "-l", str(merged)], capture_output=True, check=False)


@asynccontextmanager
async def cache_view(shared: Path) -> AsyncIterator[Path]:
    """A cache directory for steps that may run package code (module docstring)."""
    await asyncio.to_thread(shared.mkdir, parents=True, exist_ok=True)
    scratch = Path(await asyncio.to_thread(
        tempfile.mkdtemp, prefix=VIEW_PREFIX, dir=shared.parent))
    merged: Path | None = None
    try:
        if sandbox.running_as_root() and "," not in str(shared) + str(scratch) \
                and ":" not in str(shared) + str(scratch):
            merged = await asyncio.to_thread(_mount, shared, scratch)
        if merged is not None:
            yield merged
        else:
            own = scratch / "own"
            await asyncio.to_thread(sandbox.owned_dir, own, sandbox.BUILDER_UID)
            yield own
    finally:
        if merged is not None:
            await asyncio.to_thread(_unmount, merged)
        await asyncio.to_thread(shutil.rmtree, scratch, True)
