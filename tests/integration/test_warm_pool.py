"""The process runtime's warm pool, for real (bubblewrap sandbox, real Streamlit, the
supervisor as root): two apps of one environment, each with its own variable and secret,
woken through the pool, each get a slot of their own and see only their own things; the
woken instance is stopped, polled and adopted like any; a code-only push reaches it; with
the pool off, or no slot ready, the start is cold; a slot is never handed to a second app
and an idle slot sees no app's checkout.

The app (APP) reports, each time its script runs, what it sees as one `RESULT {json}`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from supervisor.runtimes import sandbox
from supervisor.runtimes.base import AppSpec, EnvRef, EnvSpec
from supervisor.runtimes.process import ProcessRuntime
from supervisor.sources import checkouts
from tests.conftest import EXAMPLE_APP
from tests.support.runtimes import run_script, wait_for, wait_healthy

pytestmark = [pytest.mark.no_database,
              pytest.mark.skipif(os.geteuid() != 0, reason="the warm pool needs root")]

APP = '''
import json, os, sys
import streamlit as st
secret = ""
try:
    secret = st.secrets.get("token", "")
except Exception as exc:
    secret = "NO SECRETS %s" % exc
st.text("RESULT " + json.dumps({
    "cwd": os.getcwd(), "files": sorted(os.listdir(".")), "path": sys.path,
    "env": {k: v for k, v in os.environ.items() if k.startswith("WHO")},
    "secret": secret, "data": open("data.txt").read(),
    "uid": os.getuid()}))
'''


def make_app(base: Path, settings: Any, app_id: int, who: str) -> AppSpec:
    checkout = base / "apps" / str(app_id) / "src"
    checkout.mkdir(parents=True)
    (checkout / "streamlit_app.py").write_text(APP)
    (checkout / f"only_{who}.txt").write_text(who)
    (checkout / "data.txt").write_text(f"v1 {who}")
    shutil.copy(EXAMPLE_APP / "requirements.txt", checkout / "requirements.txt")
    secrets = base / "apps" / str(app_id) / "secrets.toml"
    secrets.write_text(f'token = "secret-of-{who}"\n')
    return AppSpec(app_id=app_id, name=who, checkout=checkout, main_file="streamlit_app.py",
                   log_path=settings.logs_path / str(app_id) / "app.log",
                   memory_limit_mb=512, secrets_file=secrets,
                   env_vars={f"WHO_{who.upper()}": who})


def pool_runtime(settings: Any, budget: int = 1024) -> ProcessRuntime:
    runtime = ProcessRuntime(dataclasses.replace(settings, warm_pool_memory_mb=budget))
    if runtime.isolation != sandbox.BUBBLEWRAP:
        pytest.skip("no bubblewrap sandbox here")
    return runtime


async def env_of(runtime: ProcessRuntime, app: AppSpec) -> EnvRef:
    spec = EnvSpec.from_checkout(app.checkout, "3.11", "1.67.0")
    return await runtime.ensure_env(spec, lambda line: None)


async def fill(runtime: ProcessRuntime, env: EnvRef) -> None:
    """The reconciler's report of one sleeping app of `env`; returns once its slot waits."""
    runtime.prepare_wakes([env.dep_hash])
    assert runtime._warm is not None
    await runtime._warm.settle()
    assert env.location in runtime._warm.slots, "no slot got ready"


async def wake(runtime: ProcessRuntime, app: AppSpec, env: EnvRef) -> Any:
    inst = await runtime.start(app, env)
    await wait_healthy(inst.address, runtime, app.app_id, inst.state, timeout=90)
    return inst


async def report(inst: Any) -> dict[str, Any]:
    return dict(json.loads(await run_script(inst.address)))


