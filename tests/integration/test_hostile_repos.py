"""Hostile repositories cannot make platform code read host files (backend/repositories/files.py).

A checkout is laid out as in a real data dir (`<data>/apps/1/src-…`) next to a key file
with a recognisable secret, a copy of the database and /etc/shadow. Each dependency file in
turn is a symlink to one of them, or sits under a symlinked directory, or is a FIFO or an
oversized file: the helper refuses it, `EnvSpec.from_checkout` and every engine's build
fail with a message naming the file, and the secret bytes appear nowhere in the error or
the build log. Then a real supervisor deploys such repositories (the dashboard cookie key,
the initial admin password) and no key or password byte reaches the API, the dashboard's
pages, the events table or the operator log. Also: an in-place update never moves or
compares through a symlink, the process runtime's secrets copy never lands where a link
points, and uv's `-r` includes stay inside each engine's build sandbox or container.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import http.client
import json
import os
from pathlib import Path

import pytest
from sqlmodel import select

from backend.accounts import api_tokens, keys
from backend.apps import logs as app_logs
from backend.apps import service as apps
from backend.errors import ValidationError
from backend.repositories.files import (
    MAX_REPO_FILE_BYTES,
    RepoFileError,
    excerpt,
    is_repo_file,
    read_repo_file,
    resolve_repo_path,
)
from backend.validation import main_file_in_checkout
from models import AppEvent, Build, session_scope
from supervisor.runtimes.base import DEPENDENCY_FILES, BuildError, EnvSpec
from supervisor.sources.checkouts import sync_in_place
from tests.support.runtimes import make_runtime
from tests.support.supervisor_harness import SupervisorProcess, wait_for_state

SECRET = "stcloudKEYcafe0f1sh7x9q"  # no dots: a Python-version parser keeps it whole
DB_SECRET = "stcloudDBROW4242zebra"
SHADOW = Path("/etc/shadow")


@dataclasses.dataclass
class Host:
    data: Path
    checkout: Path
    key: Path
    db: Path


@pytest.fixture
def host(tmp_path: Path) -> Host:
    data = tmp_path / "data"
    (data / "keys").mkdir(parents=True)
    key = data / "keys" / "dashboard_cookie"
    key.write_text(SECRET + "\n")
    db = data / "cloud.db"
    db.write_bytes(b"SQLite format 3\0" + DB_SECRET.encode() + b"\n")
    checkout = data / "apps" / "1" / "src-0123456789ab-beef"
    checkout.mkdir(parents=True)
    (checkout / "streamlit_app.py").write_text("import streamlit as st\n")
    return Host(data, checkout, key, db)


def shadow_secrets() -> list[str]:
    try:
        lines = SHADOW.read_text().splitlines()
    except OSError:
        pytest.skip("/etc/shadow is not readable here")
    return [line for line in lines if line.strip()][:3]


def targets(h: Host) -> dict[str, tuple[str, list[str]]]:
    """kind -> (symlink target as a repository would commit it, secrets behind it)."""
    return {"key": ("../../../keys/dashboard_cookie", [SECRET]),
            "db": ("../../../cloud.db", [DB_SECRET]),
            "shadow": (str(SHADOW), shadow_secrets())}


def assert_clean(text: str, secrets: list[str]) -> None:
    """No secret, nor its first 12 characters, in `text`, in any case (uv lower-cases the
    package names it quotes)."""
    lowered = text.lower()
    for secret in secrets:
        for part in (secret, secret[:12]):
            at = lowered.find(part.lower())
            assert at < 0, f"{secret[:6]}… leaked: {text[max(at - 100, 0):at + 40]!r}"


def spec_error(checkout: Path, python_version: str = "") -> str:
    with pytest.raises(BuildError) as err:
        EnvSpec.from_checkout(checkout, python_version, "1.67.0")
    return str(err.value)


# The helper -----------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["key", "db", "shadow"])
def test_helper_refuses_symlinks_out(host: Host, kind: str) -> None:
    target, secrets = targets(host)[kind]
    (host.checkout / "requirements.txt").symlink_to(target)
    for call in (read_repo_file, is_repo_file, resolve_repo_path):
        with pytest.raises(RepoFileError) as err:
            call(host.checkout, "requirements.txt")
        message = str(err.value)
        assert "requirements.txt" in message and "outside the repository" in message
        assert "commit the file itself" in message
        assert target not in message and "keys" not in message
        assert_clean(message, secrets)


def test_helper_refuses_a_symlinked_directory_on_the_way(host: Host) -> None:
    (host.checkout / "conf").symlink_to("../../../keys")
    (host.checkout / "inner").mkdir()
    (host.checkout / "inner" / "up").symlink_to("../..")  # climbs out from inside
    for rel in ("conf/dashboard_cookie", "inner/up/1/../../keys/dashboard_cookie",
                "inner/up/x.py"):
        with pytest.raises(RepoFileError, match="outside the repository") as err:
            read_repo_file(host.checkout, rel)
        assert_clean(str(err.value), [SECRET])
        with pytest.raises(RepoFileError):
            resolve_repo_path(host.checkout, rel)
    with pytest.raises(ValidationError, match="outside the repository"):
        main_file_in_checkout(host.checkout, "inner/up/x.py")
    with pytest.raises(RepoFileError, match="outside the repository"):
        read_repo_file(host.checkout, "../../../keys/dashboard_cookie")


def test_helper_follows_symlinks_that_stay_inside(host: Host) -> None:
    (host.checkout / "reqs").mkdir()
    (host.checkout / "reqs" / "base.txt").write_text("altair==5.5.0\n")
    (host.checkout / "requirements.txt").symlink_to("reqs/base.txt")
    (host.checkout / "r").symlink_to("reqs")
    (host.checkout / "reqs" / "again").symlink_to("../requirements.txt")
    for rel in ("requirements.txt", "r/base.txt", "reqs/again", "r/../r/again"):
        assert read_repo_file(host.checkout, rel) == b"altair==5.5.0\n"
        assert is_repo_file(host.checkout, rel)
        assert resolve_repo_path(host.checkout, rel) == host.checkout / "reqs" / "base.txt"
    assert read_repo_file(host.checkout, "missing.txt") is None
    assert not is_repo_file(host.checkout, "missing.txt")
    assert not is_repo_file(host.checkout, "reqs")


def test_helper_refuses_a_fifo_without_blocking(host: Host) -> None:
    os.mkfifo(host.checkout / "requirements.txt")
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        future = pool.submit(read_repo_file, host.checkout, "requirements.txt")
        try:
            with pytest.raises(RepoFileError, match="requirements.txt is a special file"):
                future.result(timeout=10)
        finally:
            if not future.done():  # unblock a reader stuck in open() so the test ends
                os.close(os.open(host.checkout / "requirements.txt",
                                 os.O_WRONLY | os.O_NONBLOCK))


def test_helper_refuses_directories_and_oversized_files(host: Host) -> None:
    (host.checkout / "uv.lock").mkdir()
    with pytest.raises(RepoFileError, match="uv.lock is a directory"):
        read_repo_file(host.checkout, "uv.lock")
    (host.checkout / "requirements.txt").write_bytes(b"#" * (MAX_REPO_FILE_BYTES + 1))
    with pytest.raises(RepoFileError, match="requirements.txt is larger than 4 MiB"):
        read_repo_file(host.checkout, "requirements.txt")
    (host.checkout / "small.txt").write_bytes(b"x" * 100)
    with pytest.raises(RepoFileError, match="small.txt is larger than 99 bytes"):
        read_repo_file(host.checkout, "small.txt", max_bytes=99)
    assert read_repo_file(host.checkout, "small.txt", max_bytes=100) == b"x" * 100


def test_excerpt_is_short_and_printable() -> None:
    assert excerpt("3.12\n") == "3.12"
    assert excerpt(b"\x1b[31mred\x00\r\nnext line " + b"A" * 50) == "[31mred next line AA…"
    assert len(excerpt("x" * 500)) == 21


# EnvSpec.from_checkout ------------------------------------------------------------------
@pytest.mark.parametrize("name", DEPENDENCY_FILES)
@pytest.mark.parametrize("kind", ["key", "db", "shadow"])
def test_dependency_file_linked_out_fails_the_build(host: Host, name: str, kind: str) -> None:
    target, secrets = targets(host)[kind]
    (host.checkout / name).symlink_to(target)
    message = spec_error(host.checkout)
    assert name in message and "outside the repository" in message
    assert_clean(message, secrets)


@pytest.mark.parametrize("name", DEPENDENCY_FILES)
def test_dependency_file_under_a_linked_directory_fails_the_build(host: Host,
                                                                  name: str) -> None:
    (host.checkout / "deps").symlink_to("../../../keys")
    (host.checkout / name).symlink_to("deps/dashboard_cookie")
    message = spec_error(host.checkout)
    assert name in message and "deps" in message and "outside the repository" in message
    assert_clean(message, [SECRET])


@pytest.mark.parametrize("name", ["requirements.txt", ".python-version"])
def test_dependency_fifo_and_oversized_file_fail_the_build(host: Host, name: str) -> None:
    os.mkfifo(host.checkout / name)
    assert name in spec_error(host.checkout) and "special file" in spec_error(host.checkout)
    (host.checkout / name).unlink()
    (host.checkout / name).write_bytes(b"3" * (MAX_REPO_FILE_BYTES + 1))
    assert f"{name} is larger than" in spec_error(host.checkout)


def test_dependency_files_linked_inside_are_read(host: Host) -> None:
    (host.checkout / "config").mkdir()
    (host.checkout / "config" / "reqs.txt").write_text("altair==5.5.0\n")
    (host.checkout / "config" / "py").write_text("3.11\n")
    (host.checkout / "requirements.txt").symlink_to("config/reqs.txt")
    (host.checkout / ".python-version").symlink_to("config/py")
    spec = EnvSpec.from_checkout(host.checkout, "", "1.67.0")
    assert spec.files["requirements.txt"] == b"altair==5.5.0\n"
    assert spec.python_version == "3.11"


@pytest.mark.parametrize("content", [
    "3.12; cat /etc/shadow", "\x1b]0;pwned\x07 3.12", "cpython-3.12", "3.12.4.5",
    "A" * 400, "3.12\u202e"])
def test_python_version_must_look_like_a_version(host: Host, content: str) -> None:
    (host.checkout / ".python-version").write_text(f"# pinned\n\n{content}\n3.11\n")
    message = spec_error(host.checkout)
    assert message.startswith(".python-version holds '") and "3.12 or 3.12.4" in message
    quoted = message.split("'")[1]
    assert len(quoted) <= 21 and quoted.isprintable()
    assert "A" * 22 not in message
    (host.checkout / ".python-version").unlink()
    explicit = spec_error(host.checkout, python_version=content)
    assert "app's Python version" in explicit and "A" * 22 not in explicit
    for good in ("3.12", "3.12.4", " 3.11 "):
        (host.checkout / ".python-version").write_text(f"# pinned\n{good}\n")
        assert EnvSpec.from_checkout(host.checkout, "", "1.67.0").python_version == \
            good.strip()


# The engines ----------------------------------------------------------------------------
def engine_build(engine: str, settings, checkout: Path) -> tuple[str, str]:  # type: ignore[no-untyped-def]
    """(error, build log) of building `checkout`'s environment on `engine`; the build
    must fail."""
    runtime = make_runtime(engine, settings)
    lines: list[str] = []

    async def build() -> None:
        try:
            spec = EnvSpec.from_checkout(checkout, "", settings.default_streamlit)
            if not spec.python_version:  # as Lifecycle.env_spec: the server's default
                spec = dataclasses.replace(spec, python_version=settings.default_python)
            await asyncio.wait_for(runtime.ensure_env(spec, lines.append), 600)
        finally:
            await runtime.close()

    with pytest.raises(BuildError) as err:
        asyncio.run(build())
    return str(err.value), "\n".join(lines)


@pytest.mark.parametrize("engine", ["process", "docker", "swarm"])
@pytest.mark.parametrize("name", [".python-version", "requirements.txt", "packages.txt"])
def test_engines_refuse_a_dependency_file_linked_to_a_key(engine: str, name: str, settings,
                                                          host: Host) -> None:
    (host.checkout / name).symlink_to("../../../keys/dashboard_cookie")
    error, log = engine_build(engine, settings, host.checkout)
    assert name in error and "outside the repository" in error
    assert_clean(error + log, [SECRET])


@pytest.mark.parametrize("engine", ["docker", "swarm"])
def test_docker_errors_quote_only_an_excerpt(engine: str, settings) -> None:  # type: ignore[no-untyped-def]
    long_tail = "9" * 60
    spec = EnvSpec(python_version="3.99" + long_tail, files={}, default_streamlit="1.67.0")
    bad = EnvSpec(python_version="3.11", files={"packages.txt": b"x"}, default_streamlit="1",
                  packages=("-o" + long_tail, "curl", "A\x1b[2J" + long_tail, "b!", "c!", "d!"))

    async def attempt(s: EnvSpec) -> str:
        runtime = make_runtime(engine, settings)
        try:
            with pytest.raises(BuildError) as err:
                await runtime.ensure_env(s, lambda line: None)
            return str(err.value)
        finally:
            await runtime.close()

    version_error = asyncio.run(attempt(spec))
    assert "is not offered" in version_error and long_tail not in version_error
    packages_error = asyncio.run(attempt(bad))
    assert "not a Debian package" in packages_error and long_tail[:30] not in packages_error
    assert "\x1b" not in packages_error and "and 2 more" in packages_error


# Through the running supervisor ---------------------------------------------------------
def api_get(port: int, token: str, path: str) -> str:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", "/api/v1" + path, headers={"Host": "127.0.0.1",
                                                        "Authorization": f"Bearer {token}"})
        resp = conn.getresponse()
        body = resp.read().decode(errors="replace")
        assert resp.status == 200, (path, resp.status, body[:300])
        return body
    finally:
        conn.close()


def dashboard_text(settings, monkeypatch: pytest.MonkeyPatch, user, app_id: int) -> str:  # type: ignore[no-untyped-def]
    """The visible text of the app's detail and logs pages in the real dashboard."""
    import streamlit as st

    from pages.dashboard import _ui as ui
    from tests.support.dashboard import ROOT, nodes, open_dashboard, text
    for name in list(os.environ):
        if name.startswith("STCLOUD_") or name == "DATABASE_URL":
            monkeypatch.delenv(name)
    for name, value in settings.to_env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(ROOT)
    try:
        pages = [open_dashboard(user, page, {"app": str(app_id)}) for page in
                 (ui.APP, ui.LOGS, ui.MY_APPS)]
        return "\n".join(text(at) + "\n" + "\n".join(
            str(getattr(node, "value", "")) for node in nodes(at)) for at in pages)
    finally:
        st.cache_resource.clear()


