"""Security headers on what the proxy answers, decided per response (docs/security.md).

Three kinds of response, told apart by Host and path when the response is prepared
(aiohttp's `on_response_prepare` signal, so streamed and forwarded responses get them too):

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

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from supervisor.proxy.server import Proxy

RESERVED_PREFIX = "/__stcloud/"
DASHBOARD, OURS, APP = "dashboard", "ours", "app"
DASHBOARD_HOST, APP_HOST = "dashboard", "app"  # Proxy.classify's kinds (server.py)
HSTS = "max-age=31536000"
BASE = {"X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "strict-origin-when-cross-origin"}
NO_FOREIGN_FRAMES = {"X-Frame-Options": "SAMEORIGIN",
                     "Content-Security-Policy": "frame-ancestors 'self'"}


def response_kind(proxy: Proxy, request: web.BaseRequest) -> str:
    """DASHBOARD, OURS or APP for the response to `request` (see the module docstring)."""
    kind, name = proxy.classify(request.headers.get("Host", ""))
    if kind == DASHBOARD_HOST:
        return DASHBOARD
    if kind != APP_HOST or request.path.startswith(RESERVED_PREFIX):
        return OURS
    route = proxy.routes.get(name)
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


def install(app: web.Application, proxy: Proxy) -> None:
    """Add the headers to every response of the proxy application `app`."""
    https = proxy.settings.scheme == "https"

    async def on_prepare(request: web.BaseRequest, response: web.StreamResponse) -> None:
        if response.status == 101:
            return
        for name, value in headers_for(response_kind(proxy, request), request.path,
                                       https).items():
            response.headers.setdefault(name, value)

    app.on_response_prepare.append(on_prepare)
