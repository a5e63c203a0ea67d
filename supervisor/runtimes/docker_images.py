"""Images for the Docker runtime: base images per Python version, env images per dependency hash.

Base images (one per Python version, built on this host on first use) are
`supervisor.runtimes.docker_base`'s.

An environment is one image `stcloud-env:<dep_hash>`, made once and shared by every app with
that dependency set. The build runs a throw-away container from the base image that
installs packages.txt with apt, makes `/opt/venv` with the host's uv (mounted read-only)
and commits it. The host's uv cache keeps builds warm; it is writable only for a phase in
which no package code runs, and a build that runs package code sees a copy-on-write view of
it (`docker_scripts`, `docker_cache`). The build container
gets only the dependency files' bytes as `EnvSpec.from_checkout` read them (through
`backend.repositories.files`), copied into a fresh directory, never the checkout itself; it gets
the CA bundle and the index URL the host uses; the committed image gets none of the
build's environment. Only a successful build is committed: a failure leaves no image.
Cancelling the coroutine removes the build container, which kills the build.

An image under an env tag is reused only when it carries the label a completed build commits
(`stcloud.env_complete=<dep_hash>`) and a container of it, set up as app containers are, runs
`sh` from its PATH and the environment's Python (once per image id and builder). Anything
else found under the tag (an image tagged by hand or by another tool, one made before the
label, one whose filesystem lost its shell) is untagged and built again: the daemon is shared
with other supervisors and test runs, and a start from such an image fails only later with
tini's "exec sh failed".
"""

from __future__ import annotations

import asyncio
import re
import tempfile
import uuid
from pathlib import Path
from typing import Any, Protocol

import docker.errors
import requests
from docker.types import Mount

from backend.platform.settings import Settings
from backend.repositories.files import excerpt
from supervisor.builds.errors import StepOutput, step_failure_message
from supervisor.builds.plan import InstallPlan, write_build_files
from supervisor.runtimes.base import BuildError, EnvRef, EnvSpec, LogSink, uv_binary
from supervisor.runtimes.docker_base import BaseImages, python_minor
from supervisor.runtimes.docker_cache import cache_view, remove_stale_views
from supervisor.runtimes.docker_layers import Layers
from supervisor.runtimes.docker_scripts import (
    AUTH_PACKAGES_VAR,
    CA_PATH,
    NEEDS_SOURCE_BUILD,
    SRC,
    STEPS,
    VENV,
    WORK,
    build_script,
    layered_ok,
    wheels_script,
)

ENV_REPO = "stcloud-env"
UV_PATH = "/stcloud/bin/uv"
UV_CACHE = "/stcloud/uv-cache"
# Dockerfile instructions applied by `docker commit` (the build container's own config
# would otherwise be the image's: its command, labels).
IMAGE_CHANGES = ["ENV PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:"
                 "/sbin:/bin", "ENV VIRTUAL_ENV=/opt/venv", "ENV LANG=C.UTF-8",
                 "WORKDIR /app", 'CMD ["/bin/sh"]']
# Set only on an image committed from a build that completed (its value: the dep hash); an
# image under an env tag without it, or whose probe fails, is rebuilt instead of reused.
COMPLETE_LABEL = "stcloud.env_complete"
# What an app start relies on: tini finds `sh` on the image's PATH, and the environment's
# Python (found first on that PATH) runs.
PROBE = ["sh", "-c", f"test -x {VENV}/bin/streamlit && exec python -c ''"]
PROBE_TIMEOUT = 60



class DockerCalls(Protocol):
    """What the builder needs of a Docker client (`docker_api.DockerAPI`)."""

    def client(self) -> Any: ...

    async def call(self, fn: Any, *args: Any, **kwargs: Any) -> Any: ...

    async def remove(self, container: Any) -> None: ...


# A Debian package name, optionally :arch and =version (never an apt option like `-o`).
DEBIAN_PACKAGE = re.compile(r"^[a-z0-9][a-z0-9+.-]*(:[a-z0-9-]+)?(=[A-Za-z0-9.+~:-]+)?$")


def _resolved_uv() -> Path | None:
    """The host's uv as the file itself (a bind mount's source), None when it is missing."""
    uv = Path(uv_binary()).resolve()
    return uv if uv.exists() else None


def _write_build_source(src: Path, spec: EnvSpec, plan: InstallPlan, env: dict[str, str],
                        has_ca: bool) -> None:
    """The build containers' read-only source folder: the install files and the scripts
    of both phases (`docker_scripts`)."""
    src.chmod(0o755)
    write_build_files(src, plan.build_files(WORK))
    (src / "wheels.sh").write_text(wheels_script(spec, env, has_ca))
    (src / "layered.sh").write_text(wheels_script(spec, env, has_ca, layered=True))
    (src / "build.sh").write_text(build_script(spec, env, has_ca))