def test_supervisor_deploy_of_hostile_repos_leaks_nothing(ctx, admin, settings, make_repo,
                                                          tmp_path: Path,
                                                          monkeypatch) -> None:  # type: ignore[no-untyped-def]
    cookie_key = keys.dashboard_cookie_key(ctx)  # <data>/keys/dashboard_cookie
    password_file = settings.data_dir / "initial_admin_password"
    password = next(line.split(":", 1)[1].strip() for line in
                    password_file.read_text().splitlines() if line.startswith("password:"))
    secrets = [cookie_key, password]
    repos = {}
    for name, (dep, target) in {
            "pyver": (".python-version", "../../../keys/dashboard_cookie"),
            "reqs": ("requirements.txt", "../../../initial_admin_password"),
            "pkgs": ("packages.txt", "../../../initial_admin_password")}.items():
        repo = make_repo(name, {"streamlit_app.py": "import streamlit as st\n"})
        (repo.work / dep).symlink_to(target)
        repo.commit({}, f"{dep} is a symlink out of the checkout")
        repos[name] = (repo, dep)

    sup = SupervisorProcess(settings, tmp_path / "supervisor.log").start()
    try:
        deployed = {name: apps.deploy_app(ctx, admin, repo_url=repo.url, subdomain=name)
                    for name, (repo, _) in repos.items()}
        ended = {name: wait_for_state(ctx, view.id, {"running", "build_failed", "crashed"},
                                      sup=sup) for name, view in deployed.items()}
        _, token = api_tokens.create_token(ctx, admin, "leak-check", ["read"])
        seen = [api_get(settings.port, token, "/apps")]
        for view in deployed.values():
            seen += [api_get(settings.port, token, f"/apps/{view.id}{suffix}")
                     for suffix in ("", "/events", "/logs", "/logs?kind=build")]
            seen.append(json.dumps(app_logs.read_logs(ctx, admin, view.id)))
    finally:
        sup.stop()
    with session_scope(ctx.engine) as s:
        seen += [f"{e.reason} {e.from_state} {e.to_state}"
                 for e in s.exec(select(AppEvent)).all()]
        seen += [b.error for b in s.exec(select(Build)).all()]
    seen.append(sup.log_path.read_text(errors="replace"))
    seen += [p.read_text(errors="replace") for p in settings.logs_path.rglob("*")
             if p.is_file()]
    for view in deployed.values():
        pages = dashboard_text(settings, monkeypatch, admin, view.id)
        assert "outside the repository" in pages  # the pages do show the build error
        seen.append(pages)
    assert_clean("\n".join(seen), secrets)
    for name, app in ended.items():
        dep = repos[name][1]
        assert app.state == "build_failed", (name, app.state)
        assert dep in app.state_reason and "outside the repository" in app.state_reason


