"""Docker images for the Python versions no Debian release ships (3.10, 3.12): the host's
interpreter copied into the Debian base image of the host's release
(scripts/build-host-python-image.sh) and offered through `docker_base_images`. An app built
on each starts healthy in the Docker runtime and reports that version's `sys.version`."""

from __future__ import annotations

import asyncio
import dataclasses
import subprocess
from pathlib import Path

import pytest

from backend.platform.settings import PROJECT_ROOT
from supervisor.runtimes.base import EnvSpec
from tests.support.pythons import (
    DEBIAN_BASE,
    REPORTS_VERSION,
    interpreter,
    interpreter_version,
    start_and_read_version,
)
from tests.support.runtimes import app_spec, make_runtime

SCRIPT = PROJECT_ROOT / "scripts" / "build-host-python-image.sh"


def host_python_image(minor: str) -> str:
    """stcloud-base:py<minor> made from the host's interpreter (kept once built)."""
    image = f"stcloud-base:py{minor}"
    if subprocess.run(["docker", "image", "inspect", DEBIAN_BASE], capture_output=True,
                      check=False).returncode != 0:
        pytest.skip(f"{DEBIAN_BASE} is not built (scripts/build-base-image.sh bookworm ...)")
    done = subprocess.run(["bash", str(SCRIPT), str(interpreter(minor)), DEBIAN_BASE, image],
                          capture_output=True, text=True, check=False, timeout=300)
    assert done.returncode == 0, done.stderr
    return image


@pytest.mark.parametrize("minor", ["3.12", "3.10"])
def test_docker_app_runs_on_a_host_python(minor: str, settings, tmp_path: Path) -> None:
    expected = interpreter_version(minor)
    image = host_python_image(minor)
    settings = dataclasses.replace(settings, docker_base_images=f"{minor}={image}")
    runtime = make_runtime("docker", settings)
    assert minor in runtime.python_versions()
    checkout = tmp_path / "checkout"
    checkout.mkdir()
    (checkout / "streamlit_app.py").write_text(REPORTS_VERSION)
    spec = EnvSpec.from_checkout(checkout, minor, settings.default_streamlit)
    app = app_spec(settings, checkout, app_id=60 + int(minor.split(".")[1]))

    run = asyncio.run(start_and_read_version(runtime, spec, app))
    assert run.reported.strip() == f"PYTHON-VERSION {expected.splitlines()[0].strip()}"
