"""The reverse proxy: one public port, routing by Host to the dashboard, the API and apps.

The supervisor calls `start_proxy(settings, routes, api=..., ctx=ctx)` and later
`await runner.cleanup()`. The proxy reads the route table (`supervisor/routes.py`) and
never decides lifecycle. Modules: `server` (routing, the dashboard host, lifecycle),
`apphost` (app hosts: access, our pages, reserved paths, the panel), `forward` (HTTP and
websocket relaying), `inject` (the overlay in app pages; `assets/`), `cookies` (cookie
isolation), `access` (who is visiting, cached), `signin` (identity on app hosts),
`endpoints` (`/__stcloud/` endpoints of app hosts), `pages` and `state_pages` (our HTML),
`tokens` (one-time sign-in tokens in the database), `standalone` (`python -m supervisor
proxy`: a proxy process of its own, routes from the database; docs/scale-out.md).
"""

from supervisor.proxy.server import make_proxy_app, start_proxy

__all__ = ["make_proxy_app", "start_proxy"]