# Updating a live tree in place ----------------------------------------------------------
def test_in_place_update_never_moves_or_compares_through_a_symlink(host: Host) -> None:
    """A path under a symlinked directory of the new tree is not moved (os.replace would
    move the key file itself into the app's tree); one under a symlinked directory of the
    live tree is written into a real directory, not compared with what the link names."""
    live, new = host.checkout, host.checkout.parent / "src-new"
    new.mkdir()
    (new / "keys").symlink_to("../../../keys")  # new tree: keys/dashboard_cookie is the key
    (live / "conf").symlink_to("../../../keys")  # live tree: conf/ is the keys directory
    (new / "conf").mkdir()
    (new / "conf" / "dashboard_cookie").write_text(SECRET + "\n")  # same bytes as the key
    changed, _ = sync_in_place(live, new, [], ["keys/dashboard_cookie",
                                               "conf/dashboard_cookie"])
    assert host.key.read_text() == SECRET + "\n"  # the key stayed where it was
    assert not (live / "keys").exists()
    assert changed == 1 and not (live / "conf").is_symlink()
    assert (live / "conf" / "dashboard_cookie").read_text() == SECRET + "\n"
    assert sorted(p.name for p in host.key.parent.iterdir()) == ["dashboard_cookie"]


# The secrets copy ---------------------------------------------------------------------
@pytest.mark.parametrize("layout", ["file-link", "dir-link"])
def test_process_runtime_secrets_copy_never_writes_through_a_symlink(
        host: Host, settings, tmp_path: Path, layout: str) -> None:  # type: ignore[no-untyped-def]
    """The runtime's copy of an app's secrets must never land where a repository's
    symlink points (before the sandbox it was written into the checkout with O_TRUNC,
    overwriting the dashboard cookie key with text the deployer chose)."""
    from supervisor.runtimes.base import AppSpec, EnvRef
    streamlit_dir = host.checkout / ".streamlit"
    if layout == "file-link":  # would overwrite the dashboard cookie key
        streamlit_dir.mkdir()
        (streamlit_dir / "secrets.toml").symlink_to("../../../../keys/dashboard_cookie")
    else:  # would write keys/secrets.toml
        streamlit_dir.symlink_to("../../../keys")
    secrets_file = tmp_path / "secrets.toml"
    secrets_file.write_text('x = "chosen by the deployer"\n')
    runtime = make_runtime("process", dataclasses.replace(settings, data_dir=host.data))
    spec = AppSpec(app_id=1, name="hostile", checkout=host.checkout,
                   main_file="streamlit_app.py", log_path=tmp_path / "app.log",
                   memory_limit_mb=256, secrets_file=secrets_file)

    async def start() -> None:
        try:
            inst = await runtime.start(spec, EnvRef("x", "3.11", str(tmp_path / "no-env")))
            await runtime.stop(1, inst.state)
        except Exception:  # refusing to start is fine; writing out is not
            pass

    asyncio.run(start())
    assert host.key.read_text() == SECRET + "\n"
    assert sorted(p.name for p in host.key.parent.iterdir()) == ["dashboard_cookie"]


@pytest.mark.parametrize("engine", ["process", "docker", "swarm"])
def test_requirements_cannot_include_a_host_file(engine: str, settings, host: Host) -> None:  # type: ignore[no-untyped-def]
    """The bytes of requirements.txt are the repository's own, but uv follows its `-r`
    includes: only the build's own sandbox or container keeps those in the repository
    (with process_sandbox = off, uv on the host reads and quotes the included key)."""
    (host.checkout / "requirements.txt").write_text(f"-r {host.key}\n")
    error, log = engine_build(engine, settings, host.checkout)
    assert_clean(error + log, [SECRET])
