"""The app's writable working directory, the same on every runtime.

An instance runs in a per-instance tmpfs at /app (size `app_workdir_size_mb`, counted in the
instance's memory limit) that starts as a copy of its checkout, which the instance sees
read-only at CHECKOUT_IN_INSTANCE. Whatever the app writes stays in the tmpfs: it is gone
when the instance stops (a reboot starts from the checkout as it is) and never reaches the
platform's checkout.

A code-only push updates the checkout in place (`supervisor/sources/checkouts.py`); this module's
mirror thread, inside the instance, sees the change and copies the changed files into /app
(each through a temporary file and a rename, the main file last), then Streamlit's file
watcher reruns the sessions. An overlay with the checkout as its lower dir would not do:
overlayfs caches its lookups, so a file the app had already opened kept its old content
after an in-place replace of the lower file, and a new file whose name had been looked up
before stayed missing (measured on Linux 6.18 with ext4 lower dirs).

Run as a script inside the instance, as the app's own user (the sandbox, or the container,
is what bounds it, so nothing here can reach a host path):

    python workdir.py SOURCE MAIN_FILE -- SCRIPT ARG...

copies SOURCE into the current directory, starts the mirror thread and runs SCRIPT (the
venv's `streamlit`) in this interpreter with ARGs. Symbolic links are copied as links;
they resolve inside the instance, where no host path but those bound in exists. SOURCE's
`.git` is linked, not copied. Standard library only, Python 3.8+ (images carry older
Pythons than the supervisor's).
"""

from __future__ import annotations

import errno
import os
import runpy
import shutil
import stat
import sys
import threading
import time
from typing import TYPE_CHECKING

APP_DIR = "/app"
CHECKOUT_IN_INSTANCE = "/run/checkout"
SCRIPT_IN_INSTANCE = "/run/stcloud-workdir/workdir.py"
SCRIPT = os.path.abspath(__file__)
QUICK_CHECK = 0.2   # seconds between checks of the checkout's root and .git
FULL_SCAN = 2.0     # seconds between walks of the whole checkout
TMPFS_MODE = 0o1777
# The runtime secrets file to place at the project's path (a Streamlit without secrets.files).
SECRETS_COPY_ENV = "STCLOUD_SECRETS_COPY"

if TYPE_CHECKING:  # annotations only: Python 3.8 cannot subscript tuple at run time
    Signature = tuple[int, int, int, int, str]  # mode, size, mtime_ns, inode, link target


def workdir_bytes(size_mb: int) -> int:
    return max(1, int(size_mb)) << 20


def signature(path: str) -> Signature | None:
    try:
        st = os.lstat(path)
    except OSError:
        return None
    target = os.readlink(path) if stat.S_ISLNK(st.st_mode) else ""
    return (st.st_mode, st.st_size, st.st_mtime_ns, st.st_ino, target)


def scan(source: str) -> dict[str, Signature]:
    """rel path -> signature of every file, link and directory of `source` but .git."""
    found: dict[str, Signature] = {}
    for root, dirs, files in os.walk(source):
        rel_root = os.path.relpath(root, source)
        if rel_root == ".":
            dirs[:] = [d for d in dirs if d != ".git"]
            files = [f for f in files if f != ".git"]
        for name in dirs + files:
            rel = os.path.normpath(os.path.join(rel_root, name))
            sig = signature(os.path.join(root, name))
            if sig is not None:
                found[rel] = sig
    return found


def other_mount(path: str, root_dev: int) -> bool:
    """A path mounted over inside the workdir (the runtime's secrets file)."""
    try:
        return os.lstat(path).st_dev != root_dev
    except OSError:
        return False


def place(source: str, rel: str, sig: Signature, dest_root: str, root_dev: int) -> None:
    """Copy one entry of `source` to `dest_root` (a temporary name, then a rename)."""
    src, dst = os.path.join(source, rel), os.path.join(dest_root, rel)
    if other_mount(dst, root_dev):
        return
    mode = sig[0]
    if stat.S_ISDIR(mode):
        if os.path.islink(dst) or (os.path.exists(dst) and not os.path.isdir(dst)):
            os.unlink(dst)
        os.makedirs(dst, exist_ok=True)
        return
    parent = os.path.dirname(dst)
    if os.path.islink(parent) or not os.path.isdir(parent):
        return  # its directory is not (yet) a directory of ours
    tmp = os.path.join(parent, f".stcloud-{os.getpid()}-{os.path.basename(rel)}")
    if os.path.lexists(tmp):
        os.unlink(tmp)
    if stat.S_ISLNK(mode):
        os.symlink(sig[4], tmp)
    elif stat.S_ISREG(mode):
        shutil.copyfile(src, tmp, follow_symlinks=False)
        os.chmod(tmp, stat.S_IMODE(mode) | 0o200)
    else:
        return  # fifos, sockets, devices: not part of an app
    if os.path.isdir(dst) and not os.path.islink(dst):
        shutil.rmtree(dst)
    os.replace(tmp, dst)


