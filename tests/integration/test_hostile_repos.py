"""Hostile repositories cannot make platform code read host files (backend/repositories/files.py).

A checkout is laid out as in a real data dir (`<data>/apps/1/src-…`) next to a key file
with a recognisable secret, a copy of the database and /etc/shadow. Each dependency file in
turn is a symlink to one of them, or sits under a symlinked directory, or is a FIFO or an
oversized file: the helper refuses it and `EnvSpec.from_checkout` fails with a message
naming the file, and the secret bytes appear nowhere in the error. Also: an in-place update
never moves or compares through a symlink. The engines' builds, a real supervisor deploying
such repositories, the secrets copy and uv's `-r` includes are in
test_hostile_repos_engines.py.
"""

from __future__ import annotations

import concurrent.futures
import os

import pytest

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
from supervisor.runtimes.base import DEPENDENCY_FILES, EnvSpec
from supervisor.sources.checkouts import sync_in_place
from tests.support.hostile_host import (
    SECRET,
    Host,
    assert_clean,
    spec_error,
    targets,
)


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
