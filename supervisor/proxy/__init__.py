"""The reverse proxy: one public port, routing by Host to the dashboard, the API and apps.

The supervisor calls `start_proxy(settings, routes, api=..., ctx=ctx)` and later
`await runner.cleanup()`. The proxy reads the route table (`supervisor/routes.py`) and
never decides lifecycle. Modules: `server` (the dispatch by Host, the dashboard host,
lifecycle), `hosts` (which host a request is for), `apphost` (app hosts: access, our pages,
reserved paths, the panel), `forward` (the `Forwarder`: HTTP relaying over one shared
session), `websocket` (websocket relaying), `upstream` (headers, URL and errors of a
forwarded request), `security_headers` (a middleware), `inject` (the overlay in app pages;
`assets/`), `cookies` (cookie isolation), `access` (who is visiting, cached), `signin`
(identity on app hosts), `endpoints` (`/__stcloud/` endpoints of app hosts), `services`
(what needs the backend context), `pending` (a state our endpoints just recorded, shown
until the reconciler republishes), `pages` and `state_pages` (our HTML), `standalone`
(`python -m supervisor proxy`: a proxy process of its own, routes from the database;
docs/scale-out.md). Data comes only through backend/ (`backend.read_model`,
`backend.signin_tokens` and the services).
"""

from supervisor.proxy.server import make_proxy_app, start_proxy

__all__ = ["make_proxy_app", "start_proxy"]
