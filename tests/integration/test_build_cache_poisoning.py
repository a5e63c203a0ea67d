"""A hostile package build cannot poison the package cache other apps' builds read (the
Docker engine's shared cache, the process runtime's sandboxed one).

The cache is the test's own (the real one is shared by every test run): it holds the
unpacked archive of `victimlib`, a wheel made here and installed once from a local
find-links folder, as any app's build would have left it. The hostile repository's
requirements name a local package whose in-tree build backend (`requires = []`: no network)
rewrites every cached `victimlib/__init__.py` it can reach and drops a probe file into the
cache, then fails the build. Afterwards the shared cache must be as it was, and a later
install of victimlib from it (what another app's build does) must get the clean module.
"""

from __future__ import annotations

import asyncio
import dataclasses
import subprocess
import zipfile
from pathlib import Path
from typing import Any

import pytest

from backend.platform.settings import Settings
from supervisor.runtimes.base import BuildError, EnvSpec, uv_binary
from supervisor.runtimes.docker import DockerRuntime
from tests.support.runtimes import checkout, remove_docker_installation

pytestmark = pytest.mark.no_database

CLEAN = "CLEAN = True\n"
BACKEND = r'''
import os, pathlib, sys
cache = pathlib.Path(os.environ["UV_CACHE_DIR"])
hits = 0
for init in cache.glob("archive-v*/*/victimlib/__init__.py"):
    init.write_text("POISONED = True\n")
    hits += 1
(cache / "poison-probe").write_text("hostile build was here")
print(f"hostile backend rewrote {hits} cached victimlib files", file=sys.stderr)
raise SystemExit("hostile backend done")
'''


# A .pth line: runs at every start of the environment's Python (uv's bytecode compiling
# starts it), rewrites what it can reach of the cache and marks the environment.
PTH = ("import os, pathlib, sys; c = pathlib.Path(os.environ.get('UV_CACHE_DIR', '/none')); "
       "[p.write_text('POISONED = True') for p in c.glob('archive-v*/*/victimlib/__init__.py')]; "
       "c.is_dir() and (c / 'poison-probe').write_text('x'); "
       "open(os.path.join(sys.prefix, 'pth-ran'), 'w').close()\n")


def wheel(folder: Path, name: str, version: str, files: dict[str, str]) -> Path:
    """A minimal pure-Python wheel (metadata, `files`, RECORD) in `folder`."""
    folder.mkdir(exist_ok=True)
    path = folder / f"{name}-{version}-py3-none-any.whl"
    info = f"{name}-{version}.dist-info"
    files = {**files,
             f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
             f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
                              "Tag: py3-none-any\n"}
    record = "".join(f"{n},,\n" for n in files) + f"{info}/RECORD,,\n"
    with zipfile.ZipFile(path, "w") as z:
        for n, text in {**files, f"{info}/RECORD": record}.items():
            z.writestr(n, text)
    return path


def victim_wheel(folder: Path) -> Path:
    """The folder holding victimlib 1.0, whose module is CLEAN."""
    wheel(folder, "victimlib", "1.0", {"victimlib/__init__.py": CLEAN})
    return folder


def install_victimlib(cache: Path, wheels: Path, venv: Path) -> str:
    """Install victimlib into a fresh venv from `cache` (a warm install, as a build makes);
    the text of the module it got."""
    uv = uv_binary()
    subprocess.run([uv, "venv", "-q", str(venv)], check=True)
    subprocess.run([uv, "pip", "install", "-q", "--python", str(venv / "bin" / "python"),
                    "--cache-dir", str(cache), "--no-index", "--find-links", str(wheels),
                    "victimlib==1.0"], check=True)
    return next(venv.glob("lib/python*/site-packages/victimlib/__init__.py")).read_text()


def cached_victims(cache: Path) -> list[Path]:
    return list(cache.glob("archive-v*/*/victimlib/__init__.py"))


def hostile_checkout(tmp_path: Path) -> Path:
    """A repository whose requirements name ./evilpkg, built by the BACKEND above."""
    path = checkout(tmp_path, "hostile", {"requirements.txt": "./evilpkg\n"})
    pkg = path / "evilpkg"
    pkg.mkdir()
    (pkg / "pyproject.toml").write_text(
        '[build-system]\nrequires = []\nbuild-backend = "evil"\nbackend-path = ["."]\n\n'
        '[project]\nname = "evilpkg"\nversion = "0.1"\n')
    (pkg / "evil.py").write_text(BACKEND)
    return path


def assert_not_poisoned(cache: Path, wheels: Path, lines: list[str], tmp_path: Path) -> None:
    # The backend ran and found the cached module (in what it was given as the cache).
    assert any("hostile backend rewrote 1 cached victimlib files" in line
               for line in lines), "\n".join(lines[-30:])
    assert not (cache / "poison-probe").exists(), "the build wrote into the shared cache"
    assert [p.read_text() for p in cached_victims(cache)] == [CLEAN], \
        "the hostile build rewrote a cached archive of the shared cache"
    assert install_victimlib(cache, wheels, tmp_path / "after") == CLEAN


