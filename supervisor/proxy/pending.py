"""What an app host shows right after one of our endpoints changed an app's state (the
sleeping page's wake, the developer's reboot), until the supervisor publishes the app's
new route: the backend has recorded the new state, the route table still holds the old one.

This is the proxy's own memory, not the route table (which only the reconciler writes): a
noted state applies while the table holds the very `Route` object it was noted against, and
is forgotten as soon as the table publishes another one for that subdomain.
"""

from __future__ import annotations

import dataclasses

from supervisor.routes import Route

_MAX = 4096


class PendingStates:
    def __init__(self) -> None:
        self._noted: dict[str, tuple[Route, Route]] = {}  # subdomain -> (published, shown)

    def note(self, published: Route, state: str, reason: str) -> None:
        """Show `state` (not serving) for `published` until the table replaces it."""
        if len(self._noted) >= _MAX:
            self._noted.clear()
        shown = dataclasses.replace(published, state=state, address=None, reason=reason)
        self._noted[published.subdomain] = (published, shown)

    def shown(self, published: Route | None) -> Route | None:
        """The route to act on for `published`, the table's current route (or None)."""
        if published is None:
            return None
        found = self._noted.get(published.subdomain)
        if found is None:
            return published
        if found[0] is not published:  # the supervisor has published since
            self._noted.pop(published.subdomain, None)
            return published
        return found[1]
