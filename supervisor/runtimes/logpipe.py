"""The process runtime's log writer: copies an app's output to `app.log`, rotating by size
(`app.log` → `app.log.1` → … → `app.log.N`, the oldest dropped), so one app's logs on disk
stay under `max_bytes * (backups + 1)`.

ProcessRuntime starts an app as `python -I logpipe.py PATH MAX_BYTES BACKUPS -- COMMAND…`
(standard library only). This launcher makes a pipe, forks the writer, and then execs
COMMAND in its own place, with stdout and stderr on the pipe: the app keeps the pid,
session and process group the runtime recorded (adoption, `killpg` and exit codes work as
before), and the writer is the app's child in the same group, so stopping the app's group
stops it too, and the output keeps flowing to disk while no supervisor runs. The writer
re-execs itself (`--pump`, working directory `/`), so no process but the app looks like
the app (command line, cwd). It ignores SIGTERM/SIGINT/SIGHUP so that the app's last lines
are written, and ends when the app closes its end of the pipe.

`logpipe.py PATH MAX_BYTES BACKUPS --control FIFO -- COMMAND…` (a warm slot of the pool,
`warm_pool.py`) also reads lines from the FIFO: each is a new PATH, the file from then on
(the slot's own log until it becomes an app's instance, then the app's `app.log`). The FIFO
is read before the output whenever both are ready, so what the app writes after the
supervisor wrote the switch goes to the new file.
"""

from __future__ import annotations

import os
import select
import signal
import sys


def rotate(path: str, backups: int) -> None:
    """app.log.(N-1) → app.log.N, …, app.log → app.log.1 (the oldest is dropped)."""
    if backups <= 0:
        os.truncate(path, 0)
        return
    for i in range(backups - 1, 0, -1):
        if os.path.exists(f"{path}.{i}"):
            os.replace(f"{path}.{i}", f"{path}.{i + 1}")
    if os.path.exists(path):
        os.replace(path, f"{path}.1")


def copytruncate(path: str, max_bytes: int, backups: int) -> bool:
    """Rotate a log whose writer keeps it open in append mode and cannot be told to reopen
    it (the Docker runtime's bind-mounted app.log): copy its last `max_bytes` to `.1`, then
    truncate it in place. Lines written between the copy and the truncate are lost, and
    the file can pass `max_bytes` by what is written between two calls (the caller's
    period). Returns True when it rotated."""
    try:
        size = os.stat(path).st_size
    except FileNotFoundError:
        return False
    if max_bytes <= 0 or size <= max_bytes:
        return False
    for i in range(backups - 1, 0, -1):
        if os.path.exists(f"{path}.{i}"):
            os.replace(f"{path}.{i}", f"{path}.{i + 1}")
    if backups > 0:
        tmp = f"{path}.1.tmp"
        with open(path, "rb") as src, open(tmp, "wb") as dst:
            src.seek(max(0, size - max_bytes))
            dst.write(src.read(max_bytes))
        os.replace(tmp, f"{path}.1")
    os.truncate(path, 0)
    return True


def switched(control: int, path: str) -> str:
    """The last path written on the control FIFO (`path` when none was)."""
    lines = os.read(control, 65536).decode(errors="replace").splitlines()
    named = [line.strip() for line in lines if line.strip()]
    return named[-1] if named else path


def pump(src: int, path: str, max_bytes: int, backups: int, control_path: str = "") -> None:
    out = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    size = os.fstat(out).st_size
    # O_RDWR: the FIFO never reads as ended when its writer closes it
    control = os.open(control_path, os.O_RDWR | os.O_NONBLOCK) if control_path else -1
    while True:
        if control >= 0:
            ready = select.select([control, src], [], [])[0]
            if control in ready:
                new = switched(control, path)
                if new != path:
                    os.close(out)
                    path = new
                    out = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
                    size = os.fstat(out).st_size
                continue  # read the output only when no switch is waiting
        try:
            data = os.read(src, 65536)
        except InterruptedError:
            continue
        if not data:
            break
        if max_bytes > 0 and len(data) > max_bytes:  # one read bigger than a whole file
            data = data[-max_bytes:]
        if max_bytes > 0 and size + len(data) > max_bytes and size > 0:
            # Fill the current file up to its last whole line, so files start with a line.
            room = max_bytes - size
            cut = data.rfind(b"\n", 0, room) + 1 if room > 0 else 0
            size += _write(out, data[:cut])
            data = data[cut:]
            os.close(out)
            rotate(path, backups)
            out = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_TRUNC, 0o644)
            size = 0
        size += _write(out, data)
    os.close(out)


def _write(fd: int, data: bytes) -> int:
    """Write `data`; on a full disk drop it (the app keeps running). Returns bytes written."""
    if not data:
        return 0
    try:
        return os.write(fd, data)
    except OSError:
        return 0


def launch(path: str, max_bytes: str, backups: str, command: list[str],
           control: str = "") -> None:
    """Fork the writer on a pipe, then become `command` with its output on that pipe."""
    read_end, write_end = os.pipe()
    if os.fork() == 0:  # the writer
        try:
            os.close(write_end)
            os.dup2(read_end, 0)
            os.close(read_end)
            os.closerange(3, 65536)  # nothing the app inherited (e.g. its secrets' memfd)
            os.chdir("/")
            os.execv(sys.executable, [sys.executable, "-I", os.path.abspath(__file__),
                                      "--pump", path, max_bytes, backups,
                                      *([control] if control else [])])
        finally:
            os._exit(70)
    os.close(read_end)
    os.dup2(write_end, 1)
    os.dup2(write_end, 2)
    os.close(write_end)
    os.execvp(command[0], command)


def main(argv: list[str]) -> int:
    if argv[1] == "--pump":
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)
        pump(0, argv[2], int(argv[3]), int(argv[4]), argv[5] if len(argv) > 5 else "")
        return 0
    control = ""
    if len(argv) > 6 and argv[4] == "--control":
        control = argv[5]
        argv = [*argv[:4], *argv[6:]]
    if len(argv) < 6 or argv[4] != "--":
        print("usage: logpipe.py PATH MAX_BYTES BACKUPS [--control FIFO] -- COMMAND...",
              file=sys.stderr)
        return 64
    launch(argv[1], argv[2], argv[3], argv[5:], control)
    return 70  # not reached: exec replaced us


if __name__ == "__main__":
    sys.exit(main(sys.argv))
