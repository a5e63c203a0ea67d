"""The route table (like JupyterHub's Proxy contract): subdomain -> (state, address).

Written by the supervisor (the reconciler publishes every app after each pass and after
each transition), read by the proxy. The proxy never decides lifecycle from it: it
forwards to `address` when the state is `running`, and shows one of our own pages
otherwise. In one process this is a dict; the scale-out issue backs it with the database.
"""

from __future__ import annotations

from dataclasses import dataclass

SERVING_STATES = frozenset({"running"})
OVEN_STATES = frozenset({"queued", "building", "starting"})


@dataclass(frozen=True)
class Route:
    app_id: int
    subdomain: str
    state: str
    address: tuple[str, int] | None  # set when an instance is serving
    reason: str = ""  # the last transition's reason, for our pages
    visibility: str = "public"
    workspace_id: int = 0

    @property
    def serving(self) -> bool:
        return self.state in SERVING_STATES and self.address is not None


class RouteTable:
    def __init__(self) -> None:
        self._routes: dict[str, Route] = {}
        self.dashboard_address: tuple[str, int] | None = None
        # The Manage app panel's Streamlit process (served under /__stcloud/panel/).
        self.panel_address: tuple[str, int] | None = None

    def get(self, subdomain: str) -> Route | None:
        return self._routes.get(subdomain)

    def set(self, route: Route) -> None:
        self._routes[route.subdomain] = route

    def remove(self, subdomain: str) -> None:
        self._routes.pop(subdomain, None)

    def replace_all(self, routes: list[Route]) -> None:
        self._routes = {r.subdomain: r for r in routes}

    def all(self) -> list[Route]:
        return list(self._routes.values())
