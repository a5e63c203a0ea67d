"""State files of the process runtime: what must survive a supervisor restart.

Each start writes `run/app-<id>.json` (pid, process start time, port, cgroups, isolation)
and `list()` adopts what is still alive; the process start time guards against a recycled
pid. An instance started beside the app's current one (a zero-downtime redeploy,
`AppSpec.alongside`) writes `run/app-<id>-<token>.json`, so `stop(state)` removes the file of
that instance only.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from backend.settings import Settings

STATE_FILE = re.compile(r"^app-(\d+)(?:-([0-9a-f]+))?\.json$")


class StateFiles:
    """The `run/app-*.json` files of a ProcessRuntime."""

    settings: Settings

    def _state_file(self, app_id: int, token: str = "") -> Path:
        return self.settings.run_path / (f"app-{app_id}-{token}.json" if token
                                         else f"app-{app_id}.json")

    def _state_files(self, app_id: int | None = None) -> list[tuple[int, Path]]:
        out = []
        for path in sorted(self.settings.run_path.glob("app-*.json")):
            match = STATE_FILE.match(path.name)
            if match and (app_id is None or int(match.group(1)) == app_id):
                out.append((int(match.group(1)), path))
        return out

    def _write_state(self, app_id: int, state: dict[str, Any]) -> None:
        path = self._state_file(app_id, state.get("instance", ""))
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state))
        os.replace(tmp, path)

    @staticmethod
    def _read_path(path: Path) -> dict[str, Any] | None:
        try:
            return json.loads(path.read_text())
        except (FileNotFoundError, ValueError):
            return None