def remove(rel: str, dest_root: str, root_dev: int) -> None:
    path = os.path.join(dest_root, rel)
    if other_mount(path, root_dev):
        return
    try:
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        else:
            os.unlink(path)
    except (FileNotFoundError, NotADirectoryError):
        pass  # already gone with its directory, or its directory became a file


def apply(source: str, dest_root: str, old: dict[str, Signature],
          new: dict[str, Signature], last: str) -> int:
    """Bring `dest_root` from `old` to `new`; returns how many entries changed. Files the
    app wrote that the checkout never had are left alone."""
    root_dev = os.lstat(dest_root).st_dev
    changed = sorted((rel for rel, sig in new.items() if old.get(rel) != sig),
                     key=lambda rel: (rel == last, rel.count(os.sep), rel))
    for rel in changed:
        place(source, rel, new[rel], dest_root, root_dev)
    gone = sorted((rel for rel in old if rel not in new), key=len, reverse=True)
    for rel in gone:
        remove(rel, dest_root, root_dev)
    return len(changed) + len(gone)


def link_git(source: str, dest_root: str) -> None:
    git = os.path.join(dest_root, ".git")
    if os.path.isdir(os.path.join(source, ".git")) and not os.path.lexists(git):
        os.symlink(os.path.join(source, ".git"), git)


def quick_signature(source: str) -> tuple[Signature | None, Signature | None]:
    return (signature(source), signature(os.path.join(source, ".git")))


def mirror_forever(source: str, dest_root: str, copied: dict[str, Signature],
                   last: str) -> None:
    """Follow in-place updates of the checkout; never raises (the app keeps running)."""
    quick = quick_signature(source)
    next_full = time.monotonic() + FULL_SCAN
    while True:
        time.sleep(QUICK_CHECK)
        now_quick = quick_signature(source)
        if now_quick == quick and time.monotonic() < next_full:
            continue
        quick, next_full = now_quick, time.monotonic() + FULL_SCAN
        try:
            current = scan(source)
            if current != copied:
                count = apply(source, dest_root, copied, current, last)
                copied = current
                print(f"stcloud: working directory updated from the checkout "
                      f"({count} entries)", file=sys.stderr, flush=True)
        except OSError as exc:
            print(f"stcloud: could not update the working directory from the checkout: "
                  f"{exc}", file=sys.stderr, flush=True)


def place_secrets(path: str, dest_root: str) -> None:
    """For a Streamlit too old for `secrets.files`: the runtime secrets at the project's
    own path, `.streamlit/secrets.toml` of the working directory (replacing a file the
    repository committed there, as the newer releases' `secrets.files` does)."""
    if not path:
        return
    target = os.path.join(dest_root, ".streamlit", "secrets.toml")
    os.makedirs(os.path.dirname(target), exist_ok=True)
    if os.path.islink(target) or os.path.exists(target):
        os.remove(target)
    with open(path, "rb") as src, open(target, "wb") as out:
        out.write(src.read())
    os.chmod(target, 0o600)


def main(argv: list[str]) -> None:
    if len(argv) < 4 or argv[2] != "--":
        sys.exit("usage: workdir.py SOURCE MAIN_FILE -- SCRIPT ARG...")
    source, last, script = argv[0], argv[1], argv[3]
    dest_root = os.getcwd()
    copied = scan(source)
    try:
        apply(source, dest_root, {}, copied, last)
        link_git(source, dest_root)
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            sys.exit("stcloud: the repository does not fit the app's working directory "
                     "(app_workdir_size_mb); make it smaller or ask the operator to raise "
                     "the limit")
        raise
    place_secrets(os.environ.pop(SECRETS_COPY_ENV, ""), dest_root)
    threading.Thread(target=mirror_forever, args=(source, dest_root, copied, last),
                     name="stcloud-workdir", daemon=True).start()
    sys.argv = [script, *argv[4:]]
    runpy.run_path(script, run_name="__main__")


if __name__ == "__main__":
    main(sys.argv[1:])
