"""Helpers for the lifecycle tests: a runtime of no engine, an SMTP sink
(aiosmtpd on 127.0.0.1), a Streamlit session that stays open (to see reruns after a push),
a client that polls an app through the proxy the whole time, signed webhooks, and a gated
Python package whose build waits for the test (to stop a supervisor in the middle of a
build)."""

from __future__ import annotations

import asyncio
import email
import email.policy
import http.client
import json
import threading
import time
import uuid
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import aiohttp
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from sqlmodel import select
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

from backend.apps.hooks import sign
from backend.context import Context
from models import User, session_scope
from tests.conftest import free_port
from tests.support.streamlit_client import STREAM_PATH, _element_text, rerun_message


# A runtime of no engine, users' addresses -------------------------------------------------
class FakeRuntime:
    """Only a name: for code that asks its runtime nothing but what it is called."""

    name = "fake"


def set_email(ctx: Context, username: str, address: str) -> None:
    """Gives user `username` the email address `address`."""
    with session_scope(ctx.engine) as s:
        user = s.exec(select(User).where(User.username == username)).one()
        user.email = address
        s.add(user)


# SMTP ------------------------------------------------------------------------------------
class _Handler:
    def __init__(self, sink: MailSink) -> None:
        self.sink = sink

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        with self.sink.lock:
            self.sink.messages.append(msg)
        return "250 Message accepted for delivery"


class MailSink:
    """A real SMTP server on 127.0.0.1 that keeps every message it receives."""

    def __init__(self) -> None:
        self.port = free_port()
        self.messages: list[EmailMessage] = []
        self.lock = threading.Lock()
        self._controller = Controller(_Handler(self), hostname="127.0.0.1", port=self.port)

    def start(self) -> MailSink:
        self._controller.start()
        return self

    def stop(self) -> None:
        self._controller.stop()

    def settings(self) -> dict[str, Any]:
        return {"smtp_host": "127.0.0.1", "smtp_port": self.port, "smtp_tls": "none",
                "smtp_from": "cloud@example.com", "email_interval": 0.3}

    def subjects(self) -> list[str]:
        with self.lock:
            return [str(m["Subject"]) for m in self.messages]

    def matching(self, text: str) -> list[EmailMessage]:
        with self.lock:
            return [m for m in self.messages if text in str(m["Subject"])]


# A Streamlit session that stays open ------------------------------------------------------
class LiveSession:
    """Opens /_stcore/stream through the proxy (as a browser would), runs the script, and
    keeps listening in a thread: `texts` grows with every rerun the server pushes."""

    def __init__(self, port: int, host: str) -> None:
        self.url = f"ws://127.0.0.1:{port}{STREAM_PATH}"
        self.host = host
        self.texts: list[str] = []
        self.closed = False
        self.error: str = ""
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    def start(self) -> LiveSession:
        self._thread.start()
        return self

    async def _run(self) -> None:
        headers = {"Host": self.host, "Origin": f"http://{self.host}"}
        try:
            async with aiohttp.ClientSession() as http, http.ws_connect(
                    self.url, protocols=("streamlit",), headers=headers, max_msg_size=0) as ws:
                await ws.send_bytes(rerun_message())
                while not self._stop.is_set():
                    try:
                        msg = await ws.receive(timeout=0.2)
                    except TimeoutError:
                        continue
                    if msg.type is not aiohttp.WSMsgType.BINARY:
                        break
                    fwd = ForwardMsg()
                    fwd.ParseFromString(msg.data)
                    text, _ = _element_text(fwd)
                    if text:
                        with self._lock:
                            self.texts.append(text)
        except Exception as exc:  # reported through `error`
            self.error = repr(exc)
        finally:
            self.closed = True

    def seen(self, text: str) -> bool:
        with self._lock:
            return any(text in t for t in self.texts)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)


