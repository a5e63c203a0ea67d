"""An app may write into its working directory on every runtime, as on Community Cloud.

What it writes lives in a per-instance layer (a tmpfs of `app_workdir_size_mb` at /app that
starts as a copy of the checkout): gone after a reboot, never in the platform's checkout,
bounded in size, and no symlink of the repository leads a write out to a host file. A
code-only push, which updates the checkout in place (`checkouts.sync_in_place`), still
reaches the running app, including a file it had already read and a file whose name it had
looked up before the push.

The app (APP below) reports what it did and saw as one `RESULT {json}` text element each
time its script runs (a Streamlit session opened by the test).
"""

from __future__ import annotations

import asyncio
import dataclasses
import errno
import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from supervisor.runtimes.base import AppSpec
from supervisor.sources import checkouts
from tests.conftest import EXAMPLE_APP
from tests.support.runtimes import make_runtime, run_script, start_healthy

pytestmark = pytest.mark.no_database
ENGINES = ["process", "docker", "swarm"]
WORKDIR_MB = 16

APP = '''
import errno, json, os, pathlib
import streamlit as st

report = {"had_output": os.path.exists("output/result.txt"),
          "new_file": os.path.exists("new.txt")}

def attempt(name, action):
    try:
        report[name] = action()
    except OSError as exc:
        report[name] = "FAILED errno=%s %s" % (exc.errno, exc)

def write_own():
    os.makedirs("output", exist_ok=True)
    pathlib.Path("output/result.txt").write_text("written by the app")
    return pathlib.Path("output/result.txt").read_text()

def fill():
    written = 0
    chunk = b"x" * (1 << 20)
    try:
        with open("output/big.bin", "wb") as out:
            for _ in range(256):
                out.write(chunk)
                out.flush()
                written += len(chunk)
        return "WROTE %d" % written
    except OSError as exc:
        return "FULL errno=%s after=%d" % (exc.errno, written)
    finally:
        if os.path.exists("output/big.bin"):
            os.unlink("output/big.bin")

def escape(link):
    pathlib.Path(link, "pwned.txt").write_text("from the app")
    return "WROTE " + os.path.realpath(link)

attempt("own", write_own)
attempt("data", lambda: pathlib.Path("data.txt").read_text())
attempt("new_text", lambda: pathlib.Path("new.txt").read_text())
if os.environ.get("FILL"):
    attempt("fill", fill)
for link in ("escape_abs", "escape_rel"):
    attempt(link, lambda: escape(link))
st.text("RESULT " + json.dumps(report))
'''


def make_checkout(base: Path, host_dir: Path) -> Path:
    """A checkout with APP, data.txt (v1), and two symlinks leading to `host_dir`."""
    checkout = base / "apps" / "9" / "src-0000"
    checkout.mkdir(parents=True)
    (checkout / "streamlit_app.py").write_text(APP)
    shutil.copy(EXAMPLE_APP / "requirements.txt", checkout / "requirements.txt")
    (checkout / "data.txt").write_text("v1")
    os.symlink(host_dir, checkout / "escape_abs")
    os.symlink(os.path.relpath(host_dir, checkout), checkout / "escape_rel")
    return checkout


def spec_for(settings: Any, checkout: Path, fill: bool = False) -> AppSpec:
    return AppSpec(app_id=9, name="writer", checkout=checkout, main_file="streamlit_app.py",
                   log_path=settings.logs_path / "9" / "app.log", memory_limit_mb=512,
                   env_vars={"FILL": "1"} if fill else {})


async def report_of(inst: Any) -> dict[str, Any]:
    return json.loads(await run_script(inst.address))


def push_in_place(checkout: Path, tmp_path: Path) -> None:
    """A code-only push as the platform applies it: data.txt changes, new.txt appears."""
    new = tmp_path / "pushed"
    shutil.copytree(checkout, new, symlinks=True)
    (new / "data.txt").write_text("v2")
    (new / "new.txt").write_text("pushed")
    old_files = sorted(str(p.relative_to(checkout)) for p in checkout.rglob("*")
                       if p.is_file() or p.is_symlink())
    new_files = sorted({*old_files, "new.txt"})
    checkouts.sync_in_place(checkout, new, old_files, new_files, last="streamlit_app.py")


@pytest.fixture
def host_dir(tmp_path: Path) -> Path:
    """A host directory anyone may write: only the sandbox can keep an app out of it."""
    path = tmp_path / "keys"
    path.mkdir()
    path.chmod(0o777)
    return path


@pytest.mark.parametrize("engine", ENGINES)
def test_app_writes_its_workdir_lost_on_reboot_never_in_checkout(
        engine: str, settings: Any, tmp_path: Path, host_dir: Path) -> None:
    runtime = make_runtime(engine, settings)
    checkout = make_checkout(tmp_path, host_dir)
    app = spec_for(settings, checkout)

    async def scenario() -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        inst = await start_healthy(runtime, app)
        try:
            first, again = await report_of(inst), await report_of(inst)
        finally:
            await runtime.stop(9, inst.state)
        inst = await start_healthy(runtime, app)  # a reboot: stop, then start from the checkout
        try:
            rebooted = await report_of(inst)
        finally:
            await runtime.stop(9, inst.state)
            await runtime.close()
        return first, again, rebooted

    first, again, rebooted = asyncio.run(scenario())
    assert first["own"] == "written by the app", first
    assert not first["had_output"] and again["had_output"], (first, again)
    assert not rebooted["had_output"], "the app's file survived a reboot"
    assert rebooted["own"] == "written by the app", rebooted
    assert not (checkout / "output").exists(), "the app's file reached the checkout"
    assert first["data"] == "v1", first