def test_a_hostile_build_backend_cannot_poison_the_shared_cache(
        dsettings: Settings, docker_client: Any, tmp_path: Path) -> None:
    cache = tmp_path / "shared-cache"
    wheels = victim_wheel(tmp_path / "wheels")
    assert install_victimlib(cache, wheels, tmp_path / "before") == CLEAN
    assert cached_victims(cache), "uv did not keep victimlib's archive in the cache"

    settings = dataclasses.replace(dsettings, uv_cache_dir=cache)
    spec = EnvSpec.from_checkout(hostile_checkout(tmp_path), "3.11",
                                 settings.default_streamlit)
    runtime = DockerRuntime(settings, docker_client)
    lines: list[str] = []
    try:
        with pytest.raises(BuildError):
            asyncio.run(runtime.ensure_env(spec, lines.append))
    finally:
        asyncio.run(runtime.close())
        remove_docker_installation(docker_client, runtime)
    assert_not_poisoned(cache, wheels, lines, tmp_path)
    leftover = docker_client.volumes.list(filters={"label": f"stcloud.build={runtime.install_id}"})
    assert leftover == [], "the build's cache view outlived it"


def test_a_sandboxed_process_build_cannot_poison_the_shared_cache(
        settings: Settings, tmp_path: Path) -> None:
    """The process runtime's sandboxed builds share `<cache>/sandboxed`, owned by the build
    user; the hostile step gets a copy-on-write view of it (`process_cache`)."""
    from supervisor.runtimes.process import ProcessRuntime
    from supervisor.runtimes.sandbox import BUILDER_UID, chown_tree
    root = tmp_path / "uv"
    cache = root / "sandboxed"
    wheels = victim_wheel(tmp_path / "wheels")
    assert install_victimlib(cache, wheels, tmp_path / "before") == CLEAN
    chown_tree(cache, BUILDER_UID)  # as the build user's steps left it
    runtime = ProcessRuntime(dataclasses.replace(settings, uv_cache_dir=root,
                                                 envs_dir=tmp_path / "envs"))
    assert runtime.isolation == "bubblewrap", runtime.isolation_problem
    spec = EnvSpec.from_checkout(hostile_checkout(tmp_path), "3.11",
                                 settings.default_streamlit)
    lines: list[str] = []
    with pytest.raises(BuildError):
        asyncio.run(runtime.ensure_env(spec, lines.append))
    assert_not_poisoned(cache, wheels, lines, tmp_path)
    assert not list(root.glob(".view-*")), "the build's cache view outlived it"


def test_a_hostile_wheels_pth_file_cannot_poison_the_shared_cache(
        settings: Settings, tmp_path: Path) -> None:
    """Wheels only (the wheels-only step itself): the repository's requirements name a
    wheel whose .pth file runs whenever the environment's Python starts. uv's bytecode
    compiling starts it; the step with the shared cache writable must not."""
    from supervisor.runtimes.process import ProcessRuntime
    from supervisor.runtimes.sandbox import BUILDER_UID, chown_tree
    root = tmp_path / "uv"
    cache = root / "sandboxed"
    wheels = victim_wheel(tmp_path / "wheels")
    assert install_victimlib(cache, wheels, tmp_path / "before") == CLEAN
    chown_tree(cache, BUILDER_UID)
    path = checkout(tmp_path, "pth", {"requirements.txt": "./w/pthpoison-1.0-py3-none-any.whl\n"
                                      "./w/streamlit-1.67.0-py3-none-any.whl\n"})
    wheel(path / "w", "pthpoison", "1.0", {"pthpoison.pth": PTH, "pthpoison_mod.py": ""})
    wheel(path / "w", "streamlit", "1.67.0", {"streamlit/__init__.py": ""})  # offline
    runtime = ProcessRuntime(dataclasses.replace(
        settings, uv_cache_dir=root, envs_dir=tmp_path / "envs", app_auth_packages=""))
    assert runtime.isolation == "bubblewrap", runtime.isolation_problem
    lines: list[str] = []
    env = asyncio.run(runtime.ensure_env(
        EnvSpec.from_checkout(path, "3.11", "1.67.0"), lines.append))
    assert (Path(env.location) / "pth-ran").exists(), "the .pth never ran: no test"
    assert not any("built from source" in line for line in lines), "not the wheels-only step"
    assert not (cache / "poison-probe").exists(), "the .pth wrote into the shared cache"
    assert [p.read_text() for p in cached_victims(cache)] == [CLEAN]
    assert install_victimlib(cache, wheels, tmp_path / "after") == CLEAN
