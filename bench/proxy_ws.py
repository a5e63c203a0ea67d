"""Websocket load for bench/proxy.py: round-trip times and many held sessions.

Two kinds of upstream:
- Streamlit: a session is `/_stcore/stream` with subprotocol "streamlit"; it speaks second,
  so each client sends the rerun BackMsg (tests/support/streamlit_client.py) and reads ForwardMsgs
  until `script_finished`. A session is "alive" when it got `new_session` and its socket
  is still open after the hold.
- a trivial aiohttp echo server (`python bench/proxy_ws.py echo --port P`), to isolate the
  proxy's own cost per relayed websocket from Streamlit's cost per session.

Everything is bounded: a fixed number of sessions, a deadline for the ramp, the hold and
the close; tasks still pending at a deadline are cancelled and counted as failed.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from aiohttp import WSMsgType, web

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from streamlit.proto.ForwardMsg_pb2 import ForwardMsg  # noqa: E402

from tests.support.streamlit_client import rerun_message  # noqa: E402

STREAM_PATH = "/_stcore/stream"
RERUN = rerun_message()
FINISHED_EARLY = ForwardMsg.ScriptFinishedStatus.Value("FINISHED_EARLY_FOR_RERUN")


# Process figures -------------------------------------------------------------------------
def rss_kib(pid: int) -> int:
    """VmRSS of a process in KiB (0 when it is gone)."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def fd_count(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return 0


