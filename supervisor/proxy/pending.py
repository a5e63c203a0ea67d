"""What an app host shows before the supervisor publishes an app's new route: right after
one of our endpoints changed its state (the sleeping page's wake, the developer's reboot),
the backend has recorded the new state and the route table still holds the old one; right
after a deploy, the app's row exists and the table has no route for it yet.

This is the proxy's own memory, not the route table (which only the reconciler writes): a
noted state applies while the table holds the very `Route` object it was noted against, and
is forgotten as soon as the table publishes another one for that subdomain. A subdomain the
table does not know is looked up in the database (`unpublished`) on every request until the
table knows it: never remembered, so an app deployed a moment ago is never answered "No
app lives here" and a deleted one is not shown after it is gone.
"""

from __future__ import annotations

import asyncio
import dataclasses

from backend.context import Context
from supervisor.routes import SERVING_STATES, Route, load_route

_MAX = 4096
LOOKUPS = 4  # database reads for unknown subdomains at once (each one a thread)


class PendingStates:
    def __init__(self) -> None:
        self._noted: dict[str, tuple[Route, Route]] = {}  # subdomain -> (published, shown)
        self._lookups = asyncio.Semaphore(LOOKUPS)

    async def unpublished(self, ctx: Context, subdomain: str) -> Route | None:
        """The route of an app the table does not hold yet (None when it has no row): never
        serving, since only the table's routes are forwarded. One that is already running
        in the database but not yet published is shown as starting (its oven page), so the
        moment between the app's start and the table's publish is not a "No app lives
        here"."""
        async with self._lookups:
            found = await asyncio.to_thread(load_route, ctx, subdomain)
        if found is None:
            return None
        state = "starting" if found.state in SERVING_STATES else found.state
        return dataclasses.replace(found, state=state, address=None, addresses=())

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
