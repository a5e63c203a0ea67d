"""An app's records as the lifecycle actions write them: state transitions, events
without a state change, and the instance it runs (with the tree it runs in), each in one
transaction fenced by the leader lease.

Fencing (several supervisors, supervisor/control/leader.py): with `fence` set (the
reconciler sets it when it starts leading), every write of an app's state or instance runs
in a transaction that first checks the lease is still ours at our epoch, and the runtime's
start and stop are preceded by that check (`check_fence`); otherwise `Fenced` is raised and
the action stops there. An instance it started but could not record is stopped
(`undo_unrecorded`), since the new leader neither knows nor adopts it. One primary-key read
per write.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlmodel import Session

from backend.apps import log_masking
from backend.apps import state as appstate
from backend.context import Context
from backend.platform import notifications
from backend.platform.settings import Settings
from models import App, AppEvent, session_scope, utcnow
from supervisor.control.leader import Fence, Fenced
from supervisor.runtimes.base import Instance, Runtime
from supervisor.sources import checkouts

log = logging.getLogger("supervisor.control.lifecycle")


class AppRecords:
    """Fenced reads and writes of app rows; `instances` is the reconciler's view of what
    runs, kept in step with the instance saved on each row."""

    def __init__(self, ctx: Context, runtime: Runtime,
                 on_change: Callable[[App | None], None] | None = None) -> None:
        self.ctx = ctx
        self.runtime = runtime
        self.instances: dict[int, Instance] = {}
        self._on_change: Callable[[App | None], None] = on_change or (lambda app: None)
        self.fence: Fence | None = None  # None: the only supervisor (no lease to check)
        self.unrecorded: list[Instance] = []  # started, then fenced before being saved

    @property
    def settings(self) -> Settings:
        """The context's current settings (they may change live)."""
        return self.ctx.settings

    # Fencing ----------------------------------------------------------------------------
    @contextmanager
    def _write(self) -> Iterator[Session]:
        """A session for a state-changing write, fenced (Fenced if we lost the lease)."""
        with session_scope(self.ctx.engine) as s:
            if self.fence is not None:
                self.fence.check(s)
            yield s

    def check_fence(self) -> None:
        """Before a runtime side effect (start, stop): Fenced if we lost the lease."""
        if self.fence is not None:
            with session_scope(self.ctx.engine) as s:
                self.fence.check(s, hold=False)

    async def undo_unrecorded(self) -> None:
        """Stop the instances this node started but was fenced from recording."""
        while self.unrecorded:
            inst = self.unrecorded.pop()
            log.warning("app=%s fenced: stopping the instance it started at %s:%s",
                        inst.app_id, *inst.address)
            await self.runtime.stop(inst.app_id, inst.state)

    # Helpers ----------------------------------------------------------------------------
    def shown(self, app_id: int, text: str) -> str:
        """Text for an event, a state reason or an email, which may quote the app's or a
        build's output: every value the app's secrets ever had masked."""
        return log_masking.mask(self.ctx, app_id, text)

    def app_dir(self, app_id: int) -> Path:
        return self.settings.apps_path / str(app_id)

    def checkout_dir(self, app_id: int) -> Path:
        """The current source tree: a symlink to `src-<commit>-…`
        (supervisor/sources/checkouts.py)."""
        return self.app_dir(app_id) / checkouts.CURRENT

    def load(self, app_id: int) -> App | None:
        with session_scope(self.ctx.engine) as s:
            return s.get(App, app_id)

    def transition(self, app_id: int, to_state: str, reason: str,
                    notify: tuple[str, dict[str, str]] | None = None,
                    **fields: Any) -> App | None:
        """Record a transition (and, with `notify=(kind, details)`, queue that email for
        this incident in the same transaction)."""
        reason = self.shown(app_id, reason)
        if notify is not None:
            notify = (notify[0], {k: self.shown(app_id, v) for k, v in notify[1].items()})
        with self._write() as s:
            app = s.get(App, app_id)
            if app is None or app.desired_state == "deleted":
                return None
            for name, value in fields.items():
                setattr(app, name, value)
            if app.state != to_state or to_state == "starting":
                event = appstate.transition(s, app, to_state, reason)
                if notify is not None:
                    s.flush()
                    notifications.queue(s, self.settings, app, notify[0], str(event.id),
                                        **notify[1])
            else:
                app.state_reason = reason
                s.add(app)
        log.info("app=%s state=%s reason=%r", app_id, to_state, reason.splitlines()[0:1])
        self._on_change(app)
        return app

    def note(self, app_id: int, reason: str, state_reason: str | None = None,
             notify: tuple[str, str, dict[str, str]] | None = None,
             **fields: Any) -> App | None:
        """An AppEvent without a state change (e.g. "Updated to abc123 in place"), with
        optional row fields and `notify=(kind, incident, details)` in the same transaction."""
        reason = self.shown(app_id, reason)
        if notify is not None:
            notify = (notify[0], notify[1],
                      {k: self.shown(app_id, v) for k, v in notify[2].items()})
        if "last_deploy_error" in fields:
            fields["last_deploy_error"] = self.shown(app_id, fields["last_deploy_error"])
        with self._write() as s:
            app = s.get(App, app_id)
            if app is None or app.desired_state == "deleted":
                return None
            for name, value in fields.items():
                setattr(app, name, value)
            if state_reason is not None:
                app.state_reason = state_reason
            app.updated_at = utcnow()
            s.add(app)
            s.add(AppEvent(app_id=app_id, from_state=app.state, to_state=app.state,
                           reason=reason))
            if notify is not None:
                notifications.queue(s, self.settings, app, notify[0], notify[1], **notify[2])
        log.info("app=%s event=%r", app_id, reason.splitlines()[0:1])
        self._on_change(app)
        return app

    def save_instance(self, app_id: int, inst: Instance | None, tree: Path | None = None,
                       adopted: bool = False, **fields: Any) -> App | None:
        """Store where the instance is (the route reads it) and which tree it runs in.
        Fenced: a new instance (not `adopted`) goes to `unrecorded`, for the action to stop."""
        blob = "{}" if inst is None else json.dumps({
            "engine": self.runtime.name, "address": list(inst.address),
            "generation": inst.generation, "instance": inst.state,
            "tree": tree.name if tree else self._saved(app_id).get("tree", "")})
        try:
            with self._write() as s:
                app = s.get(App, app_id)
                if app is not None:
                    app.runtime_state = blob
                    for name, value in fields.items():
                        setattr(app, name, value)
                    s.add(app)
        except Fenced:
            if inst is not None and not adopted:
                self.unrecorded.append(inst)  # nobody else knows it: ours to stop
            raise
        if inst is None:
            self.instances.pop(app_id, None)
        else:
            self.instances[app_id] = inst
        return app

    def saved_state(self, app_id: int) -> dict[str, Any]:
        state = self._saved(app_id).get("instance", {})
        return state if isinstance(state, dict) else {}

    def _saved(self, app_id: int) -> dict[str, Any]:
        app = self.load(app_id)
        if app is None:
            return {}
        try:
            saved = json.loads(app.runtime_state or "{}")
        except ValueError:
            return {}
        return saved if isinstance(saved, dict) else {}