# A client polling through the proxy -------------------------------------------------------
class Poller:
    """GETs the app page and its health endpoint through the proxy in a loop, on one
    keep-alive connection (reopened only when the server closes it), recording every
    status; `failures` lists whatever was not a 200."""

    def __init__(self, port: int, host: str) -> None:
        self.port, self.host = port, host
        self.statuses: list[int] = []
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> Poller:
        self._thread.start()
        return self

    def _run(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        paths = ("/", "/_stcore/health")
        i = 0
        while not self._stop.is_set():
            path = paths[i % 2]
            i += 1
            try:
                conn.request("GET", path, headers={"Host": self.host})
                resp = conn.getresponse()
                body = resp.read()
                self.statuses.append(resp.status)
                if resp.status != 200:
                    self.failures.append(f"{path} -> {resp.status}: {body[:200]!r}")
                if resp.getheader("Connection", "").lower() == "close":
                    conn.close()
            except (OSError, http.client.HTTPException) as exc:
                self.failures.append(f"{path} -> {exc!r}")
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            time.sleep(0.02)  # request pacing of the load, not synchronisation
        conn.close()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)


# Webhooks --------------------------------------------------------------------------------
def post(port: int, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("POST", path, body=body, headers={"Host": f"localhost:{port}",
                                                       "Content-Type": "application/json",
                                                       **headers})
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, json.loads(data) if data else {}
    finally:
        conn.close()


def github_push(repo_url: str, branch: str, after: str = "") -> bytes:
    return json.dumps({"ref": f"refs/heads/{branch}", "after": after,
                       "repository": {"clone_url": repo_url, "full_name": "owner/repo"}}
                      ).encode()


def send_github_push(port: int, repo_url: str, branch: str, secret: str | None,
                     after: str = "") -> tuple[int, dict]:
    body = github_push(repo_url, branch, after)
    headers = {"X-GitHub-Event": "push"}
    if secret is not None:
        headers["X-Hub-Signature-256"] = sign(secret, body)
    return post(port, "/api/v1/hooks/github", body, headers)


# A package whose build waits for the test -------------------------------------------------
GATED_BACKEND = '''
import base64, hashlib, os, time, zipfile
GATE = {gate!r}

def _wait():
    while not os.path.exists(GATE):
        time.sleep(0.05)
    if open(GATE).read().strip() == "fail":
        raise RuntimeError("gatedpkg: the test made this build fail")

def get_requires_for_build_wheel(config_settings=None):
    return []

def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    _wait()
    name = "gatedpkg-0.1-py3-none-any.whl"
    files = {{"gatedpkg/__init__.py": b"VALUE = 1\\n",
             "gatedpkg-0.1.dist-info/METADATA": (b"Metadata-Version: 2.1\\nName: gatedpkg\\n"
                                                 b"Version: 0.1\\n"),
             "gatedpkg-0.1.dist-info/WHEEL": (b"Wheel-Version: 1.0\\nGenerator: test\\n"
                                              b"Root-Is-Purelib: true\\nTag: py3-none-any\\n")}}
    record = []
    with zipfile.ZipFile(os.path.join(wheel_directory, name), "w") as zf:
        for path, data in files.items():
            zf.writestr(path, data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            record.append(f"{{path}},sha256={{digest}},{{len(data)}}")
        record.append("gatedpkg-0.1.dist-info/RECORD,,")
        zf.writestr("gatedpkg-0.1.dist-info/RECORD", "\\n".join(record) + "\\n")
    return name
'''


def build_visible_dir(settings: Any, name: str) -> Path:
    """A fresh directory that sandboxed environment builds can read: under the package
    cache they have bound (a sandboxed build sees nothing else of the host)."""
    path = settings.uv_cache_for("") / "sandboxed" / "test-packages" / \
        f"{name}-{uuid.uuid4().hex[:8]}"
    path.mkdir(parents=True)
    path.parent.chmod(0o755)
    return path


def gated_package(root: Path) -> tuple[Path, Path]:
    """(package dir, gate file): building the package waits until the gate file exists,
    then fails if it says `fail`."""
    pkg = root / "gatedpkg"
    pkg.mkdir(parents=True)
    gate = root / "gate"
    (pkg / "gated_backend.py").write_text(GATED_BACKEND.format(gate=str(gate)))
    (pkg / "pyproject.toml").write_text(
        '[build-system]\nrequires = []\nbuild-backend = "gated_backend"\nbackend-path = ["."]\n'
        '\n[project]\nname = "gatedpkg"\nversion = "0.1"\n')
    return pkg, gate


def package_files(pkg: Path) -> dict[str, str | bytes | None]:
    """The files of a package folder under its own name, to commit into a repository whose
    requirements name it as `./<name>` (a requirement may only name a path inside it)."""
    return {f"{pkg.name}/{f.name}": f.read_text() for f in pkg.iterdir() if f.is_file()}
