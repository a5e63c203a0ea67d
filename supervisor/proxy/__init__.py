"""The reverse proxy: one public port, routing by Host to the dashboard, the API and apps.

The supervisor calls `start_proxy(settings, routes, api=...)` and later
`await runner.cleanup()`. The proxy reads the route table (`supervisor/routes.py`) and
never decides lifecycle. Modules: `server` (routing, reserved paths, lifecycle),
`forward` (HTTP and websocket relaying), `pages` (our own HTML pages).
"""

from supervisor.proxy.server import make_proxy_app, start_proxy

__all__ = ["make_proxy_app", "start_proxy"]
