"""The Docker build scripts' st.login() step (docker_scripts.auth_lines), run in bash with a
stand-in `uv` and venv: installs app_auth_packages when Authlib is missing, skips when the
app brought Authlib or the setting is empty, and never fails the build."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from supervisor.runtimes import docker_scripts
from supervisor.runtimes.base import EnvSpec


def run_lines(tmp_path: Path, packages: str, *, has_authlib: bool, uv_fails: bool = False
              ) -> tuple[int, str, str]:
    venv = tmp_path / "venv"
    site = venv / "lib" / "python3.11" / "site-packages"
    site.mkdir(parents=True, exist_ok=True)
    if has_authlib:
        (site / "authlib").mkdir(exist_ok=True)
        (site / "authlib" / "__init__.py").write_text("")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    calls = tmp_path / "uv-calls"
    (bin_dir / "uv").write_text(f'#!/bin/sh\necho "$@" >> {calls}\nexit {int(uv_fails)}\n')
    (bin_dir / "uv").chmod(0o755)
    script = "set -u\n" + "\n".join(docker_scripts.auth_lines()).replace(
        docker_scripts.VENV, str(venv)) + "\necho done\n"
    env = {"PATH": f"{bin_dir}:{os.environ['PATH']}",
           docker_scripts.AUTH_PACKAGES_VAR: packages}
    r = subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True,
                       timeout=30)
    return r.returncode, r.stdout, calls.read_text() if calls.exists() else ""


def test_installs_when_authlib_is_missing(tmp_path: Path) -> None:
    code, out, calls = run_lines(tmp_path, "Authlib==1.9.6 httpx==0.28.1", has_authlib=False)
    assert code == 0 and out.endswith("done\n")
    assert calls == "pip install --no-build Authlib==1.9.6 httpx==0.28.1\n"


def test_skips_when_the_app_brings_authlib_or_the_setting_is_empty(tmp_path: Path) -> None:
    assert run_lines(tmp_path, "Authlib==1.9.6", has_authlib=True)[2] == ""
    assert run_lines(tmp_path / "b", "", has_authlib=False)[2] == ""


def test_a_failed_install_does_not_fail_the_build(tmp_path: Path) -> None:
    code, out, _ = run_lines(tmp_path, "Authlib==1.9.6", has_authlib=False, uv_fails=True)
    assert code == 0 and "st.login() will ask for Authlib" in out and out.endswith("done\n")


def test_both_phases_install_the_packages() -> None:
    """The sandboxed phase runs the step; the wheels-only phase compiles the packages into
    its one sync instead (a later uv call there would run the new wheels' .pth files with
    the shared cache writable: docker_scripts)."""
    spec = EnvSpec(python_version="3.11", files={"requirements.txt": b"pandas\n"},
                   default_streamlit="1.67.0")
    step = docker_scripts.auth_lines()[0]
    built = docker_scripts.build_script(spec, {}, False)
    assert step in built and built.index(step) < built.index("Environment ready")
    wheels = docker_scripts.wheels_script(spec, {}, False)
    joined = f"printf '%s\\n' ${{{docker_scripts.AUTH_PACKAGES_VAR}:-}} >> /tmp/extra.in"
    assert joined in wheels and "uv pip install" not in wheels
    assert wheels.index(joined) < wheels.index("uv pip sync") < wheels.index("Environment ready")
