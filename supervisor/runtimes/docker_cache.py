"""A copy-on-write view of the shared package cache for a build that runs package code.

The view is a Docker volume of the `local` driver mounting overlayfs: the shared cache is
the lower layer (read-only), a fresh directory of this build the upper one. The build reads
every cached wheel and archive, and what it writes (its own downloads, built wheels, and
anything a hostile build backend plants) lands in the upper directory, removed with the
volume when the build ends. The daemon mounts it, so the cache path is a path of the
daemon's host, as every bind mount of the builder already is.

Another build's wheels-only phase may add entries to the shared cache while a view is
mounted: overlayfs then shows a new entry or not, and uv writes entries by renaming them
into place, so a reader sees a whole entry or none.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import docker.errors
from docker.types import Mount

COW_LABEL = "stcloud.cache_view"
SCRATCH = "stcloud-cache-view-"  # prefix of the views' upper and work directories


class DockerCalls(Protocol):
    def client(self) -> Any: ...

    async def call(self, fn: Any, *args: Any, **kwargs: Any) -> Any: ...


def _options_safe(path: Path) -> bool:
    """Overlay mount options are comma- and colon-separated: a path with either cannot be
    named in them."""
    return not any(c in str(path) for c in ",:")


@asynccontextmanager
async def cache_view(api: DockerCalls, cache: Path, target: str, install_id: str,
                     log: Any) -> AsyncIterator[Mount]:
    """A mount of a copy-on-write view of `cache` at `target` (module docstring), removed
    on exit. Where the view cannot be made, an empty private cache (cold, still not shared)."""
    scratch = Path(await asyncio.to_thread(
        tempfile.mkdtemp, prefix=SCRATCH, dir=cache.parent))
    upper, work = scratch / "upper", scratch / "work"
    name = f"stcloud-{install_id}-cache-{uuid.uuid4().hex[:10]}"
    volume = None
    try:
        await asyncio.to_thread(upper.mkdir)
        await asyncio.to_thread(work.mkdir)
        if _options_safe(cache) and _options_safe(scratch):
            volume = await api.call(
                api.client().volumes.create, name=name, driver="local",
                driver_opts={"type": "overlay", "device": "overlay",
                             "o": f"lowerdir={cache},upperdir={upper},workdir={work}"},
                labels={"stcloud.build": install_id, COW_LABEL: "1"})
            yield Mount(target, name, type="volume")
        else:
            log("==> The package cache's path cannot be mounted copy-on-write; this build "
                "uses an empty cache of its own")
            yield Mount(target, str(upper), type="bind")
    finally:
        if volume is not None:
            await asyncio.shield(remove_volume(api, name))
        await asyncio.to_thread(shutil.rmtree, scratch, True)


async def remove_volume(api: DockerCalls, name: str) -> None:
    try:
        volume = await api.call(api.client().volumes.get, name)
        await api.call(volume.remove, force=True)
    except docker.errors.NotFound:
        pass


async def remove_stale_views(api: DockerCalls, install_id: str, older_than: float,
                             cache: Path) -> None:
    """Views older than `older_than` seconds that a supervisor which died mid-build left,
    and their scratch directories beside `cache`. A younger one may be a view another
    build just made, before its container."""
    found = await api.call(api.client().volumes.list, filters={
        "label": [f"stcloud.build={install_id}", COW_LABEL]})
    now = datetime.now(UTC)
    for volume in found or []:
        try:
            created = datetime.fromisoformat(str(volume.attrs.get("CreatedAt", "")))
        except ValueError:
            continue
        if (now - created).total_seconds() < older_than:
            continue
        try:
            await api.call(volume.remove, force=True)
        except docker.errors.APIError:
            pass  # still mounted by a build of another process of this installation
    cutoff = time.time() - older_than
    for scratch in await asyncio.to_thread(lambda: list(cache.parent.glob(SCRATCH + "*"))):
        try:
            stale = scratch.stat().st_mtime < cutoff
        except OSError:
            continue
        if stale:
            await asyncio.to_thread(shutil.rmtree, scratch, True)
