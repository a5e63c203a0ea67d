"""What the proxy does with a backend context: identity, sign-in, our endpoints on app
hosts and view events. Without a context (unit tests of forwarding) there is none of it
(see `server.py`)."""

from __future__ import annotations

from backend.analytics.views import ViewRecorder
from backend.context import Context
from backend.platform.settings import Settings
from supervisor.proxy.access import Access
from supervisor.proxy.endpoints import AppEndpoints
from supervisor.proxy.oidc import OidcProvider
from supervisor.proxy.pending import PendingStates
from supervisor.proxy.signin import SignIn
from supervisor.routes import RouteTable


class Services:
    """The backend-backed parts of one proxy application."""

    def __init__(self, settings: Settings, routes: RouteTable, ctx: Context) -> None:
        self.access = Access(ctx)
        self.signin = SignIn(settings, routes, self.access)
        self.oidc = OidcProvider(settings, self.signin)  # /oidc/ on the dashboard host
        self.views = ViewRecorder(ctx)
        self.pending = PendingStates()
        self.endpoints = AppEndpoints(settings, routes, self.access, self.signin, self.pending)