def test_two_apps_woken_from_the_pool_see_only_their_own(settings: Any,
                                                          tmp_path: Path) -> None:
    runtime = pool_runtime(settings)
    alice, bob = make_app(tmp_path, settings, 31, "alice"), make_app(tmp_path, settings, 32,
                                                                    "bob")

    async def scenario() -> dict[str, Any]:
        env = await env_of(runtime, alice)
        out: dict[str, Any] = {}
        started: list[Any] = []
        try:
            await fill(runtime, env)
            a = await wake(runtime, alice, env)
            started.append(a)
            await fill(runtime, env)
            b = await wake(runtime, bob, env)
            started.append(b)
            out["a"], out["b"] = await report(a), await report(b)
            out["a_state"], out["b_state"] = a.state, b.state
            out["a_state_file"] = json.loads(
                (settings.run_path / "app-31.json").read_text())
            # a code-only push reaches the woken instance (the mirror follows the checkout)
            pushed = tmp_path / "pushed"
            shutil.copytree(alice.checkout, pushed)
            (pushed / "data.txt").write_text("v2 alice")
            names = sorted(p.name for p in alice.checkout.iterdir())
            checkouts.sync_in_place(alice.checkout, pushed, names, names,
                                    last="streamlit_app.py")

            async def pushed_in() -> bool:
                return (await report(a))["data"] == "v2 alice"
            await wait_for(pushed_in, 30, "the push to reach the woken app")
            # adoption by a new runtime: the woken instance is listed, polled, stopped
            again = ProcessRuntime(dataclasses.replace(settings, warm_pool_memory_mb=0))
            adopted = {i.app_id: i for i in await again.list()}
            out["adopted"] = sorted(adopted)
            out["poll"] = (await again.poll(31, adopted[31].state)).kind
            await again.stop(31, adopted[31].state)
            out["after_stop"] = (await runtime.poll(31, a.state)).kind
            out["slot_dir_left"] = Path(a.state["warm_slot"]).exists()
        finally:
            for inst in started:  # a no-op for what is stopped already
                await runtime.stop(inst.app_id, inst.state)
            await runtime.close()
        return out

    out = asyncio.run(scenario())
    a, b = out["a"], out["b"]
    assert out["a_state"].get("warm_slot") and out["b_state"].get("warm_slot"), out
    assert out["a_state"]["warm_slot"] != out["b_state"]["warm_slot"], "one slot, two apps"
    assert out["a_state_file"]["warm_slot"] == out["a_state"]["warm_slot"]
    assert a["cwd"] == "/app" and "only_alice.txt" in a["files"], a
    assert "only_bob.txt" not in a["files"] and "only_alice.txt" not in b["files"], (a, b)
    assert a["env"] == {"WHO_ALICE": "alice"} and b["env"] == {"WHO_BOB": "bob"}, (a, b)
    assert a["secret"] == "secret-of-alice" and b["secret"] == "secret-of-bob", (a, b)
    assert not any("bob" in p for p in a["path"]), a["path"]
    assert not any("alice" in p for p in b["path"]), b["path"]
    assert a["uid"] != b["uid"], "two woken apps share a uid"
    assert out["adopted"] == [31, 32] and out["poll"] == "running", out
    assert out["after_stop"] in ("exited", "missing"), out
    assert not out["slot_dir_left"], "the slot's directory (its mounts) outlived the app"


def test_pool_off_or_no_slot_ready_starts_cold(settings: Any, tmp_path: Path) -> None:
    alice = make_app(tmp_path, settings, 33, "alice")
    off = ProcessRuntime(dataclasses.replace(settings, warm_pool_memory_mb=0))
    pool = pool_runtime(settings)

    async def scenario() -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        env = await env_of(pool, alice)
        try:
            assert off._warm is None
            cold = await wake(off, alice, env)  # pool off
            seen_cold = await report(cold)
            await off.stop(33, cold.state)
            empty = await wake(pool, alice, env)  # pool on, but no slot was asked for
            seen_empty = await report(empty)
            await pool.stop(33, empty.state)
            return cold.state, empty.state, seen_cold | {"empty": seen_empty}
        finally:
            await pool.close()

    cold_state, empty_state, seen = asyncio.run(scenario())
    assert "warm_slot" not in cold_state and "warm_slot" not in empty_state
    assert seen["secret"] == "secret-of-alice" and seen["empty"]["env"] == {
        "WHO_ALICE": "alice"}, seen


def test_a_slot_serves_one_app_and_sees_no_other_checkout(settings: Any,
                                                          tmp_path: Path) -> None:
    from supervisor.runtimes import warm_slot

    runtime = pool_runtime(settings)
    alice, bob = make_app(tmp_path, settings, 34, "alice"), make_app(tmp_path, settings, 35,
                                                                    "bob")

    async def scenario() -> dict[str, Any]:
        env = await env_of(runtime, alice)
        out: dict[str, Any] = {}
        started: list[Any] = []
        try:
            await fill(runtime, env)
            assert runtime._warm is not None
            slot = runtime._warm.slots[env.location]
            a = await wake(runtime, alice, env)
            started.append(a)
            out["taken_again"] = runtime._warm.take(env.location)
            try:  # the supervisor itself cannot hand the same slot to a second app
                warm_slot.assign(slot, bob, env, True, 0, runtime.isolation)
                out["second_assign"] = "accepted"
            except warm_slot.AssignError as exc:
                out["second_assign"] = str(exc)
            await fill(runtime, env)  # a new idle slot beside alice's instance
            idle = runtime._warm.slots[env.location]
            pid = idle.sandbox_pid()
            assert pid is not None
            root = Path(f"/proc/{pid}/root")
            out["idle_checkout"] = os.listdir(root / "run/checkout")
            out["idle_home"] = os.listdir(root / "home/app")
            out["alice_path_visible"] = (root / str(alice.checkout).lstrip("/")).exists()
            out["alice_still"] = (await report(a))["env"]
        finally:
            for inst in started:
                await runtime.stop(inst.app_id, inst.state)
            await runtime.close()
        return out

    out = asyncio.run(scenario())
    assert out["taken_again"] is None, "a taken slot came back to the pool"
    assert out["second_assign"] != "accepted", out
    assert out["idle_checkout"] == [] and out["idle_home"] == [], out
    assert not out["alice_path_visible"], out
    assert out["alice_still"] == {"WHO_ALICE": "alice"}
