"""The dashboard's own Streamlit process (`streamlit run Home.py`): started, watched, and
restarted with backoff when it dies. It gets the supervisor's settings as STCLOUD_*
variables, so both use the same database. It dies with the supervisor (PDEATHSIG), so a
restarted supervisor never finds an old dashboard holding the port.

`DashboardProcess.panel(...)` is a second process of the same Home.py serving the Manage
app panel under `server.baseUrlPath=__stcloud/panel` (the proxy serves that prefix on every
app host; Home.py runs the panel page there). Each process reports its address (None
while it is down) to `publish`: the supervisor passes the reconciler's
`publish_dashboard` / `publish_panel`, the one writer of the route table.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Callable

from backend.accounts.identity import PANEL_BASE_URL_PATH
from backend.platform import settings_view
from backend.platform.settings import PROJECT_ROOT, Settings
from supervisor.control.health import wait_for_health
from supervisor.runtimes.process import free_port
from supervisor.runtimes.process_builders import die_with_parent

log = logging.getLogger("supervisor.dashboard")
Publish = Callable[[tuple[str, int] | None], None]  # the process's address, None when down


class DashboardProcess:
    def __init__(self, settings: Settings, publish: Publish | None = None, *,
                 name: str = "dashboard", base_url_path: str = "", port: int | None = None,
                 extra_args: tuple[str, ...] = ()) -> None:
        self.settings = settings
        self.name = name
        self.base_url_path = base_url_path.strip("/")
        self.port = settings.dashboard_port if port is None else port
        self.extra_args = extra_args
        self._publish: Publish = publish or (lambda address: None)
        self.proc: asyncio.subprocess.Process | None = None
        self._stop = asyncio.Event()  # set by stop(), read again after every await in run()

    @classmethod
    def panel(cls, settings: Settings, publish: Publish | None = None) -> DashboardProcess:
        """The Manage app panel's process (see the module docstring)."""
        return cls(settings, publish, name="panel", base_url_path=PANEL_BASE_URL_PATH,
                   port=0, extra_args=("--client.toolbarMode", "minimal"))

    def _command(self, port: int) -> list[str]:
        command = [sys.executable, "-m", "streamlit", "run", str(PROJECT_ROOT / "Home.py"),
                   "--server.port", str(port), "--server.address", "127.0.0.1",
                   "--server.headless", "true", "--browser.gatherUsageStats", "false",
                   "--server.fileWatcherType", "none", *self.extra_args]
        if self.base_url_path:
            command += ["--server.baseUrlPath", self.base_url_path]
        return command

    async def run(self) -> None:
        """Keep the dashboard up until `stop()`; backoff 1, 2, 4 … 30 s between restarts."""
        delay = 1.0
        while not self._stop.is_set():
            port = self.port or free_port()
            env = {**settings_view.child_env(self.settings), "PYTHONUNBUFFERED": "1"}
            log_path = self.settings.logs_path / f"{self.name}.log"
            log_path.parent.mkdir(parents=True, exist_ok=True)
            with await asyncio.to_thread(log_path.open, "ab") as out:
                self.proc = await asyncio.create_subprocess_exec(
                    *self._command(port), cwd=PROJECT_ROOT, env=env, stdout=out,
                    stderr=asyncio.subprocess.STDOUT, stdin=asyncio.subprocess.DEVNULL,
                    preexec_fn=die_with_parent(signal.SIGTERM))
            log.info("%s pid=%s port=%s", self.name, self.proc.pid, port)
            healthy = await self._wait_healthy(port)
            if healthy:
                self._publish(("127.0.0.1", port))
                delay = 1.0
            code = await self.proc.wait()
            self._publish(None)
            if self._stop.is_set():
                return
            log.warning("%s exited with code %s; restarting in %.0f s", self.name, code, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 30.0)

    async def _wait_healthy(self, port: int) -> bool:
        prefix = f"/{self.base_url_path}" if self.base_url_path else ""

        async def alive() -> bool:
            return self.proc is not None and self.proc.returncode is None

        return bool(await wait_for_health(f"http://127.0.0.1:{port}{prefix}/_stcore/health",
                                          alive, within=60, step=0.1))

    async def stop(self) -> None:
        self._stop.set()
        if self.proc is not None and self.proc.returncode is None:
            self.proc.terminate()
            try:
                await asyncio.wait_for(self.proc.wait(), 10)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
