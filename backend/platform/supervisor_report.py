"""What the running supervisor reports about itself (engine, Python versions, heartbeat).

The supervisor writes `<data_dir>/run/platform.json`; the dashboard reads it through here,
so pages never talk to the runtime directly.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from backend.context import Context
from backend.platform.settings import Settings


@dataclass
class PlatformInfo:
    engine: str = "unknown"
    python_versions: list[str] = field(default_factory=list)
    # The process runtime's Python versions for apps with packages.txt (its Debian root
    # filesystems), and why there are none ("" when there are).
    packages_pythons: list[str] = field(default_factory=list)
    packages_problem: str = ""
    dashboard_url: str = ""
    heartbeat: float = 0.0  # time.time() of the supervisor's last reconcile pass

    @property
    def supervisor_alive(self) -> bool:
        return time.time() - self.heartbeat < 30


def _path(settings: Settings) -> Path:
    return settings.run_path / "platform.json"


def wake_file(ctx: Context) -> Path:
    return ctx.settings.run_path / "wake"


def wake_supervisor(ctx: Context) -> None:
    """Tell the supervisor that desired state changed, so it acts now rather than at its
    next periodic pass (it watches this file's modification time)."""
    path = wake_file(ctx)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a"):
        os.utime(path, None)


def read_platform(ctx: Context) -> PlatformInfo:
    return read_platform_of(ctx.settings)


def read_platform_of(settings: Settings) -> PlatformInfo:
    """What the supervisor of `settings`' data dir last reported; for callers without a
    database context (a restore checking that no supervisor runs there)."""
    try:
        data = json.loads(_path(settings).read_text())
    except (FileNotFoundError, ValueError):
        return PlatformInfo(python_versions=[settings.default_python])
    return PlatformInfo(**{k: v for k, v in data.items() if k in PlatformInfo.__annotations__})


def write_platform(ctx: Context, info: PlatformInfo) -> None:
    path = _path(ctx.settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(asdict(info)))
    os.replace(tmp, path)
