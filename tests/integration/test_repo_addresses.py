"""With `allow_local_repos = false`, git never reaches this server or its private network:
URLs to loopback, link-local, private and other non-public addresses (in any spelling) are
refused by the validator, and a host name is resolved and checked right before git runs,
with http(s) pinned to the checked addresses and redirects off (`backend.repositories.hosts`).

Everything here talks to loopback only: a recording HTTP server on 127.0.0.1 shows that a
refused fetch never connected, and the public-looking names are checked with a fake
resolver, so nothing leaves the machine."""

from __future__ import annotations

import asyncio
import dataclasses
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from backend.accounts import api_tokens
from backend.apps import service as apps
from backend.context import Context, open_context
from backend.errors import ValidationError
from backend.platform.settings import Settings
from backend.repositories import checks as repos
from backend.repositories import hosts as repo_hosts
from backend.repositories.hosts import RepoAddressError, public_fetch_target
from backend.validation import validate_repo_url
from supervisor.api import make_api_app
from supervisor.sources import gitsync
from tests.support.api_world import StubReconciler, make_user
from tests.support.supervisor_harness import SupervisorProcess, wait_for_state


class Recorder(ThreadingHTTPServer):
    """An HTTP server on 127.0.0.1 that counts connections and requests; it answers every
    request with `redirect_to` (a 302) when set, else 404."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.connections = 0
        self.paths: list[str] = []
        self.redirect_to = ""

    def process_request(self, request: Any, client_address: Any) -> None:
        self.connections += 1
        super().process_request(request, client_address)

    @property
    def port(self) -> int:
        return self.server_address[1]


class _Handler(BaseHTTPRequestHandler):
    server: Recorder

    def do_GET(self) -> None:
        self.server.paths.append(self.path)
        if self.server.redirect_to:
            self.send_response(302)
            self.send_header("Location", self.server.redirect_to + self.path)
        else:
            self.send_response(404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    server = Recorder()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def loopback_urls(port: int) -> list[str]:
    """The same local git server, spelled the ways a URL can name this machine."""
    return [f"http://127.0.0.1:{port}/r.git", f"http://localhost:{port}/r.git",
            f"http://localhost.:{port}/r.git", f"http://LocalHost:{port}/r.git",
            f"http://127.1:{port}/r.git", f"http://0x7f000001:{port}/r.git",
            f"http://2130706433:{port}/r.git", f"http://0177.0.0.1:{port}/r.git",
            f"http://[::1]:{port}/r.git", f"http://[::ffff:127.0.0.1]:{port}/r.git",
            f"http://127.0.0.%31:{port}/r.git", f"http://github.com@127.0.0.1:{port}/r.git",
            f"https://127.0.0.1:{port}/r.git", f"git://127.0.0.1:{port}/r.git",
            f"ssh://git@127.0.0.1:{port}/r.git", "git@127.0.0.1:owner/r.git",
            f"http://0.0.0.0:{port}/r.git"]


@pytest.fixture
def public_only(settings: Settings) -> Context:
    return open_context(dataclasses.replace(settings, allow_local_repos=False))


# The address check, with a fake resolver ---------------------------------------------------
NON_PUBLIC = ["127.0.0.1", "127.8.9.10", "10.1.2.3", "172.16.5.4", "172.31.255.255",
              "192.168.0.1", "169.254.169.254", "100.64.0.1", "0.0.0.0", "224.0.0.1",
              "255.255.255.255", "::1", "::", "fe80::1", "fc00::1", "fd12:3456::1",
              "ff02::1", "::ffff:10.0.0.1", "64:ff9b::a00:1", "2002:a00:1::1"]


@pytest.mark.parametrize("address", NON_PUBLIC)
def test_a_name_resolving_to_a_non_public_address_is_refused(address: str) -> None:
    def resolve(host: str, port: int) -> list[str]:
        assert (host, port) == ("git.example.com", 443)
        return ["93.184.216.34", address]  # one bad address among good ones is enough
    with pytest.raises(RepoAddressError, match=f"resolves to {address}, which is not a "
                                                "public address"):
        public_fetch_target("https://git.example.com/owner/repo.git", resolve)


def test_a_public_name_is_accepted_and_git_is_pinned_to_its_checked_addresses() -> None:
    asked: list[tuple[str, int]] = []

    def resolve(host: str, port: int) -> list[str]:
        asked.append((host, port))
        return ["140.82.121.4", "2606:50c0:8000::154", "140.82.121.4"]
    target = public_fetch_target("https://GitHub.com:8443/owner/repo.git", resolve)
    assert asked == [("github.com", 8443)]
    assert target.addresses == ("140.82.121.4", "2606:50c0:8000::154")
    assert target.git_config == (
        "-c", "http.followRedirects=false",
        "-c", "http.curloptResolve=github.com:8443:140.82.121.4,[2606:50c0:8000::154]")
    ssh = public_fetch_target("git@github.com:owner/repo.git", resolve)
    assert asked[-1] == ("github.com", 22) and ssh.git_config == (
        "-c", "http.followRedirects=false")
    # The validator does not resolve: a public-looking name passes, the literal ones do not.
    assert validate_repo_url("https://github.com/owner/repo", False)
    assert validate_repo_url("git@gitlab.example.org:team/app.git", False)


def test_a_name_that_does_not_resolve_is_a_clear_error() -> None:
    def resolve(host: str, port: int) -> list[str]:
        raise OSError("Name or service not known")
    with pytest.raises(RepoAddressError, match="could not be resolved"):
        public_fetch_target("https://nowhere.example.com/o/r", resolve)


@pytest.mark.parametrize("index", range(len(loopback_urls(1))))
def test_validator_refuses_every_spelling_of_this_machine(index: int) -> None:
    url = loopback_urls(8080)[index]
    with pytest.raises(ValidationError, match="only from public hosts") as refused:
        validate_repo_url(url, allow_local=False)
    assert refused.value.field == "repo_url"
    assert validate_repo_url(url, allow_local=True) == url  # the default keeps working


# Refused before any connection --------------------------------------------------------------
def test_api_deploy_refuses_local_addresses_without_connecting(
        public_only: Context, recorder: Recorder) -> None:
    owner = make_user(public_only, "owner")
    token = api_tokens.create_token(public_only, owner, "t", "read,deploy")[1]
    headers = {"Authorization": f"Bearer {token}"}

    async def scenario(c: TestClient) -> None:
        for url in loopback_urls(recorder.port):
            r = await c.post("/apps", headers=headers, json={"repo_url": url})
            error = (await r.json())["error"]
            assert r.status == 422 and error["field"] == "repo_url", (url, error)
            assert "allow_local_repos" in error["message"]

    async def main() -> None:
        async with TestClient(TestServer(make_api_app(public_only, StubReconciler()))) as c:
            await scenario(c)
    asyncio.run(main())
    assert recorder.connections == 0 and recorder.paths == []


def test_repository_check_refuses_a_name_that_resolves_to_loopback(
        public_only: Context, recorder: Recorder, monkeypatch: pytest.MonkeyPatch,
        settings: Settings) -> None:
    url = f"http://git.example.com:{recorder.port}/r.git"
    monkeypatch.setattr(repo_hosts, "_system_resolve", lambda host, port: ["127.0.0.1"])
    with pytest.raises(ValidationError, match="resolves to 127.0.0.1") as refused:
        repos.check_main_file(public_only, url, "main", "app.py", timeout=10)
    assert refused.value.field == "repo_url"
    assert recorder.connections == 0
    # Control: the same check with local repositories allowed does reach the server.
    with pytest.raises(ValidationError):
        repos.check_main_file(open_context(settings),
                              f"http://127.0.0.1:{recorder.port}/r.git", "main", "app.py",
                              timeout=10)
    assert recorder.paths and recorder.paths[0].startswith("/r.git/info/refs")


def test_supervisor_git_refuses_local_hosts_without_connecting(
        recorder: Recorder, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async def fetches(url: str, public_only: bool) -> list[str]:
        errors = []
        for fetch in (gitsync.clone_tree(url, "main", tmp_path / "app", lambda line: None,
                                         public_only=public_only),
                      gitsync.remote_branch_commit(url, "main", public_only=public_only)):
            try:
                await fetch
            except gitsync.GitError as e:
                errors.append(str(e))
        return errors

    for url in loopback_urls(recorder.port):
        errors = asyncio.run(fetches(url, True))
        assert len(errors) == 2 and all("only from public hosts" in e for e in errors), \
            (url, errors)
    monkeypatch.setattr(repo_hosts, "_system_resolve", lambda host, port: ["127.0.0.1"])
    errors = asyncio.run(fetches(f"http://git.example.com:{recorder.port}/r.git", True))
    assert all("resolves to 127.0.0.1" in e for e in errors) and len(errors) == 2
    assert recorder.connections == 0
    asyncio.run(fetches(f"http://127.0.0.1:{recorder.port}/r.git", False))  # control
    assert recorder.connections >= 2


def test_an_app_stored_with_a_local_url_is_not_fetched_once_local_repos_are_off(
        settings: Settings, recorder: Recorder, tmp_path: Path) -> None:
    """The real supervisor: an app deployed while local repositories were allowed fails
    its build with the reason after the operator turns them off, and git never connects."""
    allowed = open_context(settings)
    owner = make_user(allowed, "owner")
    app = apps.deploy_app(allowed, owner, repo_url=f"http://127.0.0.1:{recorder.port}/r.git",
                          subdomain="was-local")
    sup = SupervisorProcess(dataclasses.replace(settings, allow_local_repos=False),
                            tmp_path / "supervisor.log").start()
    try:
        row = wait_for_state(allowed, app.id, {"build_failed", "running"}, timeout=60,
                             sup=sup)
    finally:
        sup.stop()
    assert row.state == "build_failed" and "only from public hosts" in row.state_reason, \
        row.state_reason
    assert recorder.connections == 0


# What git does with the options -------------------------------------------------------------
def _ls_remote(url: str, *config: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", *config, "ls-remote", "--", url], check=False,
                          capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL,
                          env={"PATH": "/usr/bin:/bin", "HOME": "/nonexistent",
                               "GIT_TERMINAL_PROMPT": "0"})


def test_git_follows_the_pin_and_not_a_redirect(recorder: Recorder) -> None:
    """The options `public_fetch_target` gives: git connects to the pinned address (the name
    has no DNS entry: `.invalid` never resolves) and does not follow the public server's
    redirect to another address."""
    second = Recorder()
    thread = threading.Thread(target=second.serve_forever, daemon=True)
    thread.start()
    try:
        recorder.redirect_to = f"http://127.0.0.1:{second.port}"
        url = f"http://pinned.invalid:{recorder.port}/r.git"
        options = public_fetch_target(url, lambda host, port: ["93.184.216.34"]).git_config
        pinned = tuple(o.replace("93.184.216.34", "127.0.0.1") for o in options)
        assert _ls_remote(url, *pinned).returncode != 0
        assert recorder.paths and second.paths == []  # pinned, and the redirect not taken
        assert _ls_remote(url, *pinned[2:]).returncode != 0  # control: without the option
        assert second.paths, "git did not follow the redirect: the test proves nothing"
    finally:
        second.shutdown()
        second.server_close()
