"""Our proxy alone, for bench/proxy.py: one process serving `start_proxy` with fixed routes.

    .venv/bin/python bench/proxy_runner.py --port P --route bench=127.0.0.1:8501 \
        [--route echo=127.0.0.1:9000] [--log FILE] [--profile FILE]

Routes are `subdomain=host:port`, all in state `running`, so `<subdomain>.localhost:P`
is forwarded to that address. Logging is configured like the supervisor's (INFO), so
the per-websocket `websocket_open`/`websocket_closed` lines are part of the cost measured.
Prints `ready` on stdout once listening; stops cleanly on SIGTERM/SIGINT (with
`--profile`, cProfile stats of the whole serving time are dumped to FILE at exit).

`--quickack` is an experiment, not our proxy as shipped: it sets TCP_QUICKACK on an
upstream socket each time data arrives on it (a wrapper around aiohttp's client protocol
`data_received`). Streamlit 1.67 binds its listening socket with proto 0, so asyncio never
sets TCP_NODELAY on its connections and Nagle holds the rest of every response until the
first segment is ACKed; a keep-alive client that delays its ACK (~40 ms on Linux) stalls.
The variant shows what the proxy gains by ACKing at once (see docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import socket
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from backend.platform.settings_load import load_settings  # noqa: E402
from supervisor.proxy import start_proxy  # noqa: E402
from supervisor.routes import Route, RouteTable  # noqa: E402


def enable_quickack() -> None:
    """Experiment: ACK upstream data at once (every read re-arms TCP_QUICKACK)."""
    from aiohttp import client_proto

    original = client_proto.ResponseHandler.data_received

    def data_received(self, data: bytes) -> None:
        transport = self.transport
        sock = transport.get_extra_info("socket") if transport is not None else None
        if sock is not None:
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
            except OSError:
                pass
        original(self, data)

    client_proto.ResponseHandler.data_received = data_received


def parse_route(text: str) -> tuple[str, tuple[str, int]]:
    sub, _, addr = text.partition("=")
    host, _, port = addr.rpartition(":")
    return sub, (host.strip("[]"), int(port))


async def serve(port: int, routes_spec: list[str], data_dir: Path) -> None:
    settings = load_settings(env={}, data_dir=data_dir, port=port)
    routes = RouteTable()
    for i, spec in enumerate(routes_spec, start=1):
        sub, address = parse_route(spec)
        routes.set(Route(app_id=i, subdomain=sub, state="running", address=address))
    runner = await start_proxy(settings, routes)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print("ready", flush=True)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--route", action="append", default=[])
    parser.add_argument("--log", default="")
    parser.add_argument("--profile", default="")
    parser.add_argument("--quickack", action="store_true")
    args = parser.parse_args()
    if args.quickack:
        enable_quickack()
    logging.basicConfig(level="INFO", filename=args.log or None,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    with tempfile.TemporaryDirectory(prefix="stcloud-bench-proxy-") as tmp:
        if args.profile:
            import cProfile
            profiler = cProfile.Profile()
            profiler.enable()
            try:
                asyncio.run(serve(args.port, args.route, Path(tmp)))
            finally:
                profiler.disable()
                profiler.dump_stats(args.profile)
        else:
            asyncio.run(serve(args.port, args.route, Path(tmp)))


if __name__ == "__main__":
    main()
