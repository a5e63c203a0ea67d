"""The OpenID Connect provider's endpoints, on the dashboard host (the platform's main
domain), so `st.login()` in any hosted app signs the viewer in with their platform account.

    GET  /.well-known/openid-configuration   discovery document
    GET  /oidc/jwks                          public signing keys (the newest two)
    GET  /oidc/authorize                     authorization-code flow, PKCE S256 required
    POST /oidc/token                         code → ID token + access token
    GET  /oidc/userinfo  (or POST)           the viewer's claims, for a Bearer access token

Authorize (in the browser): the client (an app's, `oidc_clients.py`) and its exact
redirect URI are checked first; when either is wrong the answer is our error page, never
a redirect (no open redirect). Other errors go back to the redirect URI with `error` and
the client's `state`. The viewer is whoever the dashboard's sign-in cookie names: a
signed-in viewer gets a code at once (no second prompt, whatever `prompt` says but
`none` with nobody signed in: `login_required`); an anonymous one is sent to the
dashboard's sign-in form and back here, through the same return cookie as the sign-in of
app hosts (`supervisor/proxy/signin.py`), which also explains the one-hop page: the
dashboard's cookie is SameSite=Strict and the redirect from an app host is cross-site.
A private app's code goes only to a viewer who may open it.

Token (server to server, from the app's process): client authentication by HTTP Basic
(`client_secret_basic`, Authlib's default) or form fields (`client_secret_post`); the
code must be this client's, for this redirect URI, with the verifier of its challenge,
unused and unexpired (`oidc_tokens.py`). This endpoint takes no cookie and acts for no
browser, so it has no CSRF check: the client secret is its credential.

The issuer is the public URL of the dashboard host. The token, userinfo and JWKS URLs of
the discovery document use the origin the document was asked for on (the dashboard's
domain or an IP literal of this proxy: nothing else reaches this code), so an app whose
sandbox reaches the platform at another address than browsers do uses that one.
"""

from __future__ import annotations

import asyncio
import base64
from typing import Any
from urllib.parse import unquote, urlencode

from aiohttp import web

from backend.accounts import identity, oidc_clients, oidc_keys, oidc_tokens
from backend.accounts.oidc_clients import Client
from backend.platform.settings import Settings
from models import App, User, id_of
from supervisor.proxy import pages, state_pages
from supervisor.proxy.access import TTLCache
from supervisor.proxy.signin import NO_STORE, RETURN_TTL, SignIn, hop_page, redirect

DISCOVERY_PATH = "/.well-known/openid-configuration"
PREFIX = "/oidc/"
# (method, path) of every endpoint here; tests/integration/test_security.py audits the POSTs.
ENDPOINTS = frozenset({("GET", DISCOVERY_PATH), ("GET", "/oidc/jwks"),
                       ("GET", "/oidc/authorize"), ("POST", "/oidc/token"),
                       ("GET", "/oidc/userinfo"), ("POST", "/oidc/userinfo")})
SCOPES = ("openid", "profile", "email")
CLAIMS = ("sub", "iss", "aud", "exp", "iat", "auth_time", "nonce", "name",
          "preferred_username", "email", "email_verified", "role")
MAX_FORM = 16 * 1024
USER_HEADER, EMAIL_HEADER = "X-Forwarded-User", "X-Forwarded-Email"


def is_oidc_path(path: str) -> bool:
    return path == DISCOVERY_PATH or path.startswith(PREFIX)


def oauth_error(error: str, description: str, status: int = 400) -> web.Response:
    headers = {**NO_STORE, "Pragma": "no-cache"}
    if status == 401:
        headers["WWW-Authenticate"] = 'Basic realm="oidc"'
    return web.json_response({"error": error, "error_description": description},
                             status=status, headers=headers)


