"""Run the real supervisor (`python -m supervisor`) as a subprocess for integration tests,
and wait on app states by polling the database (never by sleeping a fixed time)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TypeVar

from sqlmodel import select

from backend.context import Context
from backend.platform.settings import PROJECT_ROOT, Settings
from models import App, session_scope

T = TypeVar("T")


class SupervisorProcess:
    def __init__(self, settings: Settings, log_path: Path) -> None:
        self.settings = settings
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        """The supervisor's process id (it has been started)."""
        assert self.proc is not None, "the supervisor was not started"
        return self.proc.pid

    def start(self, timeout: float = 60) -> SupervisorProcess:
        env = {**os.environ, **self.settings.to_env(), "PYTHONUNBUFFERED": "1"}
        env.pop("DATABASE_URL", None)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "supervisor"], cwd=PROJECT_ROOT,
                                         env=env, stdout=out, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        wait_until(self._proxy_answers, timeout, "the proxy to listen", self)
        return self

    def _proxy_answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.settings.port), timeout=0.5):
                return True
        except OSError:
            return False

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL, as a crash would: nothing gets to clean up."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self, sig: int = signal.SIGINT) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def output(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-6000:]
        except FileNotFoundError:
            return ""


def wait_until(check: Callable[[], T | None], timeout: float, what: str,
               sup: SupervisorProcess | None = None, interval: float = 0.1) -> T:
    """check()'s first truthy value, polled every `interval` s; fails the test after
    `timeout` s, or at once when the supervisor `sup` has died."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if sup is not None and not sup.alive():
            raise AssertionError(f"supervisor died while waiting for {what}:\n{sup.output()}")
        if time.monotonic() > deadline:
            extra = f"\nsupervisor output:\n{sup.output()}" if sup else ""
            raise AssertionError(f"timed out after {timeout} s waiting for {what}{extra}")
        time.sleep(interval)  # polling interval of a condition, not a synchronisation guess


def load_app(ctx: Context, app_id: int) -> App | None:
    with session_scope(ctx.engine) as s:
        return s.get(App, app_id)


def stored_app(ctx: Context, app_id: int) -> App:
    """The app's row; fails the test when the app is gone."""
    app = load_app(ctx, app_id)
    assert app is not None, f"app {app_id} is gone"
    return app


def wait_for_state(ctx: Context, app_id: int, states: Iterable[str], timeout: float = 180,
                   sup: SupervisorProcess | None = None) -> App:
    wanted = set(states)

    def check() -> App | None:
        app = load_app(ctx, app_id)
        return app if app is not None and app.state in wanted else None

    try:
        return wait_until(check, timeout, f"app {app_id} to reach {wanted}", sup)
    except AssertionError as e:
        app = load_app(ctx, app_id)
        raise AssertionError(f"{e}\nlast state: {app and app.state}: "
                             f"{app and app.state_reason}") from None


def all_apps(ctx: Context) -> list[App]:
    with session_scope(ctx.engine) as s:
        return list(s.exec(select(App)).all())
