"""The process runtime offers every usable CPython of this host, verified by running it.

Fake interpreters are small shell scripts that answer the probe the way CPython would (or
fail the way a pyenv shim does); the last test uses the host's real pyenv versions.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from backend.platform.settings_load import load_settings
from supervisor.runtimes import pythons
from supervisor.runtimes.base import uv_binary
from supervisor.runtimes.process import ProcessRuntime


def fake_python(path: Path, answer: str, code: int = 0) -> Path:
    """An executable that prints `answer` (what the probe reads) and exits with `code`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!/bin/sh\necho '{answer}'\nexit {code}\n")
    path.chmod(0o755)
    return path


def no_host(tmp_path: Path) -> dict[str, str]:
    """An environment whose pyenv root is empty, so only the test's paths count."""
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYENV_ROOT": str(tmp_path / "none")}


def test_newest_patch_wins_and_broken_candidates_do_not_count(tmp_path: Path) -> None:
    old = fake_python(tmp_path / "a" / "bin" / "python3.12", "3 12 1 final cpython /old/3.12")
    new = fake_python(tmp_path / "b" / "bin" / "python3.12", "3 12 7 final cpython /new/3.12")
    fake_python(tmp_path / "c" / "bin" / "python3.10", "pyenv: python3.10: not found", 127)
    fake_python(tmp_path / "d" / "bin" / "python3.13", "3 13 0 candidate cpython /rc/3.13")
    fake_python(tmp_path / "e" / "bin" / "python3.9", "3 9 18 final pypy /pypy/3.9")
    assert old.exists() and new.exists()
    found = {i.minor: i for i in map(pythons.probe, map(str, sorted(tmp_path.rglob("py*"))))
             if i is not None}
    assert set(found) == {"3.12"}  # the shim, the release candidate and PyPy are refused
    chosen = pythons.newest_per_minor([pythons.probe(str(old)), pythons.probe(str(new))])
    assert chosen["3.12"].version == "3.12.7" and chosen["3.12"].path == "/new/3.12"


def test_search_paths_add_prefixes_and_directories_of_prefixes(tmp_path: Path) -> None:
    """Patch 99 beats whatever the host itself has of these minor versions."""
    fake_python(tmp_path / "opt" / "py311" / "bin" / "python3.11",
                "3 11 99 final cpython /opt/py311/bin/python3.11")
    fake_python(tmp_path / "versions" / "3.10.99" / "bin" / "python3.10",
                "3 10 99 final cpython /v/3.10.99/bin/python3.10")
    fake_python(tmp_path / "plain" / "python3.13", "3 13 99 final cpython /plain/python3.13")
    extra = os.pathsep.join(str(tmp_path / d) for d in ("opt/py311", "versions", "plain"))
    without = pythons.discover("/nonexistent-uv", no_host(tmp_path), "")
    found = pythons.discover("/nonexistent-uv", no_host(tmp_path), extra)
    assert found["3.10"].version == "3.10.99"
    assert found["3.11"].path == "/opt/py311/bin/python3.11"
    assert found["3.13"].path == "/plain/python3.13"
    assert all(i.path.startswith(("/usr/", "/bin")) for i in without.values())


PYENV = pythons.pyenv_versions_dir()
PYENV_MINORS = sorted({m.group(1) for p in (PYENV.iterdir() if PYENV.is_dir() else [])
                       if (m := re.match(r"^(3\.(?:9|1[0-3]))\.\d+$", p.name))},
                      key=lambda v: int(v.split(".")[1]))


@pytest.mark.skipif(not PYENV_MINORS, reason="no pyenv CPython 3.9-3.13 on this host")
def test_runtime_offers_every_pyenv_python_of_this_host(tmp_path: Path) -> None:
    runtime = ProcessRuntime(load_settings(env={}, data_dir=tmp_path, runtime="process"))
    offered = runtime.python_versions()
    assert set(PYENV_MINORS) <= set(offered), (PYENV_MINORS, offered)
    assert offered == sorted(offered, key=lambda v: int(v.split(".")[1]))
    for minor in PYENV_MINORS:  # a real interpreter, not a shim
        assert "/shims/" not in runtime._find_pythons()[minor].path
    assert uv_binary()
