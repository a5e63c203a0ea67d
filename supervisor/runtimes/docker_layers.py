"""The Streamlit layer: one image per base image and default Streamlit version, made once,
from which env builds start (`docker_scripts.wheels_script`, layered).

Every environment holds Streamlit and its dependencies (pyarrow, pandas, numpy: most of a
typical environment's bytes). Copying them out of the package cache into each build
container and committing them again in each env image is most of a build's time; an env
image built on the layer holds only what differs from it. The layer is built from no
repository's input (the default Streamlit from the index, `uv pip install --no-build`,
cache writable: no package code runs; its bytecode compiled), with app_auth_packages
(every environment gets them), tagged `stcloud-layer:<base id>-st<version>-<digest of
those packages>-pyc` so a new base image, default Streamlit or package setting makes a new
one, and labelled complete like env images. A layer that cannot be built leaves builds on
the plain wheels-only phase.
"""

from __future__ import annotations

import asyncio
import hashlib
import tempfile
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import docker.errors
from docker.types import Mount

from supervisor.runtimes.base import LogSink
from supervisor.runtimes.docker_scripts import AUTH_PACKAGES_VAR, SRC, layer_script

LAYER_REPO = "stcloud-layer"
LAYER_LABEL = "stcloud.layer_complete"

Run = Callable[[Any, LogSink], Awaitable[tuple[int, Any]]]


def _write_source(src: Path, script: str) -> None:
    src.chmod(0o755)
    (src / "layer.sh").write_text(script)


def layer_tag(base_id: str, default_streamlit: str, extra: str) -> str:
    """The layer's tag: its base image, Streamlit version and other packages (`extra`)."""
    short = base_id.removeprefix("sha256:")[:12]
    digest = hashlib.sha256(extra.encode()).hexdigest()[:8]
    return f"{LAYER_REPO}:{short}-st{default_streamlit}-{digest}-pyc"


class Layers:
    """Streamlit layers of one `ImageBuilder`: its Docker calls (`api`: client, call,
    remove), its locks and its way of running a build container (`run`)."""

    def __init__(self, api: Any, install_id: str, lock: Callable[[str], asyncio.Lock],
                 run: Run) -> None:
        self.api, self.install_id, self.lock, self.run = api, install_id, lock, run
        self._failed: set[str] = set()  # tags whose build failed in this process

    async def image(self, base: str, default_streamlit: str, env: dict[str, str],
                    mounts: list[Mount], log: LogSink) -> str | None:
        """The layer of `base` for `default_streamlit`, built on first use; None when it
        cannot be had (then the caller builds without it)."""
        api = self.api
        try:
            base_id = (await api.call(api.client().images.get, base)).id
        except docker.errors.ImageNotFound:
            return None
        tag = layer_tag(base_id, default_streamlit, env.get(AUTH_PACKAGES_VAR, ""))
        if tag in self._failed:
            return None
        async with self.lock("layer:" + tag):
            if await self._complete(tag):
                return tag
            log(f"==> Preparing the Streamlit {default_streamlit} layer of {base} (once per "
                "Python version and Streamlit release)")
            if await self._build(base, tag, default_streamlit, env, mounts, log):
                return tag
            self._failed.add(tag)
            log("==> The Streamlit layer could not be built; building without it")
            return None

    async def _complete(self, tag: str) -> bool:
        api = self.api
        try:
            found = await api.call(api.client().images.get, tag)
        except docker.errors.ImageNotFound:
            return False
        labels = (found.attrs.get("Config") or {}).get("Labels") or {}
        return labels.get(LAYER_LABEL) == tag

    async def _build(self, base: str, tag: str, default_streamlit: str,
                     env: dict[str, str], mounts: list[Mount], log: LogSink) -> bool:
        api = self.api
        with tempfile.TemporaryDirectory(prefix="stcloud-layer-") as tmp:
            src = Path(tmp)
            await asyncio.to_thread(_write_source, src, layer_script(default_streamlit, env))
            container = await api.call(
                api.client().containers.create, base, ["sh", f"{SRC}/layer.sh"],
                name=f"stcloud-{self.install_id}-layer-{uuid.uuid4().hex[:10]}",
                mounts=[*mounts, Mount(SRC, str(src), type="bind", read_only=True)],
                labels={"stcloud.build": self.install_id}, working_dir="/tmp")
            try:
                code, _ = await self.run(container, lambda line: None)
                if code != 0:
                    return False
                repo, _, version = tag.partition(":")
                await api.call(container.commit, repo, version,
                              message=f"stcloud Streamlit layer {tag}",
                              changes=[f"LABEL stcloud.component=layer {LAYER_LABEL}={tag}"])
                return True
            finally:
                await asyncio.shield(api.remove(container))
