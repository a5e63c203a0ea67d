"""packages.txt on the process runtime: the environment is built over a Debian root
filesystem (debootstrap of the Python's suite), apt-get installs the packages as root into
the environment's own overlay layer inside the sandbox, and the app runs with that tree as
its read-only /. The corpus app runs figlet (not on the host), which only packages.txt
installs, and shows what it printed.

The root filesystem takes minutes to debootstrap: the tests keep it under /var/tmp
(`STCLOUD_TEST_ROOTFS`), so a machine builds it once.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from supervisor.runtimes import rootfs, sandbox, sandbox_rootfs
from supervisor.runtimes.base import AppSpec, BuildError, EnvSpec
from supervisor.runtimes.process import ProcessRuntime
from tests.support.corpus import write_checkout
from tests.support.rootfs import ROOTFS_CACHE, SUITE, with_cached_rootfs
from tests.support.runtimes import wait_healthy
from tests.support.streamlit_client import open_streamlit_session

pytestmark = [pytest.mark.no_database,
              pytest.mark.skipif(os.geteuid() != 0, reason="packages.txt needs a root supervisor")]

BUILD_TIMEOUT = 1200  # a first run debootstraps (about 2 minutes here)


@pytest.fixture
def rootfs_settings(settings: Any) -> Any:
    """Settings whose root filesystems are the cached ones; skips without a way to get one."""
    return with_cached_rootfs(settings)


def build_and_open(runtime: ProcessRuntime, checkout: Path, app_id: int,
                   lines: list[str]) -> tuple[dict[str, Any], float]:
    """Build the checkout's environment, start the app, run its script once: (what the
    session saw, seconds from start to healthy)."""
    settings = runtime.settings

    async def scenario() -> tuple[dict[str, Any], float]:
        try:
            spec = EnvSpec.from_checkout(checkout, settings.default_python,
                                         settings.default_streamlit)
            env = await asyncio.wait_for(runtime.ensure_env(spec, lines.append), BUILD_TIMEOUT)
            app = AppSpec(app_id=app_id, name=f"debs{app_id}", checkout=checkout,
                          main_file="streamlit_app.py", memory_limit_mb=512,
                          log_path=settings.logs_path / str(app_id) / "app.log")
            started = time.monotonic()
            inst = await runtime.start(app, env)
            try:
                await wait_healthy(inst.address, runtime, app_id, inst.state, timeout=90)
                healthy = time.monotonic() - started
                where = f"{inst.address[0]}:{inst.address[1]}"
                return await open_streamlit_session(f"ws://{where}", where, timeout=60), healthy
            finally:
                await runtime.stop(app_id, inst.state)
        finally:
            await runtime.close()

    return asyncio.run(scenario())


def test_packages_txt_app_runs_its_debian_program_on_the_process_runtime(
        rootfs_settings: Any, tmp_path: Path) -> None:
    assert shutil.which("figlet") is None, "the host has figlet: the test would prove nothing"
    runtime = ProcessRuntime(rootfs_settings)
    assert runtime.isolation == sandbox.BUBBLEWRAP, runtime.isolation_problem
    versions, problem = runtime.packages_support()
    assert "3.11" in versions and problem == ""
    checkout = write_checkout(tmp_path, "debian-packages")
    lines: list[str] = []
    seen, _ = build_and_open(runtime, checkout, 61, lines)
    shown = " ".join(seen["texts"])
    assert not seen["exceptions"], (seen["exceptions"], "\n".join(lines[-40:]))
    assert "| '_ \\| |" in shown, (shown, "\n".join(lines[-40:]))  # figlet's "hi"
    assert "figlet-path=/usr/bin/figlet" in shown, shown
    assert "debian=12." in shown, shown  # bookworm's tree is the app's /
    assert "root-writable=no" in shown, shown
    assert any("Installing Debian packages with apt-get: figlet." in li for li in lines), lines
    tree = ROOTFS_CACHE / SUITE
    assert not (tree / "usr/bin/figlet").exists(), "apt wrote into the shared tree"
    assert not (tree / "usr/bin/planted-by-app").exists()


def listener() -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(1)
    return sock


ROOT_PROBE = r'''
id -u
for f in "$@"; do
  if [ -e "$f" ]; then echo "SEES $f"; else echo "no $f"; fi
  cat "$f" >/dev/null 2>&1 && echo "READ $f"
done
echo planted > /usr/share/stcloud-probe 2>/dev/null && echo "wrote tree probe"
mount -t tmpfs x /mnt 2>/dev/null && echo "MOUNTED" || echo "no mount"
# the same value back: harmless should it ever succeed, but a global sysctl the host obeys
p=$(cat /proc/sys/kernel/core_pattern)
echo "$p" > /proc/sys/kernel/core_pattern 2>/dev/null && echo "WROTE sysctl" || echo "no sysctl"
ls /proc | grep -c '^[0-9]' | sed 's/^/pids=/'
python3 -c "import socket; socket.create_connection(('127.0.0.1', $PORT), 2)" 2>/dev/null \
  && echo "REACHED host loopback" || echo "no host loopback"
'''


def test_the_root_apt_step_reaches_nothing_of_the_data_dir_nor_the_shared_tree(
        rootfs_settings: Any, tmp_path: Path) -> None:
    """What apt runs as root (maintainer scripts) sees only the environment's overlay: not
    the keys, the database, another app's secrets or another environment; it cannot
    change the tree other environments share, mount, write a global sysctl, see host
    processes or reach the host's loopback."""
    # Its own envs dir: the hand-made build directory must not sit in the shared one, where
    # it would look like a killed build to the next test's clean-up.
    runtime = ProcessRuntime(dataclasses.replace(rootfs_settings, envs_dir=tmp_path / "envs"))
    assert runtime.isolation == sandbox.BUBBLEWRAP, runtime.isolation_problem
    settings = runtime.settings
    lines: list[str] = []
    tree = asyncio.run(runtime._root_filesystems().ensure(SUITE, lines.append,
                                                          runtime._run_script))
    planted = {"keys": settings.data_dir / "keys" / "secrets.key",
               "db": settings.data_dir / "cloud.db",
               "secrets": settings.apps_path / "7" / "secrets.toml",
               "other_env": settings.envs_path / "other-env" / "pyvenv.cfg"}
    for path in planted.values():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("SECRET-MATERIAL")
    settings.envs_path.mkdir(parents=True, exist_ok=True)
    venv = Path(subprocess.check_output(["mktemp", "-d", "-p", str(settings.envs_path),
                                         "attack.building-XXXX"], text=True).strip())
    spec = EnvSpec(python_version="3.11", files={}, default_streamlit="1.67.0",
                   packages=("figlet",))
    runtime._prepare_build_dir(venv, spec)  # as a build: handed to the build user, then apt
    layers = sandbox_rootfs.new_layers(venv, tree)
    # The attack overwrites a file of the test's own in the shared tree, never a host
    # program: were the sandbox broken, the write would land on the host's filesystem.
    probe = tree / "usr/share/stcloud-probe"
    if not probe.exists():
        probe.write_text("original\n")
    before = probe.read_bytes()
    with listener() as host_side:
        port = host_side.getsockname()[1]
        assert runtime._tools is not None
        command = sandbox_rootfs.root_step_command(
            runtime._tools, layers, settings.run_path,
            ["/usr/bin/env", f"PORT={port}", "/bin/sh", "-c", ROOT_PROBE, "sh",
             *(str(p) for p in planted.values()), str(tree), str(settings.data_dir)])
        out = subprocess.run(command, capture_output=True, text=True, timeout=60,
                             stdin=subprocess.DEVNULL)
    said = out.stdout.splitlines()
    assert said and said[0] == "0", (out.stdout, out.stderr)  # apt's root, in its sandbox
    for path in [*planted.values(), tree, settings.data_dir]:
        assert f"no {path}" in said, (said, out.stderr)
    assert not any(line.startswith(("SEES", "READ")) for line in said), said
    assert "wrote tree probe" in said, "the step writes its own layer"
    assert probe.read_bytes() == before, "the tree changed"
    assert (layers.upper / "usr/share/stcloud-probe").read_text() == "planted\n", \
        "the write went to the layer"
    assert "no mount" in said and "MOUNTED" not in said, said
    assert "no sysctl" in said, said  # kernel.core_pattern: a program the host runs as root
    pids = next(int(line.split("=")[1]) for line in said if line.startswith("pids="))
    assert pids < 10, said  # its own pid namespace
    assert "no host loopback" in said, said

    # The uv steps after apt (package build code, as the build user) over the same tree.
    step = runtime._step_runner(spec, rootfs.PYTHON_IN_TREE, venv)
    seen: list[str] = []
    asyncio.run(step(["/bin/sh", "-c", STEP_PROBE, "sh", *(str(p) for p in planted.values()),
                      str(layers.upper)], seen.append))
    assert seen[0] == str(sandbox.BUILDER_UID), seen
    assert not any(line.startswith(("SEES", "READ", "WROTE")) for line in seen), seen
    assert "layer=planted" in seen, seen  # its / is the tree with the layer apt wrote
    assert probe.read_bytes() == before


