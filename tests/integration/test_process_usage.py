"""Memory usage of a process-runtime instance counts shared pages once.

An app that touches a 200 MiB buffer and then forks 8 children (sharing those pages copy-
on-write) uses about 200 MiB, while a sum of RSS over its process tree says about 1.8 GiB.
`usage()` reads the memory cgroup when the instance has one, else the tree's PSS; the
memory watchdog uses the same figure, so the app is not killed for pages it shares.
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import psutil
import pytest

from supervisor.runtimes.process import ProcessRuntime
from tests.support.runtimes import make_app, make_runtime, run_script, start_healthy

pytestmark = pytest.mark.no_database

FORKER = r'''
import os, time
import streamlit as st
if "buffer" not in st.session_state:
    buffer = bytearray(200 << 20)
    for i in range(0, len(buffer), 4096):
        buffer[i] = 1
    st.session_state.buffer = buffer
    for _ in range(8):
        if os.fork() == 0:
            time.sleep(600)
            os._exit(0)
st.text("RESULT forked")
'''


def rss_sum(pid: int) -> int:
    proc = psutil.Process(pid)
    return sum(p.memory_info().rss for p in [proc, *proc.children(recursive=True)])


@pytest.mark.parametrize("memory_mode", ["cgroup", "watchdog"])
def test_usage_counts_pages_shared_by_forked_processes_once(settings: Any,
                                                             memory_mode: str) -> None:
    settings = dataclasses.replace(settings, process_memory_limit=memory_mode)
    runtime = make_runtime("process", settings)
    assert isinstance(runtime, ProcessRuntime)
    if memory_mode == "cgroup" and runtime.memory_mode != "cgroup":
        pytest.skip("no writable cgroup v1 memory controller here")
    app = make_app(settings, 91, FORKER, memory_mb=1024)

    async def scenario() -> tuple[int, int, str]:
        inst = await start_healthy(runtime, app)
        try:
            assert await run_script(inst.address) == "forked"
            usage = await runtime.usage(91, inst.state)
            assert usage is not None
            naive = rss_sum(inst.state["pid"])
            await runtime.maintain(91, inst.state)  # the watchdog's judgement
            status = await runtime.poll(91, inst.state)
            return usage.memory_bytes, naive, status.kind
        finally:
            await runtime.stop(91, inst.state)

    used, naive, kind = asyncio.run(scenario())
    assert naive > 1500 << 20, f"the fork did not share pages as expected: rss sum {naive}"
    assert 200 << 20 < used < 600 << 20, f"usage {used >> 20} MiB (rss sum {naive >> 20} MiB)"
    assert kind == "running", "a 1 GiB limit is not passed by shared pages"


def test_poll_only_observes_and_maintain_ends_an_instance_over_its_limit(settings: Any) -> None:
    """The watchdog's judgement is `maintain`'s, not `poll`'s: an instance over its limit
    (any Streamlit passes 20 MiB) polls `running` and lives on until `maintain` ends it;
    then `poll` says `oom`."""
    runtime = make_runtime("process", dataclasses.replace(settings,
                                                          process_memory_limit="watchdog"))
    app = make_app(settings, 92, 'import streamlit as st\nst.text("RESULT up")\n', memory_mb=20)

    async def scenario() -> tuple[str, bool, str]:
        inst = await start_healthy(runtime, app)
        try:
            polled = (await runtime.poll(92, inst.state)).kind
            alive = psutil.pid_exists(inst.state["pid"])
            await runtime.maintain(92, inst.state)
            return polled, alive, (await runtime.poll(92, inst.state)).kind
        finally:
            await runtime.stop(92, inst.state)

    polled, alive, after = asyncio.run(scenario())
    assert (polled, alive) == ("running", True), "poll acted on the memory limit"
    assert after == "oom", after
