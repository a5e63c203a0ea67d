"""A GitHub REST API stand-in for tests: an aiohttp app on 127.0.0.1 that answers the calls
PyGithub makes for backend/github*.py, so the tests run the real PyGithub code path with
`base_url=fake.base_url` and no network.

Endpoints: `GET /user`, `/user/orgs`, `/user/repos` (paginated with Link headers),
`/repos/{o}/{r}` (301 to `/repositories/{id}` after a rename, as GitHub does),
`/repositories/{id}`, `collaborators/{u}/permission`, `branches`, `branches/{b}`,
`git/trees/{sha}?recursive=1`, `keys` (create, get, delete), `hooks` (create, get, delete),
`/meta` (the SSH host keys), `POST /login/oauth/access_token`. Every answer carries
`X-RateLimit-*` headers and, for classic tokens, `X-OAuth-Scopes`.

Switches: `rate_limit(reset, status=403|429)` answers every call with an exhausted rate
limit; `revoke(token)` answers 401 Bad credentials; `failing = 502` answers every call with
that status; `delete_repo` / `rename_repo` / `set_permission`. Repositories may be backed
by a bare git repository (`git_dir`): their branches and trees are read from it, and
creating a deploy key writes `authorized_keys` for the test's sshd: each key may only run
`git-upload-pack` on its own repository.
`deliver_push` posts a signed push event to every webhook of a repository, like GitHub.
The server runs on its own event loop in a thread; `requests` records every call.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import json
import shlex
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

ORG_SCOPES = "repo, admin:repo_hook, read:org"
PERMS = ("pull", "triage", "push", "maintain", "admin")
TOKEN_KEY = web.RequestKey("token", object)
_API_PERMISSION = {"admin": "admin", "maintain": "write", "push": "write", "triage": "read",
                   "pull": "read"}


@dataclass
class FakeToken:
    login: str
    scopes: str | None  # None: a fine-grained token (no X-OAuth-Scopes header)
    revoked: bool = False


@dataclass
class FakeRepo:
    id: int
    owner: str
    name: str
    private: bool = False
    default_branch: str = "main"
    description: str = ""
    files: list[str] = field(default_factory=list)  # when not backed by git
    branches: dict[str, str] = field(default_factory=dict)  # name -> commit sha
    permissions: dict[str, str] = field(default_factory=dict)  # login -> pull..admin
    keys: dict[int, dict[str, Any]] = field(default_factory=dict)
    hooks: dict[int, dict[str, Any]] = field(default_factory=dict)
    git_dir: Path | None = None

    @property
    def full_name(self) -> str:
        return f"{self.owner}/{self.name}"


def _not_found() -> web.Response:
    return web.json_response({"message": "Not Found",
                              "documentation_url": "https://docs.github.com/rest"}, status=404)


class FakeGithub:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.tokens: dict[str, FakeToken] = {}
        self.users: dict[str, dict[str, Any]] = {}  # login -> {"id", "orgs": [...]}
        self.orgs: set[str] = set()
        self.repos: dict[int, FakeRepo] = {}
        self.moved: dict[str, int] = {}  # old full name (lower) -> repo id
        self.oauth_codes: dict[str, str] = {}  # code -> token
        self.client_id, self.client_secret = "fake-client-id", "fake-client-secret"
        self.requests: list[tuple[str, str]] = []
        self.limited: tuple[int, int] | None = None  # (status, reset epoch)
        self.failing: int | None = None  # answer every call with this 5xx status
        self.ssh_host_keys: list[str] = []
        self.ssh_user, self.ssh_port = "git", 22
        self.authorized_keys = root / "authorized_keys"
        self.serve_script = root / "serve-git.sh"
        self._ids = itertools.count(1000)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runners: list[web.AppRunner] = []
        self.port = 0
        root.mkdir(parents=True, exist_ok=True)

    # Set-up --------------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def add_user(self, login: str, token: str, scopes: str | None = ORG_SCOPES,
                 orgs: tuple[str, ...] = ()) -> None:
        uid = self.users[login]["id"] if login in self.users else next(self._ids)
        self.users[login] = {"id": uid, "orgs": list(orgs)}
        self.orgs |= set(orgs)
        self.tokens[token] = FakeToken(login, scopes)

    def add_repo(self, owner: str, name: str, *, private: bool = False,
                 files: list[str] | None = None, branches: dict[str, str] | None = None,
                 permissions: dict[str, str] | None = None, git_dir: Path | None = None,
                 default_branch: str = "main", description: str = "") -> FakeRepo:
        repo = FakeRepo(id=next(self._ids), owner=owner, name=name, private=private,
                        files=list(files or []), description=description,
                        branches=dict(branches or {default_branch: "0" * 40}),
                        permissions=dict(permissions or {}), git_dir=git_dir,
                        default_branch=default_branch)
        if owner in self.users:
            repo.permissions.setdefault(owner, "admin")
        self.repos[repo.id] = repo
        return repo

    def find(self, full_name: str) -> FakeRepo | None:
        for repo in self.repos.values():
            if repo.full_name.lower() == full_name.lower():
                return repo
        return None

    def rename_repo(self, full_name: str, new_owner: str, new_name: str) -> FakeRepo:
        repo = self.find(full_name)
        assert repo is not None
        self.moved[full_name.lower()] = repo.id
        repo.owner, repo.name = new_owner, new_name
        return repo

    def delete_repo(self, full_name: str) -> None:
        repo = self.find(full_name)
        assert repo is not None
        del self.repos[repo.id]
        self._write_authorized_keys()

    def set_permission(self, full_name: str, login: str, permission: str | None) -> None:
        repo = self.find(full_name)
        assert repo is not None
        if permission is None:
            repo.permissions.pop(login, None)
        else:
            repo.permissions[login] = permission

    def rate_limit(self, reset: int | None, status: int = 403) -> None:
        """Answer every call as rate limited until `reset` (epoch seconds); None: stop."""
        self.limited = None if reset is None else (status, reset)

    def revoke(self, token: str) -> None:
        self.tokens[token].revoked = True

    def new_oauth_code(self, token: str) -> str:
        code = f"code-{next(self._ids)}"
        self.oauth_codes[code] = token
        return code

    def calls(self, prefix: str = "") -> list[tuple[str, str]]:
        return [c for c in self.requests if c[1].startswith(prefix)]

    # Server -----------------------------------------------------------------------------------
    def start(self) -> FakeGithub:
        ready = threading.Event()

        def run() -> None:
            self._loop = asyncio.new_event_loop()
            asyncio.set_event_loop(self._loop)
            self.port = self._loop.run_until_complete(self._serve(self._app(), 0))
            ready.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, name="fake-github", daemon=True)
        self._thread.start()
        ready.wait(10)
        return self

    def run(self, coro: Any, timeout: float = 30) -> Any:
        """Run a coroutine on the server's loop and wait for its result."""
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def serve_app(self, app: web.Application, port: int) -> None:
        """Serve another aiohttp app on the same loop (e.g. our API, for webhooks)."""
        self.run(self._serve(app, port))

    async def _serve(self, app: web.Application, port: int) -> int:
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", port)
        await site.start()
        self._runners.append(runner)
        return runner.addresses[0][1]

    def stop(self) -> None:
        if self._loop is None:
            return

        async def cleanup() -> None:
            for runner in self._runners:
                await runner.cleanup()

        self.run(cleanup())
        self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(10)

    # Webhooks ---------------------------------------------------------------------------------
    def deliver_push(self, full_name: str, branch: str) -> list[tuple[int, Any]]:
        """POST a signed push event to each webhook of the repository; (status, json) each."""
        repo = self.find(full_name)
        assert repo is not None
        body = json.dumps({"ref": f"refs/heads/{branch}", "after": repo.branches.get(branch),
                           "repository": self._repo_json(repo, repo.owner)}).encode()

        async def post_all() -> list[tuple[int, Any]]:
            out = []
            async with aiohttp.ClientSession() as http:
                for hook in repo.hooks.values():
                    sig = "sha256=" + hmac.new(hook["secret"].encode(), body,
                                               hashlib.sha256).hexdigest()
                    headers = {"X-GitHub-Event": "push", "X-Hub-Signature-256": sig,
                               "Content-Type": "application/json",
                               "X-GitHub-Delivery": str(next(self._ids))}
                    async with http.post(hook["config"]["url"], data=body,
                                         headers=headers) as resp:
                        out.append((resp.status, await resp.json(content_type=None)))
            return out

        return self.run(post_all())

    # HTTP -------------------------------------------------------------------------------------
    def _app(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware])
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        return app

    def _headers(self, token: FakeToken | None) -> dict[str, str]:
        h = {"X-RateLimit-Limit": "5000", "X-RateLimit-Remaining": "4990",
             "X-RateLimit-Reset": str(int(time.time()) + 3600), "X-RateLimit-Used": "10",
             "X-GitHub-Media-Type": "github.v3"}
        if token is not None and token.scopes is not None:
            h["X-OAuth-Scopes"] = token.scopes
        return h

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        self.requests.append((request.method, request.path_qs))
        auth = request.headers.get("Authorization", "")
        token = self.tokens.get(auth.split(" ", 1)[-1]) if auth else None
        if self.limited is not None:
            status, reset = self.limited
            headers = {**self._headers(token), "X-RateLimit-Remaining": "0",
                       "X-RateLimit-Reset": str(reset)}
            if status == 429:
                headers["Retry-After"] = str(max(1, reset - int(time.time())))
            return web.json_response({"message": "API rate limit exceeded for user ID 1.",
                                      "documentation_url": "https://docs.github.com/rest"},
                                     status=status, headers=headers)
        if self.failing is not None:
            return web.json_response({"message": "Server Error"}, status=self.failing)
        public = request.path in ("/meta", "/login/oauth/access_token")
        if not public and (token is None or token.revoked):
            return web.json_response({"message": "Bad credentials",
                                      "documentation_url": "https://docs.github.com/rest"},
                                     status=401)
        request[TOKEN_KEY] = token
        resp = await handler(request)
        for k, v in self._headers(token).items():
            resp.headers.setdefault(k, v)
        return resp

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        path, method = request.path.rstrip("/"), request.method
        token: FakeToken | None = request.get(TOKEN_KEY)  # type: ignore[assignment]
        login = token.login if token else ""
        if path == "/meta":
            return web.json_response({"ssh_keys": self.ssh_host_keys})
        if path == "/login/oauth/access_token" and method == "POST":
            return await self._oauth(request)
        if path == "/user":
            return web.json_response(self._user_json(login))
        if path == "/user/orgs":
            orgs = [{"login": o, "id": 1, "url": f"{self.base_url}/orgs/{o}"}
                    for o in self.users[login]["orgs"]]
            return self._page(request, orgs)
        if path == "/user/repos":
            repos = [self._repo_json(r, login) for r in self.repos.values()
                     if self._visible(r, token)]
            return self._page(request, repos)
        parts = path.split("/")
        if len(parts) >= 4 and parts[1] == "repos":
            full, rest = f"{parts[2]}/{parts[3]}", parts[4:]
            if full.lower() in self.moved and (self.find(full) is None):
                target = f"{self.base_url}/repositories/{self.moved[full.lower()]}"
                target += "".join("/" + p for p in rest)
                return web.json_response({"message": "Moved Permanently", "url": target},
                                         status=301, headers={"Location": target})
            repo = self.find(full)
        elif len(parts) >= 3 and parts[1] == "repositories" and parts[2].isdigit():
            repo, rest = self.repos.get(int(parts[2])), parts[3:]
        else:
            return _not_found()
        if repo is None or not self._visible(repo, token):
            return _not_found()
        return await self._repo_api(request, repo, rest, login, token)

    def _visible(self, repo: FakeRepo, token: FakeToken | None) -> bool:
        if token is None or token.login not in repo.permissions:
            return False
        scopes = token.scopes
        return not repo.private or scopes is None or "repo" in scopes.replace(" ", "").split(",")

    def _can(self, token: FakeToken | None, scope: str) -> bool:
        if token is None:
            return False
        if token.scopes is None:
            return True
        have = set(token.scopes.replace(" ", "").split(","))
        return "repo" in have or scope in have

    async def _repo_api(self, request: web.Request, repo: FakeRepo, rest: list[str],
                        login: str, token: FakeToken | None) -> web.StreamResponse:
        admin = repo.permissions.get(login) == "admin"
        if not rest:
            return web.json_response(self._repo_json(repo, login))
        if rest[0] == "collaborators" and len(rest) == 3 and rest[2] == "permission":
            perm = repo.permissions.get(rest[1])
            return web.json_response({"permission": _API_PERMISSION.get(perm or "", "none"),
                                      "role_name": perm or "none",
                                      "user": self._user_json(rest[1])})
        if rest[0] == "branches":
            if len(rest) == 1:
                return self._page(request, [self._branch_json(repo, b)
                                            for b in sorted(self._branches(repo))])
            name = "/".join(rest[1:])
            if name not in self._branches(repo):
                return web.json_response({"message": "Branch not found"}, status=404)
            return web.json_response(self._branch_json(repo, name))
        if rest[:2] == ["git", "trees"] and len(rest) >= 3:
            return web.json_response(self._tree_json(repo, "/".join(rest[2:])))
        if rest[0] in ("keys", "hooks"):
            scope = "repo" if rest[0] == "keys" else "admin:repo_hook"
            if not admin or not self._can(token, scope):
                return _not_found()
            return await self._keys_hooks(request, repo, rest)
        return _not_found()

    async def _keys_hooks(self, request: web.Request, repo: FakeRepo,
                          rest: list[str]) -> web.StreamResponse:
        store = repo.keys if rest[0] == "keys" else repo.hooks
        url = f"{self.base_url}/repos/{repo.full_name}/{rest[0]}"
        if len(rest) == 1 and request.method == "POST":
            data = await request.json()
            ident = next(self._ids)
            if rest[0] == "keys":
                key = str(data.get("key", ""))
                if not key.startswith("ssh-") or any(key.split()[:2] == k["key"].split()[:2]
                                                     for r in self.repos.values()
                                                     for k in r.keys.values()):
                    return web.json_response({"message": "Validation Failed", "errors": [
                        {"resource": "PublicKey", "code": "custom", "field": "key",
                         "message": "key is already in use"}]}, status=422)
                store[ident] = {"id": ident, "key": key, "title": data.get("title", ""),
                                "read_only": bool(data.get("read_only")), "verified": True,
                                "created_at": "2026-01-01T00:00:00Z", "url": f"{url}/{ident}"}
                self._write_authorized_keys()
            else:
                config = dict(data.get("config", {}))
                store[ident] = {"id": ident, "name": data.get("name", "web"),
                                "active": data.get("active", True),
                                "events": data.get("events", ["push"]),
                                "secret": config.pop("secret", ""), "config": config,
                                "type": "Repository", "url": f"{url}/{ident}",
                                "created_at": "2026-01-01T00:00:00Z",
                                "updated_at": "2026-01-01T00:00:00Z"}
            return web.json_response(self._public(store[ident]), status=201)
        if len(rest) == 2 and rest[1].isdigit() and int(rest[1]) in store:
            if request.method == "DELETE":
                del store[int(rest[1])]
                self._write_authorized_keys()
                return web.Response(status=204)
            return web.json_response(self._public(store[int(rest[1])]))
        return _not_found()

    @staticmethod
    def _public(item: dict[str, Any]) -> dict[str, Any]:
        out = {k: v for k, v in item.items() if k != "secret"}
        if "config" in out and item.get("secret"):
            out["config"] = {**out["config"], "secret": "********"}
        return out

    async def _oauth(self, request: web.Request) -> web.Response:
        data = await request.json()
        ok = (data.get("client_id"), data.get("client_secret")) == (self.client_id,
                                                                    self.client_secret)
        token = self.oauth_codes.pop(str(data.get("code")), None) if ok else None
        if token is None:
            return web.json_response({"error": "bad_verification_code",
                                      "error_description": "The code passed is incorrect or "
                                      "expired."})
        scopes = (self.tokens[token].scopes or "").replace(" ", "")
        return web.json_response({"access_token": token, "token_type": "bearer",
                                  "scope": scopes})

    def _page(self, request: web.Request, items: list[Any]) -> web.Response:
        per_page = int(request.query.get("per_page", "30"))
        page = int(request.query.get("page", "1"))
        last = max(1, -(-len(items) // per_page))
        chunk = items[(page - 1) * per_page:page * per_page]
        links = []

        def link(n: int, rel: str) -> str:
            query = {**request.query, "page": str(n), "per_page": str(per_page)}
            qs = "&".join(f"{k}={v}" for k, v in query.items())
            return f'<{self.base_url}{request.path}?{qs}>; rel="{rel}"'

        if page < last:
            links += [link(page + 1, "next"), link(last, "last")]
        if page > 1:
            links += [link(1, "first"), link(page - 1, "prev")]
        headers = {"Link": ", ".join(links)} if links else {}
        return web.json_response(chunk, headers=headers)

    # JSON -------------------------------------------------------------------------------------
    def _user_json(self, login: str) -> dict[str, Any]:
        uid = self.users.get(login, {}).get("id", 1)
        return {"login": login, "id": uid, "type": "User", "site_admin": False,
                "url": f"{self.base_url}/users/{login}", "name": login.title()}

    def ssh_url(self, repo: FakeRepo) -> str:
        if repo.git_dir is not None:
            return f"ssh://{self.ssh_user}@127.0.0.1:{self.ssh_port}{repo.git_dir}"
        return f"git@127.0.0.1:{repo.full_name}.git"

    def _repo_json(self, repo: FakeRepo, login: str) -> dict[str, Any]:
        perm = repo.permissions.get(login, "")
        rank = PERMS.index(perm) if perm in PERMS else -1
        owner_type = "Organization" if repo.owner in self.orgs else "User"
        return {"id": repo.id, "node_id": f"R_{repo.id}", "name": repo.name,
                "full_name": repo.full_name, "private": repo.private,
                "visibility": "private" if repo.private else "public",
                "owner": {"login": repo.owner, "id": 1, "type": owner_type},
                "description": repo.description, "fork": False,
                "url": f"{self.base_url}/repos/{repo.full_name}",
                "html_url": f"{self.base_url}/{repo.full_name}",
                "clone_url": f"{self.base_url}/{repo.full_name}.git",
                "git_url": f"git://127.0.0.1/{repo.full_name}.git",
                "ssh_url": self.ssh_url(repo), "default_branch": repo.default_branch,
                "permissions": {name: rank >= i for i, name in enumerate(PERMS)}}

    def _git(self, repo: FakeRepo, *args: str) -> str:
        return subprocess.run(["git", f"--git-dir={repo.git_dir}", *args], check=True,
                              capture_output=True, text=True).stdout

    def _branches(self, repo: FakeRepo) -> dict[str, str]:
        if repo.git_dir is None:
            return repo.branches
        out = self._git(repo, "for-each-ref", "--format=%(refname:short) %(objectname)",
                        "refs/heads")
        return dict(line.split() for line in out.splitlines() if line)

    def _branch_json(self, repo: FakeRepo, name: str) -> dict[str, Any]:
        sha = self._branches(repo)[name]
        api = f"{self.base_url}/repos/{repo.full_name}"
        return {"name": name, "protected": False,
                "commit": {"sha": sha, "url": f"{api}/commits/{sha}",
                           "commit": {"tree": {"sha": sha}}}}

    def _tree_json(self, repo: FakeRepo, sha: str) -> dict[str, Any]:
        branches = self._branches(repo)
        ref = next((n for n, s in branches.items() if s == sha), sha)
        if repo.git_dir is not None:
            paths = self._git(repo, "ls-tree", "-r", "--name-only", ref).split()
        else:
            paths = repo.files
        dirs = sorted({"/".join(p.split("/")[:i]) for p in paths
                       for i in range(1, p.count("/") + 1)})
        entries = [{"path": d, "mode": "040000", "type": "tree", "sha": "1" * 40}
                   for d in dirs]
        entries += [{"path": p, "mode": "100644", "type": "blob", "sha": "2" * 40, "size": 1}
                    for p in paths]
        return {"sha": sha, "url": f"{self.base_url}/repos/{repo.full_name}/git/trees/{sha}",
                "tree": entries, "truncated": False}

    # SSH --------------------------------------------------------------------------------------
    def _write_authorized_keys(self) -> None:
        """One line per deploy key of a git-backed repository: that key may only fetch it."""
        self.serve_script.write_text(
            "#!/bin/sh\n"
            "want=\"git-upload-pack '$1'\"\n"
            "if [ \"$SSH_ORIGINAL_COMMAND\" = \"$want\" ]; then exec git-upload-pack \"$1\"; fi\n"
            "echo \"fake github: this key may only fetch $1\" >&2\nexit 1\n")
        lines = []
        for repo in self.repos.values():
            if repo.git_dir is None:
                continue
            command = f"/bin/sh {shlex.quote(str(self.serve_script))} {repo.git_dir}"
            for key in repo.keys.values():
                kind, blob = key["key"].split()[:2]
                lines.append(f'restrict,command="{command}" {kind} {blob}\n')
        tmp = self.authorized_keys.with_suffix(".tmp")
        tmp.write_text("".join(lines))
        tmp.chmod(0o600)
        tmp.replace(self.authorized_keys)
