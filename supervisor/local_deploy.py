"""`python -m supervisor.cli deploy .`: deploy the app of a local git working tree, then
follow it until it answers.

What is deployed is found in the tree, and asked for only when it is ambiguous:
- the remote: `--remote`, else `origin`, else the only remote (several: asked);
- the branch: `--branch`, else the current one; it must be on the remote (the platform
  clones the remote, not this tree: unpushed commits are named, not deployed);
- the main file: `--main-file`, else `streamlit_app.py` or `app.py` at the root (both:
  asked), else the only committed `.py` file that imports streamlit (several: asked).
Asking needs a terminal on stdin; without one the choices are printed with the flag that
picks one. Then `POST /apps`, and the app's state changes are printed as its build's
phases, with the build log's lines under them (`--quiet`: the phases only), until it runs
and its URL answers (`/_stcore/health`), or it fails (with the reason; logs are masked as
the API shows them)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.client import HTTPConnection, HTTPSConnection
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from supervisor.api_client import Client, CliError

NAMED_MAIN_FILES = ("streamlit_app.py", "app.py")
IMPORTS_STREAMLIT = r"^\s*(import\s+streamlit|from\s+streamlit(\.\S+)?\s+import)"
WAITING = ("queued", "building", "starting")
FAILED = ("build_failed", "crashed", "over_limit", "stopped")
POLL = 0.5

Ask = Callable[[str, list[str], str], str]  # (what, choices, flag) -> the choice
Out = Callable[[str], None]


@dataclass(frozen=True)
class Tree:
    root: Path
    remote: str
    repo_url: str
    branch: str
    main_file: str


def git(root: Path, *args: str, check: bool = True) -> str:
    done = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True,
                          check=False, timeout=60)
    if check and done.returncode != 0:
        raise CliError(f"git {' '.join(args)} failed in {root}: "
                       f"{done.stderr.strip() or done.stdout.strip()}", 2)
    return done.stdout.strip() if done.returncode == 0 else ""


def is_work_tree(path: Path) -> bool:
    """True when `path` is inside a git working tree (a bare repository is not)."""
    return git(path, "rev-parse", "--is-inside-work-tree", check=False) == "true"


def ask_on_terminal(what: str, choices: list[str], flag: str) -> str:
    """Ask on the terminal; without one, say how to choose with `flag`."""
    if not sys.stdin.isatty():
        raise CliError(f"Several {what}s could be meant: {', '.join(choices)}. Pass one "
                       f"with {flag}.", 2)
    print(f"Which {what}?", flush=True)
    for n, choice in enumerate(choices, 1):
        print(f"  {n}) {choice}", flush=True)
    for _ in range(3):
        answer = input(f"{what} [1-{len(choices)}]: ").strip()
        if answer in choices:
            return answer
        if answer.isdigit() and 1 <= int(answer) <= len(choices):
            return choices[int(answer) - 1]
    raise CliError(f"No {what} chosen; pass one with {flag}.", 2)


def without_credentials(url: str) -> str:
    """The remote URL without a user:password part (a token there is not the platform's)."""
    parts = urlsplit(url)
    if parts.scheme in ("http", "https") and parts.password is not None:
        host = parts.hostname or ""
        return urlunsplit(parts._replace(netloc=host + (f":{parts.port}" if parts.port
                                                          else "")))
    return url


def find_remote(root: Path, wanted: str, ask: Ask) -> str:
    remotes = git(root, "remote").split()
    if wanted:
        if wanted not in remotes:
            raise CliError(f"There is no remote {wanted!r} in {root} (remotes: "
                           f"{', '.join(remotes) or 'none'}).", 2)
        return wanted
    if not remotes:
        raise CliError(f"The working tree at {root} has no git remote, so the platform has "
                       "nothing to clone. Push it to a git host the platform can reach "
                       "(git remote add origin URL && git push -u origin BRANCH), then "
                       "deploy again.", 2)
    if "origin" in remotes or len(remotes) == 1:
        return "origin" if "origin" in remotes else remotes[0]
    return ask("remote", remotes, "--remote")


def find_main_file(root: Path, wanted: str, ask: Ask) -> str:
    files = git(root, "ls-tree", "-r", "--name-only", "HEAD").splitlines()
    if wanted:
        if wanted not in files:
            raise CliError(f"{wanted} is not in the last commit of {root}; commit it and "
                           "push, or name another file with --main-file.", 2)
        return wanted
    named = [f for f in NAMED_MAIN_FILES if f in files]
    if len(named) == 1:
        return named[0]
    if named:
        return ask("main file", named, "--main-file")
    found = git(root, "grep", "-l", "-E", IMPORTS_STREAMLIT, "HEAD", "--", "*.py",
                check=False)
    callers = sorted(line.split(":", 1)[1] for line in found.splitlines())
    if len(callers) == 1:
        return callers[0]
    if not callers:
        raise CliError(f"No committed .py file in {root} imports streamlit, so there is no "
                       "main file to run; commit your app, or name it with --main-file.", 2)
    return ask("main file", callers, "--main-file")


def inspect_tree(path: Path, remote: str = "", branch: str = "", main_file: str = "",
                 ask: Ask = ask_on_terminal, out: Out = print) -> Tree:
    """What to deploy from the working tree at `path` (see the module docstring)."""
    if not is_work_tree(path):
        raise CliError(f"{path.resolve()} is not in a git working tree. Commit your app in "
                       "a git repository pushed to a host the platform can reach, or "
                       "deploy a repository URL: deploy https://host/owner/repo.git.", 2)
    root = Path(git(path, "rev-parse", "--show-toplevel"))
    if not git(root, "rev-parse", "-q", "--verify", "HEAD", check=False):
        raise CliError(f"The repository at {root} has no commit yet; commit your app and "
                       "push it.", 2)
    name = find_remote(root, remote, ask)
    url = git(root, "remote", "get-url", name)
    if not branch:
        branch = git(root, "symbolic-ref", "--short", "-q", "HEAD", check=False)
        if not branch:
            raise CliError("HEAD is detached (no current branch): check out the branch to "
                           "deploy, or pass --branch NAME.", 2)
    check_pushed(root, name, url, branch, out)
    return Tree(root, name, without_credentials(url), branch,
                find_main_file(root, main_file, ask))


def check_pushed(root: Path, remote: str, url: str, branch: str, out: Out) -> None:
    """The branch must be on the remote; a local commit that is not is said, not fatal."""
    done = subprocess.run(["git", "-C", str(root), "ls-remote", "--heads", url, branch],
                          capture_output=True, text=True, check=False, timeout=60,
                          env={**os.environ, "GIT_TERMINAL_PROMPT": "0"})
    if done.returncode != 0:
        out(f"note: could not read remote {remote} from here "
            f"({done.stderr.strip().splitlines()[-1] if done.stderr.strip() else 'no answer'}"
            "); the platform checks it itself.")
        return
    heads = dict(line.split("\t")[::-1] for line in done.stdout.splitlines() if "\t" in line)
    remote_sha = heads.get(f"refs/heads/{branch}")
    if remote_sha is None:
        raise CliError(f"Branch {branch} is not on remote {remote} ({url}), which is what the "
                       f"platform clones: push it first with `git push -u {remote} {branch}`.",
                       2)
    if git(root, "rev-parse", "HEAD") != remote_sha:
        out(f"note: your HEAD is not what {remote}/{branch} holds ({remote_sha[:12]}); the "
            f"platform deploys {remote_sha[:12]}. Push to deploy your latest commits.")


def app_answers(url: str, timeout: float = 5) -> bool:
    """Whether the app at `url` serves (Streamlit's health check says ok through the
    proxy). `*.localhost` is loopback (RFC 6761) even where the resolver does not say so."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    loopback = host == "localhost" or host.endswith(".localhost")
    try:
        if parts.scheme == "https":
            conn: HTTPConnection = HTTPSConnection(host, parts.port or 443, timeout=timeout)
        else:
            conn = HTTPConnection("127.0.0.1" if loopback else host, parts.port or 80,
                                  timeout=timeout)
        conn.request("GET", "/_stcore/health", headers={"Host": parts.netloc})
        resp = conn.getresponse()
        body = resp.read(64)
        conn.close()
    except OSError:
        return False
    return resp.status == 200 and body.strip() == b"ok"


class BuildLog:
    """The build log's lines not printed yet (as the API shows them: secrets masked)."""

    def __init__(self, client: Client, app_id: int) -> None:
        self.client, self.app_id, self.shown = client, app_id, 0

    def new_lines(self) -> list[str]:
        text: str = self.client.call("GET", f"/apps/{self.app_id}/logs?kind=build"
                                "&max_bytes=1000000")["text"]
        lines = text.splitlines()
        if text and not text.endswith("\n"):
            lines = lines[:-1]  # a line still being written
        if len(lines) < self.shown:  # a new file: the build started again
            self.shown = 0
        fresh, self.shown = lines[self.shown:], len(lines)
        return fresh


def follow(client: Client, app: dict[str, Any], timeout: float, out: Out,
           build_log: bool = True) -> int:
    """Print the app's state changes (and, with `build_log`, the build log's lines under
    them) until it runs and answers (0) or fails (1)."""
    app_id, seen, log = app["id"], 0, BuildLog(client, app["id"])
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        events = client.call("GET", f"/apps/{app_id}/events?limit=50")["events"]
        for e in sorted(events, key=lambda e: int(e["id"])):
            if int(e["id"]) > seen:
                seen = int(e["id"])
                out(f"[{e['to_state']}] {e['reason']}".rstrip())
        view = client.call("GET", f"/apps/{app_id}")
        if build_log and view["state"] != "queued":
            for line in log.new_lines():
                out(f"    {line}")
        if view["state"] == "running":
            return wait_answers(view, deadline, out)
        if view["state"] in FAILED:
            out(f"The app is {view['state'].replace('_', ' ')}: {view['state_reason']}")
            kind = "build" if view["state"] == "build_failed" else "app"
            if kind == "app" or not build_log:
                tail = client.call("GET", f"/apps/{app_id}/logs?kind={kind}&max_bytes=4000")
                if tail["text"].strip():
                    out(f"The end of its {kind} log:\n{tail['text'].rstrip()}")
            return 1
        time.sleep(POLL)  # polling the app's state, not a synchronisation
    out(f"The app is still not running after {timeout:.0f} s; follow it with: "
        f"python -m supervisor.cli logs {app_id} --build --follow")
    return 1


def wait_answers(view: dict[str, Any], deadline: float, out: Out) -> int:
    if view["visibility"] != "public":
        out(f"The app runs; it is {view['visibility']}: open {view['url']} signed in.")
        return 0
    while time.monotonic() < deadline:
        if app_answers(view["url"]):
            out(f"The app answers at {view['url']}")
            return 0
        time.sleep(POLL)  # polling the app's URL, not a synchronisation
    out(f"The app runs but {view['url']} does not answer from here; check its address "
        "(the platform's domain must resolve to it).")
    return 1
