"""The app state machine of DESIGN.md. Every transition writes an AppEvent row.

queued → building → starting → running; running → sleeping | over_limit | crashed | stopped;
building → build_failed. Any state may go back to queued (redeploy) or to deleting, and an
interrupted supervisor may find an app in building/starting and resume it from queued.
"""

from __future__ import annotations

from sqlmodel import Session

from backend.errors import InvalidTransition
from models import App, AppEvent, id_of, utcnow

STATES = ("queued", "building", "starting", "running", "sleeping", "over_limit", "crashed",
          "stopped", "build_failed", "deleting")
OVEN_STATES = frozenset({"queued", "building", "starting"})
FAILED_STATES = frozenset({"build_failed", "crashed", "over_limit"})

_ALLOWED: dict[str, frozenset[str]] = {
    "queued": frozenset({"building", "stopped"}),
    "building": frozenset({"starting", "build_failed", "stopped"}),
    "starting": frozenset({"running", "crashed", "over_limit", "stopped", "starting"}),
    "running": frozenset({"sleeping", "over_limit", "crashed", "stopped", "starting"}),
    "sleeping": frozenset({"starting", "stopped"}),
    "over_limit": frozenset({"starting"}),
    "crashed": frozenset({"starting"}),
    "stopped": frozenset({"starting"}),
    "build_failed": frozenset({"stopped"}),
    "deleting": frozenset(),
}


def can_transition(from_state: str, to_state: str) -> bool:
    if to_state in ("queued", "deleting"):
        return from_state != "deleting"
    return to_state in _ALLOWED.get(from_state, frozenset())


def transition(session: Session, app: App, to_state: str, reason: str = "") -> AppEvent:
    """Move `app` to `to_state`, recording why. The caller commits the session."""
    if to_state not in STATES:
        raise InvalidTransition(f"Unknown state {to_state!r}.")
    if not can_transition(app.state, to_state):
        raise InvalidTransition(f"App {app.subdomain} cannot go from {app.state} to "
                                f"{to_state}.")
    event = AppEvent(app_id=id_of(app), from_state=app.state, to_state=to_state, reason=reason)
    app.state = to_state
    app.state_reason = reason
    app.updated_at = utcnow()
    session.add(app)
    session.add(event)
    return event
