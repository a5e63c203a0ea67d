"""`/apps/{app_id}/git-credential`: how the supervisor authenticates to the app's private
repository on any git host (`backend.repositories.credentials`), for its developers. The
secret half is never returned.

    GET    → {"kind": "deploy_key" | "token" | "", "username", "public_key"}
    PUT    {"git_token": "…", "git_username": "oauth2"}  (an https repository)
           or {"deploy_key": true}: a new key pair; add "public_key" of the answer to the
           repository as a read-only deploy key, then reboot the app → the same shape
    DELETE → {"kind": ""}

`POST /apps` takes the same fields (`apps.credential_from`).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from backend.context import Context
from backend.errors import ValidationError
from backend.repositories import credentials
from backend.repositories.credentials import GitCredential
from supervisor.api.support import ApiError, json_body, ok, path_int
from supervisor.api.v1.endpoint import Endpoint, call, user_of

FIELDS = {"git_token", "git_username", "deploy_key"}


def credential_from(body: dict[str, Any], subdomain: str = "") -> GitCredential | None:
    """The credential a request body names (None when none); ApiError when malformed."""
    token, username, key = (body.get("git_token"), body.get("git_username", ""),
                            body.get("deploy_key", False))
    if not isinstance(key, bool):
        raise ApiError(422, "invalid", "deploy_key is true or false.", field="deploy_key")
    for name, value in (("git_token", token), ("git_username", username)):
        if value is not None and not isinstance(value, str):
            raise ApiError(422, "invalid", f"{name} is a string.", field=name)
    if key and token:
        raise ApiError(422, "invalid", "Send either git_token or deploy_key, not both.",
                       field="deploy_key")
    if key:
        return credentials.new_deploy_key(subdomain)
    if token is not None:
        try:
            return credentials.access_token(token, username or "")
        except ValidationError as e:
            raise ApiError(422, "invalid", str(e), field=e.field) from None
    return None


async def get_credential(ctx: Context, request: web.Request) -> web.Response:
    return ok(await call(credentials.describe, ctx, user_of(request),
                         path_int(request, "app_id")))


async def put_credential(ctx: Context, request: web.Request) -> web.Response:
    app_id = path_int(request, "app_id")
    body = await json_body(request)
    unknown = set(body) - FIELDS
    if unknown:
        raise ApiError(422, "invalid", f"Unknown field {min(unknown)}; send git_token "
                       "(and git_username) or deploy_key.", field=min(unknown))
    credential = credential_from(body, f"app-{app_id}")
    if credential is None:
        raise ApiError(422, "invalid", "Send git_token (and git_username) or "
                       "\"deploy_key\": true.", field="git_token")
    return ok(await call(credentials.set_credential, ctx, user_of(request), app_id,
                         credential))


async def delete_credential(ctx: Context, request: web.Request) -> web.Response:
    return ok(await call(credentials.set_credential, ctx, user_of(request),
                         path_int(request, "app_id"), None))


ENDPOINTS = [
    Endpoint("GET", "/apps/{app_id}/git-credential", get_credential, "read",
             "How the app's private repository is read (no secret)"),
    Endpoint("PUT", "/apps/{app_id}/git-credential", put_credential, "deploy",
             "Set the app's access token or make it a new deploy key", "json"),
    Endpoint("DELETE", "/apps/{app_id}/git-credential", delete_credential, "deploy",
             "Remove the app's repository credential"),
]