@pytest.mark.parametrize("engine", ENGINES)
def test_code_only_push_reaches_the_running_app(engine: str, settings: Any, tmp_path: Path,
                                                host_dir: Path) -> None:
    runtime = make_runtime(engine, settings)
    checkout = make_checkout(tmp_path, host_dir)

    async def scenario() -> tuple[dict[str, Any], dict[str, Any]]:
        inst = await start_healthy(runtime, spec_for(settings, checkout))
        try:
            before = await report_of(inst)  # reads data.txt, looks up new.txt
            push_in_place(checkout, tmp_path)
            deadline = asyncio.get_running_loop().time() + 30
            while True:
                after = await report_of(inst)
                if after["data"] == "v2" and after["new_text"] == "pushed":
                    break
                assert asyncio.get_running_loop().time() < deadline, \
                    f"the push never reached the app: {after}"
                await asyncio.sleep(0.2)
        finally:
            await runtime.stop(9, inst.state)
            await runtime.close()
        return before, after

    before, after = asyncio.run(scenario())
    assert before["data"] == "v1" and not before["new_file"], before
    assert before["own"] == "written by the app", before
    assert after["had_output"], "the app's own file was lost by the push"
    assert after["new_file"], after
    assert not (checkout / "output").exists()


@pytest.mark.parametrize("engine", ENGINES)
def test_writing_past_the_bound_fails_and_the_app_keeps_running(
        engine: str, settings: Any, tmp_path: Path, host_dir: Path) -> None:
    settings = dataclasses.replace(settings, app_workdir_size_mb=WORKDIR_MB)
    runtime = make_runtime(engine, settings)
    checkout = make_checkout(tmp_path, host_dir)

    async def scenario() -> tuple[dict[str, Any], dict[str, Any], bool]:
        inst = await start_healthy(runtime, spec_for(settings, checkout, fill=True))
        try:
            full = await report_of(inst)
            alive = (await runtime.poll(9, inst.state)).alive
            return full, await report_of(inst), alive
        finally:
            await runtime.stop(9, inst.state)
            await runtime.close()

    full, after, alive = asyncio.run(scenario())
    assert full["fill"].startswith(f"FULL errno={errno.ENOSPC} "), full
    written = int(full["fill"].rsplit("after=", 1)[1])
    assert 1 << 20 <= written <= WORKDIR_MB << 20, full
    assert alive and after["own"] == "written by the app", after


@pytest.mark.parametrize("engine", ENGINES)
def test_a_symlink_in_the_checkout_is_no_way_to_write_a_host_file(
        engine: str, settings: Any, tmp_path: Path, host_dir: Path) -> None:
    runtime = make_runtime(engine, settings)
    checkout = make_checkout(tmp_path, host_dir)

    async def scenario() -> dict[str, Any]:
        inst = await start_healthy(runtime, spec_for(settings, checkout))
        try:
            return await report_of(inst)
        finally:
            await runtime.stop(9, inst.state)
            await runtime.close()

    report = asyncio.run(scenario())
    assert report["own"] == "written by the app", report  # the workdir is writable...
    for link in ("escape_abs", "escape_rel"):  # ...but not through a link out of it
        assert report[link].startswith("FAILED"), report
    assert list(host_dir.iterdir()) == [], "the app wrote a host file through a symlink"


def test_mirror_applies_an_in_place_push_and_keeps_the_apps_own_files(tmp_path: Path) -> None:
    """workdir.apply, as the instance's mirror thread runs it after a push: changed files
    replaced, new ones added, removed ones deleted, a file that became a directory and back,
    the app's own files and .git left alone, links copied as links."""
    from supervisor.runtimes import workdir
    source, dest = tmp_path / "checkout", tmp_path / "app"
    (source / "pkg").mkdir(parents=True)
    dest.mkdir()
    (source / "main.py").write_text("v1")
    (source / "pkg" / "mod.py").write_text("m1")
    (source / "gone.txt").write_text("x")
    (source / "turns").write_text("a file")
    (source / ".git").mkdir()
    os.symlink("../../keys", source / "keys")
    copied = workdir.scan(source.as_posix())
    workdir.apply(str(source), str(dest), {}, copied, "main.py")
    (dest / "output").mkdir()
    (dest / "output" / "result.txt").write_text("mine")
    assert (dest / "main.py").read_text() == "v1" and not (dest / ".git").exists()
    assert os.readlink(dest / "keys") == "../../keys"

    (source / "main.py").write_text("v2")
    (source / "gone.txt").unlink()
    (source / "turns").unlink()
    (source / "turns").mkdir()
    (source / "turns" / "inner.py").write_text("i")
    (source / "pkg" / "new.py").write_text("n")
    pushed = workdir.scan(str(source))
    assert workdir.apply(str(source), str(dest), copied, pushed, "main.py") > 0
    assert (dest / "main.py").read_text() == "v2"
    assert (dest / "pkg" / "new.py").read_text() == "n"
    assert (dest / "turns" / "inner.py").read_text() == "i"
    assert not (dest / "gone.txt").exists()
    assert (dest / "output" / "result.txt").read_text() == "mine"

    shutil.rmtree(source / "turns")
    (source / "turns").write_text("a file again")
    workdir.apply(str(source), str(dest), pushed, workdir.scan(str(source)), "main.py")
    assert (dest / "turns").read_text() == "a file again"
    assert sorted(p.name for p in dest.iterdir()) == \
        ["keys", "main.py", "output", "pkg", "turns"]
