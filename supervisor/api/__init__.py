"""The supervisor's HTTP API, mounted by the proxy under `/api/v1` on the dashboard host:
`app` (the sub-application: webhooks, health, OpenAPI), `v1/` (the token-authenticated REST
API, one module per resource), `support` (errors, JSON, rate limit, parsing), `openapi`
(the document)."""

from supervisor.api.app import OPENAPI_KEY, make_api_app

__all__ = ["OPENAPI_KEY", "make_api_app"]
