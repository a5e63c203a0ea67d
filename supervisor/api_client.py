"""A small client of the REST API (`/api/v1`, `supervisor/api/v1/`) with a personal API
token, shared by the command line (`supervisor/cli.py`) and the MCP server
(`supervisor/mcp/`): both act only through the API, so a token's scopes, its owner's
workspace roles, the rate limit and the log masking are the API's, checked in one place."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from http.client import HTTPResponse
from typing import Any, cast
from urllib.parse import urlencode


class CliError(Exception):
    """A refusal or failure to show a person as is: `status` is the command line's exit
    status (1 the server refused, 2 usage or connection); `http_status` and `code` are the
    API's answer (None and "" when the server was not reached)."""

    def __init__(self, message: str, status: int = 1, http_status: int | None = None,
                 code: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.http_status = http_status
        self.code = code


class Client:
    """Calls `<url>/api/v1` with `Authorization: Bearer <token>`."""

    def __init__(self, url: str, token: str, timeout: float = 30) -> None:
        self.url = url.rstrip("/")
        self.base = self.url + "/api/v1"
        self.token = token
        self.timeout = timeout

    def open(self, method: str, path: str, body: bytes | None = None,
             content_type: str = "application/json", timeout: float | None = None
             ) -> HTTPResponse:
        req = urllib.request.Request(self.base + path, data=body, method=method, headers={
            "Authorization": f"Bearer {self.token}", "Accept": "application/json",
            **({"Content-Type": content_type} if body is not None else {})})
        try:
            # typeshed gives urlopen's result as Any; for http(s) URLs it is an HTTPResponse
            return cast(HTTPResponse, urllib.request.urlopen(req, timeout=timeout or self.timeout))
        except urllib.error.HTTPError as e:
            code = ""
            try:
                err = json.loads(e.read())["error"]
                code = str(err.get("code", ""))
                message = err["message"] + (f" (field: {err['field']})" if err.get("field")
                                            else "")
            except (ValueError, KeyError, TypeError):
                message = f"HTTP {e.code}"
            if e.code == 401:
                message += " Log in again with a valid token."
            raise CliError(f"{message} [{e.code}]", 1, e.code, code) from None
        except (urllib.error.URLError, OSError) as e:
            raise CliError(f"Cannot reach {self.base}: {getattr(e, 'reason', e)}", 2) from None

    def call(self, method: str, path: str, data: Any = None, raw: bytes | None = None,
             content_type: str = "application/json") -> Any:
        body = raw if raw is not None else (json.dumps(data).encode() if data is not None
                                            else None)
        with self.open(method, path, body, content_type) as resp:
            payload = resp.read()
        return json.loads(payload) if payload else None

    def all_apps(self) -> list[dict[str, Any]]:
        """Every app the token's user can see (all pages of `GET /apps`)."""
        apps: list[dict[str, Any]] = []
        cursor = None
        while True:
            query = {"limit": 200, **({"cursor": cursor} if cursor else {})}
            page = self.call("GET", "/apps?" + urlencode(query))
            apps += page["apps"]
            cursor = page["next_cursor"]
            if not cursor:
                return apps
