"""A visit that wakes a sleeping app by itself, when the app's sleep policy says so
(`wake_on_visit`, `backend.apps.sleep_policy`): the page visit wakes the app as the
sleeping page's button would, and the visitor sees the oven until the app serves, then the
app. Apps whose policy does not say so keep the sleeping page and its "Yes, get this app
back up!" button (`state_pages.sleeping_page`).

Only page visits (GET or HEAD of HTML) wake an app: its assets and websocket reconnects
of old tabs do not. Once woken, the proxy shows the app as starting (`PendingStates`), so
further visits see the oven without asking the database again.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from backend.apps import service as app_service
from backend.apps import sleep_settings
from backend.errors import NotFound
from backend.platform.settings import Settings
from supervisor.proxy import pages
from supervisor.proxy.access import Visitor
from supervisor.proxy.services import Services
from supervisor.routes import Route


async def wake_on_visit(svc: Services, settings: Settings, request: web.Request,
                        route: Route, visitor: Visitor) -> web.Response | None:
    """The oven page after waking the sleeping app of `route`, when its policy wakes it
    on a visit; None when the sleeping page should be shown instead."""
    if request.method not in ("GET", "HEAD"):
        return None
    ctx = svc.access.ctx
    if not await asyncio.to_thread(sleep_settings.wakes_on_visit, ctx, route.app_id):
        return None
    try:
        state = await asyncio.to_thread(app_service.wake_app, ctx, visitor.user,
                                        route.app_id)
    except NotFound:  # e.g. an invited viewer of a private app: the page says what to do
        return None
    svc.endpoints.mirror(route, state, "Waking up")
    return pages.oven_page(svc.pending.shown(route) or route, settings)
