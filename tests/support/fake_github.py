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
import threading
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from tests.support.fake_github_api import ORG_SCOPES, FakeRepo, FakeToken, GithubApi


class FakeGithub(GithubApi):
    """The fake GitHub: set it up (users, tokens, repositories, switches), `start()` it on
    its own loop in a thread, point PyGithub at `base_url`, and `stop()` it."""

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
        return self.deliver(full_name, "push", {
            "ref": f"refs/heads/{branch}", "after": repo.branches.get(branch),
            "repository": self._repo_json(repo, repo.owner)})

    def deliver_pull_request(self, full_name: str, number: int, action: str, branch: str,
                             sha: str, title: str = "A change",
                             head_repo: str = "") -> list[tuple[int, Any]]:
        """A `pull_request` event of `full_name`, from `head_repo` (default: the same)."""
        repo = self.find(full_name)
        assert repo is not None
        base = self._repo_json(repo, repo.owner)
        head = base if not head_repo else {
            "full_name": head_repo, "clone_url": f"{self.base_url}/{head_repo}.git"}
        return self.deliver(full_name, "pull_request", {
            "action": action, "number": number, "repository": base,
            "pull_request": {"number": number, "title": title, "state": "open",
                             "head": {"ref": branch, "sha": sha, "repo": head},
                             "base": {"ref": repo.default_branch, "repo": base}}})

    def deliver(self, full_name: str, event: str, payload: dict[str, Any]
                ) -> list[tuple[int, Any]]:
        """POST `payload` as a signed `event` to each webhook of the repository."""
        repo = self.find(full_name)
        assert repo is not None
        body = json.dumps(payload).encode()

        async def post_all() -> list[tuple[int, Any]]:
            out = []
            async with aiohttp.ClientSession() as http:
                for hook in repo.hooks.values():
                    sig = "sha256=" + hmac.new(hook["secret"].encode(), body,
                                               hashlib.sha256).hexdigest()
                    headers = {"X-GitHub-Event": event, "X-Hub-Signature-256": sig,
                               "Content-Type": "application/json",
                               "X-GitHub-Delivery": str(next(self._ids))}
                    async with http.post(hook["config"]["url"], data=body,
                                         headers=headers) as resp:
                        out.append((resp.status, await resp.json(content_type=None)))
            return out

        return self.run(post_all())
