"""Environments with Debian packages (packages.txt) on the process runtime.

Such an environment is built over a Debian root filesystem (`rootfs.py`) of the suite
whose python3 is the app's Python: apt-get installs the packages as root into the
environment's own overlay layer over that tree, sandboxed (`sandbox_rootfs.apt_command`);
then the venv is made with that tree's /usr/bin/python3 and filled by uv as in every
process build, the uv steps running as the build user with the tree and the layer as their
read-only / (`sandbox_rootfs.mount_prefix`). The app later runs with the same / .
Environments without packages.txt are built as before, with the host's interpreters.
"""

from __future__ import annotations

import os
from pathlib import Path

from backend import app_requirements
from backend.platform.settings import Settings
from backend.repositories.files import excerpt
from supervisor.runtimes import pythons, rootfs, sandbox, sandbox_rootfs
from supervisor.runtimes.base import BuildError, EnvSpec, LogSink
from supervisor.runtimes.docker_images import DEBIAN_PACKAGE


class PackageBuilds:
    """The packages.txt half of EnvBuilds (mixed into ProcessRuntime)."""

    settings: Settings
    isolation: str
    _tools: sandbox.Tools | None
    _rootfs: rootfs.RootFilesystems | None = None

    async def _run(self, cmd: list[str], log: LogSink, env: dict[str, str] | None = None,
                   explain_as: list[str] | None = None) -> None:
        raise NotImplementedError

    def packages_support(self) -> tuple[list[str], str]:
        """The Python versions apps with packages.txt can use here, and why none ("" when
        some): `rootfs.support`."""
        return rootfs.support(self.settings, self.isolation)

    def _root_filesystems(self) -> rootfs.RootFilesystems:
        if self._rootfs is None:
            self._rootfs = rootfs.RootFilesystems(self.settings)
        return self._rootfs

    async def packages_interpreter(self, spec: EnvSpec,
                                   log: LogSink) -> tuple[pythons.Interpreter, Path]:
        """The interpreter (inside the tree) and the tree an environment with Debian
        packages is built with; the tree is made first when missing. BuildError says why
        this server cannot, and what to do."""
        versions, problem = self.packages_support()
        if problem:
            raise BuildError(app_requirements.packages_refusal(spec.packages, problem))
        bad = [p for p in spec.packages if not DEBIAN_PACKAGE.match(p)]
        if bad:
            raise BuildError("packages.txt names something that is not a Debian package: "
                             f"'{excerpt(bad[0])}'. List one package name per line.")
        minor = pythons.minor_of(spec.python_version)
        if minor not in versions:
            raise BuildError(app_requirements.packages_python_refusal(
                spec.python_version, versions))
        suite = rootfs.suite_for(minor)
        tree = await self._root_filesystems().ensure(suite, log, self._run_script)
        log(f"Building over the Debian {suite} root filesystem (Python {minor}), for "
            "packages.txt.")
        return pythons.Interpreter(minor, minor, rootfs.PYTHON_IN_TREE), tree

    async def _run_script(self, cmd: list[str], log: LogSink) -> None:
        path = f"{rootfs.TOOL_PATH}:{os.environ.get('PATH', '')}"
        await self._run(cmd, log, env={"PATH": path, "HOME": os.environ.get("HOME", "/root"),
                                       "LANG": "C.UTF-8"})

    async def install_packages(self, spec: EnvSpec, venv: Path, tree: Path,
                               log: LogSink) -> None:
        """apt-get install of packages.txt into the new environment's own layer over
        `tree` (as root, sandboxed: `sandbox_rootfs.apt_command`)."""
        assert self._tools is not None
        layers = sandbox_rootfs.new_layers(venv, tree)
        log(f"Installing Debian packages with apt-get: {', '.join(spec.packages)}.")
        try:
            command = sandbox_rootfs.apt_command(self._tools, layers, self.settings.run_path,
                                                 list(spec.packages))
        except sandbox_rootfs.OverlayPathError as e:
            raise BuildError(f"Cannot build over the Debian root filesystem: {e}.") from None
        try:
            await self._run(command, log, env={"PATH": rootfs.TOOL_PATH, "LANG": "C.UTF-8"},
                            explain_as=["uv", "pip", "install", "-r", "packages.txt"])
        except BuildError as e:  # the Docker engine's words for the same failure
            raise BuildError("Environment build failed: apt-get could not install the Debian "
                             f"packages of packages.txt. {e}") from None

    def build_root(self, venv: Path) -> tuple[list[str], Path | None]:
        """For a build step or an instance of the environment at `venv`: the command
        prefix that mounts its root filesystem and the path bwrap binds as / — or no
        prefix and None for an environment without Debian packages."""
        layers = sandbox_rootfs.layers_of(venv)
        if layers is None:
            return [], None
        if not rootfs.is_complete(layers.base):
            raise BuildError(f"The Debian root filesystem {layers.base} this environment was "
                             "built over is gone: push again or reboot the app to rebuild "
                             "it (after removing the environment), or restore the tree.")
        try:
            return sandbox_rootfs.mount_prefix(layers, self.settings.run_path, writable=False)
        except sandbox_rootfs.OverlayPathError as e:
            raise BuildError(f"Cannot mount the Debian root filesystem: {e}.") from None