class OidcProvider:
    def __init__(self, settings: Settings, signin: SignIn) -> None:
        self.settings = settings
        self.signin = signin
        self.access = signin.access
        self.ctx = signin.access.ctx
        self._headers_on = TTLCache()  # app id -> identity headers turned on

    @property
    def issuer(self) -> str:
        return self.settings.public_url()

    async def handle(self, request: web.Request, path: str) -> web.StreamResponse:
        if (request.method, path) not in ENDPOINTS:
            known = {p for _, p in ENDPOINTS}
            if path in known:
                return pages.json_response({"error": "method_not_allowed"}, 405)
            return pages.json_response({"error": "not_found"}, 404)
        if path == DISCOVERY_PATH:
            return self.discovery(request)
        if path == "/oidc/jwks":
            keys = await asyncio.to_thread(oidc_keys.jwks, self.ctx)
            return web.json_response(keys, headers={"Cache-Control": "max-age=300"})
        if path == "/oidc/authorize":
            return await self.authorize(request)
        if path == "/oidc/token":
            return await self.token(request)
        return await self.userinfo(request)

    # Identity headers ----------------------------------------------------------------------
    async def identity_headers(self, app_id: int, user: User | None) -> dict[str, str]:
        """`X-Forwarded-User` (username) and `X-Forwarded-Email` of a signed-in viewer, for
        an app that turned them on (the setting is cached a few seconds); {} otherwise.
        Clients' own copies are dropped from every request (`upstream.IDENTITY_HEADERS`)."""
        if user is None:
            return {}
        found, on = self._headers_on.get(app_id)
        if not found:
            on = await asyncio.to_thread(oidc_clients.identity_headers_on, self.ctx, app_id)
            self._headers_on.put(app_id, on)
        if not on:
            return {}
        out = {USER_HEADER: user.username}
        if user.email and user.email.isprintable():
            out[EMAIL_HEADER] = user.email
        return out

    # Discovery ---------------------------------------------------------------------------
    def discovery(self, request: web.Request) -> web.Response:
        server = f"{self.settings.scheme}://{request.host}"
        doc = {
            "issuer": self.issuer,
            "authorization_endpoint": self.issuer + "/oidc/authorize",
            "token_endpoint": server + "/oidc/token",
            "userinfo_endpoint": server + "/oidc/userinfo",
            "jwks_uri": server + "/oidc/jwks",
            "response_types_supported": ["code"],
            "grant_types_supported": ["authorization_code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": [oidc_keys.ALGORITHM],
            "scopes_supported": list(SCOPES),
            "claims_supported": list(CLAIMS),
            "token_endpoint_auth_methods_supported": ["client_secret_basic",
                                                      "client_secret_post"],
            "code_challenge_methods_supported": ["S256"],
        }
        return web.json_response(doc, headers={"Cache-Control": "max-age=300"})

    # Authorize ---------------------------------------------------------------------------
    def _refuse(self, message: str) -> web.Response:
        return state_pages.problem_page(self.settings, "This sign-in request is not valid",
                                        message)

    async def authorize(self, request: web.Request) -> web.Response:
        q = request.query
        found = await asyncio.to_thread(oidc_clients.find, self.ctx, q.get("client_id", ""))
        if found is None:
            return self._refuse("No app has this client id. Open the app again and sign in "
                                "from there.")
        client, app = found
        expected = oidc_clients.redirect_uri(self.settings, app.subdomain)
        if q.get("redirect_uri") != expected:
            return self._refuse(f"The app asked to return to an address that is not its own "
                                f"(it must be {expected}). If the app's subdomain changed, "
                                "reboot the app; if its secrets set [auth] redirect_uri, "
                                "correct it.")
        state = q.get("state", "")

        def back(**params: str) -> web.Response:
            if state:
                params["state"] = state
            return redirect(expected + "?" + urlencode(params))

        if q.get("response_type") != "code":
            return back(error="unsupported_response_type",
                        error_description="Only response_type=code is supported.")
        if "openid" not in q.get("scope", "").split():
            return back(error="invalid_scope", error_description="The scope needs openid.")
        challenge = q.get("code_challenge", "")
        if q.get("code_challenge_method") != "S256" or not 43 <= len(challenge) <= 128:
            return back(error="invalid_request",
                        error_description="PKCE with code_challenge_method=S256 is required.")
        username = identity.dashboard_username(
            self.signin.dashboard_key, request.cookies.get(identity.DASHBOARD_COOKIE))
        user = await self.access.user_by_name(username) if username else None
        if user is None:
            return self._sign_in_first(request, app, back)
        if not await self.access.can_view(user, id_of(app)):
            return back(error="access_denied",
                        error_description="You don't have access to this app.")
        code = await asyncio.to_thread(
            oidc_tokens.issue_code, self.ctx, client_id=client.client_id,
            user_id=id_of(user), redirect_uri=expected, code_challenge=challenge,
            nonce=q.get("nonce", ""), scope=q.get("scope", ""))
        return back(code=code, iss=self.issuer)

    def _sign_in_first(self, request: web.Request, app: App, back: Any) -> web.Response:
        if request.query.get("hop") != "1" and \
                request.headers.get("Sec-Fetch-Site") == "cross-site":
            return hop_page(request, "/oidc/authorize")
        if request.query.get("prompt") == "none":
            answer: web.Response = back(error="login_required",
                                        error_description="Nobody is signed in.")
            return answer
        query = {k: v for k, v in request.query.items() if k != "hop"}
        target = "/oidc/authorize?" + urlencode(query)
        ret = identity.sign(self.signin.key, "return", {"u": target}, RETURN_TTL)
        return redirect(self.signin.dashboard_url("/?" + urlencode(
            {"signin_for": app.subdomain})), set_cookies=(
            self.signin.cookie(identity.RETURN_COOKIE, ret, RETURN_TTL),))

    # Token -------------------------------------------------------------------------------
    async def _client_of(self, request: web.Request, form: dict[str, str]
                         ) -> tuple[Client, App] | None:
        auth = request.headers.get("Authorization", "")
        if auth[:6].lower() == "basic ":
            try:
                raw = base64.b64decode(auth[6:].strip(), validate=True).decode()
            except (ValueError, UnicodeDecodeError):
                return None
            cid, _, secret = raw.partition(":")
            cid, secret = unquote(cid), unquote(secret)
        else:
            cid, secret = form.get("client_id", ""), form.get("client_secret", "")
        found = await asyncio.to_thread(oidc_clients.find, self.ctx, cid)
        if found is None or not oidc_clients.secret_matches(found[0], secret):
            return None
        return found

    async def token(self, request: web.Request) -> web.Response:
        if request.content_length is not None and request.content_length > MAX_FORM:
            return oauth_error("invalid_request", "The request is too large.", 413)
        form = {k: v for k, v in (await request.post()).items() if isinstance(v, str)}
        found = await self._client_of(request, form)
        if found is None:
            return oauth_error("invalid_client", "Unknown client or wrong client secret.", 401)
        client, app = found
        if form.get("grant_type") != "authorization_code":
            return oauth_error("unsupported_grant_type", "Only authorization_code is "
                               "supported.")
        grant = await asyncio.to_thread(
            oidc_tokens.redeem_code, self.ctx, code=form.get("code", ""),
            client_id=client.client_id, redirect_uri=form.get("redirect_uri", ""),
            verifier=form.get("code_verifier", ""))
        if grant is None:
            return oauth_error("invalid_grant", "The code is unknown, used, expired, not "
                               "this client's or this redirect URI's, or the PKCE verifier "
                               "does not match.")
        user = await self.access.user(grant.user_id)
        if user is None:
            return oauth_error("invalid_grant", "The account no longer exists.")
        body = await asyncio.to_thread(oidc_tokens.token_response, self.ctx,
                                       issuer=self.issuer, client_id=client.client_id,
                                       user=user, app=app, grant=grant)
        return web.json_response(body, headers={**NO_STORE, "Pragma": "no-cache"})

    # Userinfo ----------------------------------------------------------------------------
    async def userinfo(self, request: web.Request) -> web.Response:
        auth = request.headers.get("Authorization", "")
        token = auth[7:].strip() if auth[:7].lower() == "bearer " else ""
        data = await asyncio.to_thread(oidc_tokens.read_access_token, self.ctx, token,
                                       self.issuer) if token else None
        if data is None:
            return web.json_response({"error": "invalid_token"}, status=401, headers={
                **NO_STORE, "WWW-Authenticate": 'Bearer error="invalid_token"'})
        user = await self.access.user(int(data["sub"]))
        found = await asyncio.to_thread(oidc_clients.find, self.ctx, str(data["aud"]))
        if user is None or found is None or id_of(found[1]) != data["app"]:
            return web.json_response({"error": "invalid_token"}, status=401, headers={
                **NO_STORE, "WWW-Authenticate": 'Bearer error="invalid_token"'})
        claims = await asyncio.to_thread(oidc_tokens.claims, self.ctx, user, found[1])
        return web.json_response(claims, headers=NO_STORE)
