"""The HTTP side of tests/support/fake_github.py: the repositories and tokens it holds, and
the aiohttp handlers of GitHub's REST API (as PyGithub calls it), OAuth's token exchange,
and the `authorized_keys` that lets each deploy key fetch only its own repository over SSH.
`GithubApi` is FakeGithub's base: it answers from the state FakeGithub sets up."""

from __future__ import annotations

import itertools
import shlex
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
    statuses: list[dict[str, Any]] = field(default_factory=list)  # each with its "sha"
    comments: list[dict[str, Any]] = field(default_factory=list)  # each with its "issue"

    @property
    def full_name(self) -> str:
        return f"{self.owner}/{self.name}"


def not_found() -> web.Response:
    return web.json_response({"message": "Not Found",
                              "documentation_url": "https://docs.github.com/rest"}, status=404)


class GithubApi:
    """GitHub's REST API over the fake's state (the attributes below, which FakeGithub
    sets); `_app()` is the aiohttp application that serves it."""

    root: Path
    tokens: dict[str, FakeToken]
    users: dict[str, dict[str, Any]]
    orgs: set[str]
    repos: dict[int, FakeRepo]
    moved: dict[str, int]
    oauth_codes: dict[str, str]
    client_id: str
    client_secret: str
    requests: list[tuple[str, str]]
    limited: tuple[int, int] | None
    failing: int | None
    ssh_host_keys: list[str]
    ssh_user: str
    ssh_port: int
    authorized_keys: Path
    serve_script: Path
    port: int
    _ids: itertools.count[int]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def find(self, full_name: str) -> FakeRepo | None:
        for repo in self.repos.values():
            if repo.full_name.lower() == full_name.lower():
                return repo
        return None

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
        token: FakeToken | None = request.get(TOKEN_KEY)
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
            return not_found()
        if repo is None or not self._visible(repo, token):
            return not_found()
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
        if rest[0] in ("statuses", "issues") and request.method == "POST":
            return await self._status_or_comment(request, repo, rest, login)
        if rest[0] in ("keys", "hooks"):
            scope = "repo" if rest[0] == "keys" else "admin:repo_hook"
            if not admin or not self._can(token, scope):
                return not_found()
            return await self._keys_hooks(request, repo, rest)
        return not_found()

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
        return not_found()

    async def _status_or_comment(self, request: web.Request, repo: FakeRepo, rest: list[str],
                                 login: str) -> web.StreamResponse:
        """`POST statuses/{sha}` and `POST issues/{n}/comments`, for anyone who may push."""
        if repo.permissions.get(login) not in ("push", "maintain", "admin"):
            return not_found()
        data = await request.json()
        ident = next(self._ids)
        if rest[0] == "statuses" and len(rest) == 2:
            repo.statuses.append({**data, "sha": rest[1], "id": ident})
        elif len(rest) == 3 and rest[1].isdigit() and rest[2] == "comments":
            repo.comments.append({**data, "issue": int(rest[1]), "id": ident})
        else:
            return not_found()
        return web.json_response({**data, "id": ident, "url": f"{self.base_url}/x/{ident}"},
                                 status=201)

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