STEP_PROBE = r'''
id -u
for f in "$@"; do
  if [ -e "$f" ]; then echo "SEES $f"; else echo "no $f"; fi
done
echo "layer=$(head -c 7 /usr/share/stcloud-probe)"
echo x > /usr/share/stcloud-probe 2>/dev/null && echo "WROTE tree"
touch /planted 2>/dev/null && echo "WROTE root"
exit 0
'''


def test_packages_are_refused_by_the_build_without_debootstrap(
        settings: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No tree and no debootstrap: the build says what to install, and so does the
    runtime's report that the up-front check reads."""
    monkeypatch.setattr(rootfs, "debootstrap_available", lambda: False)
    runtime = ProcessRuntime(settings)
    assert runtime.packages_support() == ([], rootfs.NO_DEBOOTSTRAP)
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    (checkout / "packages.txt").write_text("figlet\n")
    spec = EnvSpec.from_checkout(checkout, "3.11", settings.default_streamlit)
    with pytest.raises(Exception) as refused:
        asyncio.run(runtime.ensure_env(spec, lambda line: None))
    assert "apt install debootstrap" in str(refused.value)
    assert not list(settings.envs_path.glob(f"{spec.dep_hash}*")), "nothing was built"


def test_what_the_runtime_reports_for_packages_txt(
        rootfs_settings: Any, settings: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The report the up-front check reads: every suite's Python with debootstrap; without
    it, only the trees already made; none unsandboxed, saying why."""
    runtime = ProcessRuntime(rootfs_settings)
    assert runtime.packages_support() == (["3.9", "3.11", "3.13"], "") \
        or not rootfs.debootstrap_available()
    asyncio.run(runtime._root_filesystems().ensure(SUITE, lambda line: None,
                                                   runtime._run_script))  # made once
    monkeypatch.setattr(rootfs, "debootstrap_available", lambda: False)
    made = [version for version, suite in rootfs.DEBIAN_SUITES.items()
            if rootfs.is_complete(ROOTFS_CACHE / suite)]
    assert "3.11" in made and ProcessRuntime(rootfs_settings).packages_support() == (made, "")
    unsandboxed = ProcessRuntime(dataclasses.replace(rootfs_settings, process_sandbox="off"))
    versions, problem = unsandboxed.packages_support()
    assert versions == [] and "only inside the process runtime's sandbox" in problem


def test_half_built_trees_of_a_killed_build_are_removed(rootfs_settings: Any,
                                                        tmp_path: Path) -> None:
    """A supervisor killed mid-debootstrap leaves `.<suite>.building.*` (hundreds of MB): the
    next build of that suite removes it once it is old; a recent one (another supervisor's
    build in progress) and one with something mounted in it stay."""
    settings = dataclasses.replace(rootfs_settings, process_rootfs_dir=tmp_path / "rootfs")
    old, recent, mounted = (settings.rootfs_path / f".{SUITE}.building.{n}"
                            for n in ("old", "recent", "mounted"))
    for path in (old, recent, mounted):
        (path / "rootfs" / "proc").mkdir(parents=True)
    hours_ago = time.time() - 2 * rootfs.STALE_BUILD_AGE
    for path in (old, mounted):
        os.utime(path, (hours_ago, hours_ago))
    subprocess.run(["mount", "-t", "tmpfs", "stcloud-test", str(mounted / "rootfs" / "proc")],
                   check=True)
    try:
        assert rootfs.remove_stale_builds(settings, SUITE) == [old]
        assert not old.exists() and recent.is_dir() and mounted.is_dir()
    finally:
        subprocess.run(["umount", str(mounted / "rootfs" / "proc")], check=True)


def test_an_env_path_overlay_options_cannot_hold_is_refused_with_the_reason(
        rootfs_settings: Any, tmp_path: Path) -> None:
    """Overlay mount options separate paths with ',' and ':': such a path would mount
    other directories than meant, so the build or start says which path to change."""
    asyncio.run(ProcessRuntime(rootfs_settings)._root_filesystems().ensure(
        SUITE, lambda line: None, ProcessRuntime(rootfs_settings)._run_script))
    env = tmp_path / "envs,lowerdir=x" / "abc"
    env.mkdir(parents=True)
    sandbox_rootfs.new_layers(env, ROOTFS_CACHE / SUITE)
    with pytest.raises(BuildError) as refused:
        ProcessRuntime(rootfs_settings).build_root(env)
    assert "contains ',', ':' or '\\'" in str(refused.value)
    assert "envs_dir" in str(refused.value)


def test_a_package_debian_does_not_have_fails_the_build_naming_it(
        rootfs_settings: Any, tmp_path: Path) -> None:
    runtime = ProcessRuntime(rootfs_settings)
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    (checkout / "packages.txt").write_text("no-such-package-stcloud\n")
    spec = EnvSpec.from_checkout(checkout, "3.11", rootfs_settings.default_streamlit)
    with pytest.raises(BuildError) as failed:
        asyncio.run(asyncio.wait_for(runtime.ensure_env(spec, lambda line: None),
                                     BUILD_TIMEOUT))
    assert "apt-get could not install the Debian packages of packages.txt" in str(failed.value)
    assert "packages.txt names no-such-package-stcloud, which Debian does not have" \
        in str(failed.value), str(failed.value)
    assert not list(rootfs_settings.envs_path.glob(f"{spec.dep_hash}*")), "nothing was kept"