def cpu_seconds(pid: int) -> float:
    """User+system CPU time of a process, in seconds."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def percentiles(samples: list[float]) -> dict[str, float]:
    """p50/p99/mean/min/max in milliseconds of samples given in seconds."""
    if not samples:
        return {"n": 0}
    ordered = sorted(samples)
    def pick(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]
    return {"n": len(ordered), "p50_ms": pick(0.50) * 1e3, "p99_ms": pick(0.99) * 1e3,
            "mean_ms": statistics.fmean(ordered) * 1e3, "min_ms": ordered[0] * 1e3,
            "max_ms": ordered[-1] * 1e3}


# One client --------------------------------------------------------------------------------
@dataclass(eq=False)
class Client:
    """One websocket client, Streamlit (kind="streamlit") or echo (kind="echo")."""

    url: str
    host: str
    kind: str
    ws: aiohttp.ClientWebSocketResponse | None = None
    new_session: bool = False
    finished: int = 0  # script runs completed
    echoes: int = 0
    closed: bool = False
    error: str = ""
    reader: asyncio.Task | None = None
    _event: asyncio.Event = field(default_factory=asyncio.Event)

    async def connect(self, session: aiohttp.ClientSession, timeout: float) -> None:
        headers = {"Host": self.host, "Origin": f"http://{self.host}"}
        protocols = ("streamlit",) if self.kind == "streamlit" else ()
        self.ws = await asyncio.wait_for(session.ws_connect(
            self.url, protocols=protocols, headers=headers, max_msg_size=0, autoping=True,
            timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=5.0),
            heartbeat=None), timeout)
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.ws is not None
        try:
            async for msg in self.ws:
                if msg.type is WSMsgType.BINARY and self.kind == "streamlit":
                    fwd = ForwardMsg()
                    fwd.ParseFromString(msg.data)
                    kind = fwd.WhichOneof("type")
                    if kind == "new_session":
                        self.new_session = True
                    elif kind == "script_finished" and fwd.script_finished != FINISHED_EARLY:
                        self.finished += 1
                        self._event.set()
                elif msg.type in (WSMsgType.BINARY, WSMsgType.TEXT):
                    self.echoes += 1
                    self._event.set()
                elif msg.type is WSMsgType.ERROR:
                    self.error = repr(self.ws.exception())
                    break
        finally:
            self.closed = True
            self._event.set()

    async def roundtrip(self, timeout: float) -> float:
        """Send one rerun (or echo) and wait for its answer; returns seconds."""
        assert self.ws is not None
        before = self.finished if self.kind == "streamlit" else self.echoes
        self._event.clear()
        start = time.perf_counter()
        await self.ws.send_bytes(RERUN if self.kind == "streamlit" else b"x" * 64)
        deadline = start + timeout
        while (self.finished if self.kind == "streamlit" else self.echoes) <= before:
            if self.closed:
                raise ConnectionError("closed")
            left = deadline - time.perf_counter()
            if left <= 0:
                raise TimeoutError
            await asyncio.wait_for(self._event.wait(), left)
            self._event.clear()
        return time.perf_counter() - start

    async def close(self) -> None:
        if self.ws is not None and not self.ws.closed:
            await self.ws.close()
        if self.reader is not None:
            await asyncio.wait([self.reader], timeout=5)
            self.reader.cancel()


def ws_url(port: int) -> str:
    return f"ws://127.0.0.1:{port}{STREAM_PATH}"


def new_client_session() -> aiohttp.ClientSession:
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0, force_close=True))


# Round-trip times -------------------------------------------------------------------------
async def roundtrips(targets: dict[str, tuple[str, str]], kind: str, count: int,
                     warmup: int = 5, timeout: float = 10.0) -> dict[str, dict]:
    """p50/p99 of `count` round trips on one held socket per target, interleaved.

    targets: name -> (ws url, Host header). Interleaving (direct, ours, direct, ours…)
    spreads background noise evenly over the targets.
    """
    samples: dict[str, list[float]] = {name: [] for name in targets}
    connects: dict[str, list[float]] = {name: [] for name in targets}
    async with new_client_session() as session:
        clients = {name: Client(url, host, kind) for name, (url, host) in targets.items()}
        for name, client in clients.items():
            start = time.perf_counter()
            await client.connect(session, timeout)
            await client.roundtrip(timeout)  # first run: new_session + script
            connects[name].append(time.perf_counter() - start)
        try:
            for i in range(warmup + count):
                for name, client in clients.items():
                    took = await client.roundtrip(timeout)
                    if i >= warmup:
                        samples[name].append(took)
        finally:
            await asyncio.gather(*(c.close() for c in clients.values()))
        # Fresh sessions: connect, first script run, close (what a page load costs).
        for _ in range(min(count, 20)):
            for name, (url, host) in targets.items():
                client = Client(url, host, kind)
                start = time.perf_counter()
                await client.connect(session, timeout)
                await client.roundtrip(timeout)
                connects[name].append(time.perf_counter() - start)
                await client.close()
    return {name: {"roundtrip": percentiles(samples[name]),
                   "fresh_session": percentiles(connects[name])} for name in targets}


# Many held sessions ------------------------------------------------------------------------
async def hold_sessions(url: str, host: str, kind: str, count: int, *, proxy_pid: int | None,
                        upstream_pid: int | None, concurrency: int = 50,
                        ramp_deadline: float = 60.0, hold: float = 5.0,
                        first_timeout: float = 20.0, probes: int = 20) -> dict:
    """Open `count` sessions (at most `concurrency` handshakes in flight), hold, probe, close.

    Returns counts (opened, got new_session / first echo, alive after the hold, probes
    answered), the ramp time, and RSS/fd figures of the proxy (and upstream) process at
    baseline, after the ramp and after closing.
    """
    def snapshot() -> dict:
        out = {}
        for name, pid in (("proxy", proxy_pid), ("upstream", upstream_pid)):
            if pid:
                out[name] = {"rss_kib": rss_kib(pid), "fds": fd_count(pid),
                             "cpu_s": cpu_seconds(pid)}
        return out

    base = snapshot()
    clients = [Client(url, host, kind) for _ in range(count)]
    gate = asyncio.Semaphore(concurrency)
    first_done: list[float] = []
    failures: dict[str, int] = {}
    start = time.perf_counter()

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        async def open_one(client: Client) -> None:
            async with gate:
                try:
                    await client.connect(session, first_timeout)
                    await client.roundtrip(first_timeout)
                    first_done.append(time.perf_counter() - start)
                except Exception as exc:
                    key = type(exc).__name__
                    failures[key] = failures.get(key, 0) + 1

        tasks = [asyncio.create_task(open_one(c)) for c in clients]
        done, pending = await asyncio.wait(tasks, timeout=ramp_deadline)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=5)
            failures["ramp_deadline"] = len(pending)
        ramp_s = time.perf_counter() - start
        await asyncio.sleep(hold)
        held = snapshot()
        alive = [c for c in clients if c.ws is not None and not c.closed
                 and (c.new_session if kind == "streamlit" else c.echoes > 0)]
        # Probe a sample of held sessions: still answering after the hold?
        sample = random.Random(1).sample(alive, min(probes, len(alive)))
        probe_times: list[float] = []
        for client in sample:
            try:
                probe_times.append(await client.roundtrip(first_timeout))
            except Exception:
                pass
        close_start = time.perf_counter()
        await asyncio.wait([asyncio.create_task(c.close()) for c in clients], timeout=30)
        close_s = time.perf_counter() - close_start
    await asyncio.sleep(2)  # let both processes finish their closes
    after = snapshot()

    result = {
        "kind": kind, "target": count, "concurrency": concurrency,
        "opened": sum(c.ws is not None for c in clients),
        "first_answer": len(first_done),
        "new_session": sum(c.new_session for c in clients) if kind == "streamlit" else None,
        "alive_after_hold": len(alive), "hold_s": hold,
        "probes_answered": f"{len(probe_times)}/{len(sample)}",
        "probe": percentiles(probe_times),
        "ramp_s": ramp_s, "close_s": close_s,
        "time_to_half_s": sorted(first_done)[len(first_done) // 2] if first_done else None,
        # seconds from the start until every 10th of the target had its first answer
        "checkpoints_s": {n: round(t, 2) for n, t in
                          ((n, sorted(first_done)[n - 1]) for n in
                           range(max(1, count // 10), count + 1, max(1, count // 10))
                           if n <= len(first_done))},
        "time_to_all_s": max(first_done) if first_done else None,
        "failures": failures, "baseline": base, "held": held, "after_close": after,
    }
    for name in ("proxy", "upstream"):
        if name in base:
            result[f"{name}_cpu_pct_ramp_hold"] = (100 * (held[name]["cpu_s"] - base[name]["cpu_s"])
                                                   / (ramp_s + hold))
    if proxy_pid and alive:
        grown = held["proxy"]["rss_kib"] - base["proxy"]["rss_kib"]
        result["proxy_kib_per_session"] = grown / len(alive)
    if upstream_pid and alive:
        grown = held["upstream"]["rss_kib"] - base["upstream"]["rss_kib"]
        result["upstream_kib_per_session"] = grown / len(alive)
    return result


# Echo upstream ------------------------------------------------------------------------------
async def _echo(request: web.Request) -> web.StreamResponse:
    ws = web.WebSocketResponse(max_msg_size=0)
    await ws.prepare(request)
    async for msg in ws:
        if msg.type is WSMsgType.BINARY:
            await ws.send_bytes(msg.data)
        elif msg.type is WSMsgType.TEXT:
            await ws.send_str(msg.data)
    return ws


def serve_echo(port: int) -> None:
    app = web.Application()
    app.router.add_get("/{tail:.*}", _echo)
    print("ready", flush=True)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None,
                handle_signals=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["echo"])
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    serve_echo(args.port)
