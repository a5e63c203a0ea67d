"""Security headers on what the proxy answers, decided per response (docs/security.md).

Three kinds of response, told apart by Host and path. `middleware(...)` decides when the
request comes in, before any handler runs (so the dispatch, the REST API and everything
they forward are covered); `apply` (aiohttp's `on_response_prepare` signal) sets the
decided headers when the response is prepared, so streamed and forwarded responses,
prepared inside a handler, get them too:

- `dashboard`: everything on the dashboard host (the dashboard, the REST API, sign-in).
- `ours`: our pages and endpoints on app hosts (`/__stcloud/...`: sign-in, overlay files,
  the Manage app panel), on unknown hosts, and the pages we show instead of an app that is
  not serving (oven, sleeping, over its limit, crashed).
- `app`: responses of a serving hosted app, forwarded. Left as the app sent them: apps
  may be embedded in other sites (`?embed=true`) and choose their own headers.

What each gets:

| header                         | dashboard | ours          | app |
|--------------------------------|-----------|---------------|-----|
| X-Content-Type-Options nosniff | yes       | yes           | no  |
| Referrer-Policy                | yes       | yes           | no  |
| X-Frame-Options SAMEORIGIN and CSP `frame-ancestors 'self'` | yes | `/__stcloud/` only | no |
| Strict-Transport-Security      | https     | https         | https |

`SAMEORIGIN`, not `DENY`: Streamlit renders components (streamlit-authenticator's cookie
manager) in iframes of its own origin, and the overlay frames the panel
(`/__stcloud/panel/`) on the app's own host. The state pages at an app's own paths may be
framed, so an embedded app shows its sleeping or oven page where the app would be.
`Strict-Transport-Security` is sent only when the public URL is https (`settings.scheme`),
without `includeSubDomains` (other names under the domain are not ours to pin).
A header the upstream already set (a Content-Security-Policy of the dashboard, say) is
kept. WebSocket upgrades (101) get nothing.
"""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from supervisor.proxy import hosts
from supervisor.proxy.hosts import RESERVED_PREFIX, HostClassifier
from supervisor.routes import Route

DASHBOARD, OURS, APP = "dashboard", "ours", "app"
HSTS = "max-age=31536000"
BASE = {"X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "strict-origin-when-cross-origin"}
NO_FOREIGN_FRAMES = {"X-Frame-Options": "SAMEORIGIN",
                     "Content-Security-Policy": "frame-ancestors 'self'"}
HEADERS_KEY = web.RequestKey("security_headers", dict)


def response_kind(host_kind: str, name: str, path: str,
                  route_of: Callable[[str], Route | None]) -> str:
    """DASHBOARD, OURS or APP for a response on a host of `host_kind` (see the module
    docstring)."""
    if host_kind == hosts.DASHBOARD:
        return DASHBOARD
    if host_kind != hosts.APP or path.startswith(RESERVED_PREFIX):
        return OURS
    route = route_of(name)
    return APP if route is not None and route.serving else OURS


def headers_for(kind: str, path: str, https: bool) -> dict[str, str]:
    """The headers a response of `kind` at `path` gets."""
    out: dict[str, str] = {}
    if kind != APP:
        out.update(BASE)
        if kind == DASHBOARD or path.startswith(RESERVED_PREFIX):
            out.update(NO_FOREIGN_FRAMES)
    if https:
        out["Strict-Transport-Security"] = HSTS
    return out


def middleware(classifier: HostClassifier, route_of: Callable[[str], Route | None], *,
               https: bool) -> Middleware:
    """The middleware deciding each request's headers; it must come before the dispatch.
    `route_of(subdomain)` is the route the proxy acts on."""

    @web.middleware
    async def security_headers(request: web.Request, handler: Handler) -> web.StreamResponse:
        host_kind, name = classifier.classify(request.headers.get("Host", ""))
        kind = response_kind(host_kind, name, request.path, route_of)
        request[HEADERS_KEY] = headers_for(kind, request.path, https)
        return await handler(request)

    return security_headers


async def apply(request: web.BaseRequest, response: web.StreamResponse) -> None:
    """`on_response_prepare`: set the decided headers unless the upstream set them."""
    if response.status == 101:
        return
    for name, value in request.get(HEADERS_KEY, {}).items():
        response.headers.setdefault(name, value)