class ImageBuilder:
    """Builds base and env images; `api` runs blocking Docker calls off the event loop."""

    def __init__(self, settings: Settings, api: DockerCalls, install_id: str) -> None:
        self.settings = settings
        self._client = api.client
        self._call = api.call
        self._remove = api.remove
        self._api = api
        self.install_id = install_id
        self._locks: dict[str, asyncio.Lock] = {}
        self.bases = BaseImages(settings, self._image_exists)
        self._verified: set[str] = set()  # env image ids whose probe passed
        self.layers = Layers(api, install_id, self._lock, self._run_streaming)

    def _lock(self, key: str) -> asyncio.Lock:
        return self._locks.setdefault(key, asyncio.Lock())

    async def _image_exists(self, name: str) -> bool:
        try:
            await self._call(self._client().images.get, name)
            return True
        except docker.errors.ImageNotFound:
            return False

    # Base images -------------------------------------------------------------------
    async def base_image(self, version: str, log: LogSink) -> str:
        """The base image for a Python version, built on first use (`docker_base`)."""
        return await self.bases.image(version, log)

    # Env images --------------------------------------------------------------------
    async def existing_env(self, spec: EnvSpec) -> EnvRef | None:
        """The completed, probed env image of `spec`, or None (never builds)."""
        image = f"{ENV_REPO}:{spec.dep_hash}"
        async with self._lock("env:" + spec.dep_hash):
            if not await self._image_exists(image) or \
                    await self._check_env_image(image, spec.dep_hash) is not None:
                return None
        version = python_minor(spec.python_version or self.settings.default_python)
        return EnvRef(spec.dep_hash, version, image, reused=True)

    async def ensure_env(self, spec: EnvSpec, log: LogSink) -> EnvRef:
        version = python_minor(spec.python_version or self.settings.default_python)
        image = f"{ENV_REPO}:{spec.dep_hash}"
        bad = [p for p in spec.packages if not DEBIAN_PACKAGE.match(p)]
        if bad:
            more = f" and {len(bad) - 3} more" if len(bad) > 3 else ""
            raise BuildError("packages.txt names something that is not a Debian package: "
                             + ", ".join(repr(excerpt(p)) for p in bad[:3]) + more)
        async with self._lock("env:" + spec.dep_hash):
            if await self._image_exists(image):
                fault = await self._check_env_image(image, spec.dep_hash)
                if fault is None:
                    for note in spec.notes:  # which dependency file, also for a reused image
                        log(note)
                    log(f"Reusing the environment image {image} (same dependencies).")
                    return EnvRef(spec.dep_hash, version, image, reused=True)
                log(f"==> The environment image {image} is not usable ({fault}); "
                    "building it again")
                await self.untag(image)
            base = await self.base_image(version, log)
            await self._build_env(spec, version, base, image, log)
            fault = await self._check_env_image(image, spec.dep_hash)
            if fault is not None:
                await self.untag(image)
                raise BuildError(f"The environment image built for these dependencies is not "
                                 f"usable ({fault}); deploy again to rebuild it.")
            return EnvRef(spec.dep_hash, version, image, reused=False)

    async def _check_env_image(self, image: str, dep_hash: str) -> str | None:
        """None when `image` is a completed env image of `dep_hash` whose container runs
        `sh` from its PATH and the environment's Python (what an app start needs), else
        what is wrong. The run is made once per image id and builder."""
        try:
            found = await self._call(self._client().images.get, image)
        except docker.errors.ImageNotFound:
            return "it is gone"
        labels = (found.attrs.get("Config") or {}).get("Labels") or {}
        if labels.get(COMPLETE_LABEL) != dep_hash:
            return f"no {COMPLETE_LABEL}={dep_hash} label: not committed by a completed build"
        if found.id in self._verified:
            return None
        code, output = await self._probe(found.id)
        if code is None:
            # The daemon did not answer the check (busy, restarting): that says nothing
            # about the image, and untagging it would pull it from under a start that
            # another process of this host is making with it. Checked again next time.
            return None
        if code != 0:
            return f"its check exited {code}: {excerpt(output.strip()[-300:])}"
        self._verified.add(found.id)
        return None

    async def _probe(self, image_id: str) -> tuple[int | None, str]:
        """Run PROBE in a container of `image_id` set up as app containers are (tini as
        init, read-only, no network, no capabilities); (exit code, its output), or (None,
        the daemon's error) when the daemon could not run the check."""
        client = self._client()
        container = await self._call(
            client.containers.create, image_id, PROBE, network_mode="none", init=True,
            read_only=True, cap_drop=["ALL"], security_opt=["no-new-privileges"],
            labels={"stcloud.build": self.install_id, "stcloud.probe": "env"},
            name=f"stcloud-{self.install_id}-probe-{uuid.uuid4().hex[:10]}")
        try:
            await self._call(container.start)
            result = await self._call(container.wait, timeout=PROBE_TIMEOUT)
            output = await self._call(container.logs)
            return int(result.get("StatusCode", 1)), output.decode(errors="replace")
        except (docker.errors.APIError, requests.exceptions.RequestException) as exc:
            return None, str(getattr(exc, "explanation", None) or exc)
        finally:
            await asyncio.shield(self._remove(container))

    async def runs_sh(self, image_id: str) -> bool | None:
        """Whether a check container of `image_id` runs sh and the environment's Python
        (None: the daemon did not answer)."""
        code, _ = await self._probe(image_id)
        return None if code is None else code == 0

    async def untag(self, image: str, only: str = "") -> None:
        """Remove the tag (and the image, unless a container still uses it): the next
        `ensure_env` of its dependencies builds it again. With `only` (an image id), only
        while the tag still names that image."""
        try:
            if only and (await self._call(self._client().images.get, image)).id != only:
                return
            await self._call(self._client().images.remove, image, force=True)
        except docker.errors.ImageNotFound:
            pass

    async def _build_env(self, spec: EnvSpec, version: str, base: str, image: str,
                         log: LogSink) -> None:
        """The two phases of `docker_scripts`: wheels-only with the scope's cache writable,
        committed when complete; else the sandboxed phase over a copy-on-write view of it."""
        settings = self.settings
        ca = settings.ca_bundle_path
        uv = await asyncio.to_thread(_resolved_uv)
        if uv is None:
            raise BuildError("uv is not installed on the supervisor's host; it is needed to "
                             "build environments.")
        cache = settings.uv_cache_for(spec.scope)
        await asyncio.to_thread(cache.mkdir, parents=True, exist_ok=True)
        # UV_SYSTEM_CERTS is uv 0.13's name for UV_NATIVE_TLS (which now warns); uv of any
        # age trusts SSL_CERT_FILE, which is what makes TLS work behind an inspecting proxy.
        # No UV_COMPILE_BYTECODE: compiling takes longer than the install, and it would run
        # the venv's Python (the `.pth` files of its wheels) in the wheels-only phase.
        env = {"UV_CACHE_DIR": UV_CACHE, "UV_LINK_MODE": "copy", "UV_SYSTEM_CERTS": "1",
               "UV_PYTHON_DOWNLOADS": "never", "UV_NO_PROGRESS": "1",
               "VIRTUAL_ENV": VENV, "DEBIAN_FRONTEND": "noninteractive", "HOME": "/root"}
        # `mounts`, not `volumes`: the SDK would also declare volumes in the container's
        # config, and `commit` would carry them into the env image.
        mounts = [Mount(UV_PATH, str(uv), type="bind", read_only=True)]
        if ca is not None:
            mounts.append(Mount(CA_PATH, str(ca), type="bind", read_only=True))
            env.update(SSL_CERT_FILE=CA_PATH, PIP_CERT=CA_PATH, REQUESTS_CA_BUNDLE=CA_PATH)
        if settings.index_url:
            env["UV_INDEX_URL"] = settings.index_url
        if settings.app_auth_packages.strip():
            env[AUTH_PACKAGES_VAR] = settings.app_auth_packages.strip()
        shared = Mount(UV_CACHE, str(cache), type="bind")
        layer = await self.layers.image(base, spec.default_streamlit, env,
                                        [*mounts, shared], log) if layered_ok(spec) else None
        with tempfile.TemporaryDirectory(prefix="stcloud-build-") as tmp:
            src = Path(tmp)
            plan = spec.install_plan()
            await asyncio.to_thread(_write_build_source, src, spec, plan, env, ca is not None)
            mounts.append(Mount(SRC, str(src), type="bind", read_only=True))
            await self._remove_stale_builds(spec.dep_hash, spec.scope)
            first = ("layered.sh", layer) if layer else ("wheels.sh", base)
            if await self._run_phase(spec, version, base, first, [*mounts, shared], plan,
                                     log):
                log(f"==> Committed {image}")
                return
            log("==> Some packages are built from source: building the environment again "
                "in a container whose package cache is a copy-on-write view of the shared one")
            async with cache_view(self._api, cache, UV_CACHE, self.install_id, log) as view:
                await self._run_phase(spec, version, base, ("build.sh", base),
                                      [*mounts, view], plan, log)
        log(f"==> Committed {image}")

    async def _run_phase(self, spec: EnvSpec, version: str, base: str,
                         run: tuple[str, str], mounts: list[Mount], plan: InstallPlan,
                         log: LogSink) -> bool:
        """Run one phase's script (`run`: the script and the image it runs on) in a build
        container and commit it when it succeeds; False when a wheels-only phase asks for
        the sandboxed one; BuildError else."""
        script, from_image = run
        # Not `stcloud.install`/`stcloud.component`: commit copies labels into the
        # image, and env images belong to no installation.
        labels = {"stcloud.build": self.install_id, "stcloud.dep_hash": spec.dep_hash}
        container = await self._call(
            self._client().containers.create, from_image, ["sh", f"{SRC}/{script}"],
            name=f"stcloud-{self.install_id}-build-{spec.dep_hash[:12]}-"
                 f"{uuid.uuid4().hex[:6]}",
            mounts=mounts, labels=labels, working_dir="/tmp")
        try:
            code, output = await self._run_streaming(container, log)
            if code == NEEDS_SOURCE_BUILD and script != "build.sh":
                return False
            explained = plan.explain_failure(output.text()) if code == 12 else None
            if explained is not None:
                raise BuildError(explained)
            if code != 0:
                raise BuildError(plan.failure_message(self._failure(spec, code, output)))
            await self._call(
                container.commit, ENV_REPO, spec.dep_hash,
                message=f"stcloud env {spec.dep_hash}",
                changes=IMAGE_CHANGES + [
                    f"LABEL stcloud.component=env stcloud.dep_hash={spec.dep_hash} "
                    f"stcloud.python={version} stcloud.base={base} "
                    f"{COMPLETE_LABEL}={spec.dep_hash}"])
            return True
        finally:
            # Runs on success, failure and cancellation: kills a running build.
            await asyncio.shield(self._remove(container))

    def _failure(self, spec: EnvSpec, code: int, output: StepOutput) -> str:
        """A failed build's message: the step (exit code) and the explainer's reading of
        the output (`supervisor.builds.errors`)."""
        what = STEPS.get(code, f"the build stopped with exit code {code}")
        files = spec.files
        dep_file = "uv.lock" if "uv.lock" in files and "pyproject.toml" in files else \
            "requirements.txt" if "requirements.txt" in files else "pyproject.toml"
        if code == 10:
            dep_file = "packages.txt"
        cmd = ["uv", "venv"] if code == 11 else ["uv", "pip", "install", "-r", dep_file]
        return f"Environment build failed: {what}. " + step_failure_message(
            self.settings, cmd, output.text(), python_minor(spec.python_version))

    async def _run_streaming(self, container: Any, log: LogSink) -> tuple[int, StepOutput]:
        """Start the container, pass its output to `log` line by line; (exit code, the
        output, bounded by `StepOutput`)."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[str | None] = asyncio.Queue()

        def pump() -> None:
            buf = b""
            try:
                for chunk in container.logs(stream=True, follow=True):
                    buf += chunk
                    *lines, buf = buf.split(b"\n")
                    for line in lines:
                        loop.call_soon_threadsafe(queue.put_nowait,
                                                  line.decode(errors="replace").rstrip("\r"))
                if buf:
                    loop.call_soon_threadsafe(queue.put_nowait, buf.decode(errors="replace"))
            except Exception:  # the container went away (cancelled)
                pass
            finally:
                loop.call_soon_threadsafe(queue.put_nowait, None)

        await self._call(container.start)
        reader = asyncio.ensure_future(asyncio.to_thread(pump))
        output = StepOutput()
        try:
            while (line := await queue.get()) is not None:
                output.add(line)
                log(line)
            result = await self._call(container.wait)
        finally:
            if not reader.done():
                reader.cancel()
        return int(result.get("StatusCode", 1)), output

    async def _remove_stale_builds(self, dep_hash: str, scope: str) -> None:
        """Build containers of this hash, and cache views, left by a supervisor that died
        mid-build."""
        stale = await self._call(self._client().containers.list, all=True,
                                 ignore_removed=True, filters={
            "label": [f"stcloud.build={self.install_id}", f"stcloud.dep_hash={dep_hash}"]})
        for container in stale:
            await self._remove(container)
        await remove_stale_views(self._api, self.install_id, self.settings.build_timeout,
                                 self.settings.uv_cache_for(scope))
