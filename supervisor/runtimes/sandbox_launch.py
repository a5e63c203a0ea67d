"""The sandbox's network launcher: gives a bubblewrap sandbox outbound network and, for an
app, one forwarded port, then becomes bubblewrap itself.

ProcessRuntime runs `python -I sandbox_launch.py SLIRP4NETNS [HOST_PORT:GUEST_PORT] --
bwrap ARGS…` (standard library only, like logpipe.py). The launcher forks a helper and then
execs bwrap in its own place, adding `--info-fd` and `--block-fd`: the pid, session and
process group the runtime recorded stay bwrap's, whose exit status is the app's. bwrap
makes the namespaces, writes the sandbox's pid on the info fd and waits on the block fd.
The helper reads that pid, starts slirp4netns on the sandbox's network namespace
(`--disable-host-loopback`: the host's 127.0.0.1 ports stay out of reach; its DNS relay is
10.0.2.3), asks it through its API socket to forward 127.0.0.1:HOST_PORT on the host to
GUEST_PORT in the sandbox, and only then unblocks bwrap, so the app never runs without its
network. The helper then exits; slirp4netns stays in the app's process group (stopped with
it) and ends on its own when the sandbox's last process closes its exit fd.

If the network cannot be set up the helper says why on stderr (the app's log) and kills
bwrap: an app is never left running unreachable.
"""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import sys
import tempfile
import time

SETUP_TIMEOUT = 10.0


def _read_child_pid(fd: int, deadline: float) -> int:
    data = b""
    while b"}" not in data:
        if not select.select([fd], [], [], max(deadline - time.monotonic(), 0))[0]:
            raise RuntimeError("bubblewrap did not report the sandbox's pid in time")
        chunk = os.read(fd, 4096)
        if not chunk:
            raise RuntimeError("bubblewrap ended before the sandbox started")
        data += chunk
    return int(json.loads(data[:data.index(b"}") + 1])["child-pid"])


def _wait_loopback(pid: int, deadline: float) -> None:
    """Wait until bwrap has set up the sandbox's loopback: slirp4netns configuring the
    namespace at the same time makes bwrap's netlink request fail."""
    while True:
        try:
            with open(f"/proc/{pid}/net/fib_trie", "rb") as fh:
                if b"127.0.0.1" in fh.read():
                    return
        except OSError:
            raise RuntimeError("the sandbox ended before its network was set up") from None
        if time.monotonic() >= deadline:
            raise RuntimeError("the sandbox's loopback never came up")
        time.sleep(0.001)


def _wait_ready(fd: int, deadline: float) -> None:
    if not select.select([fd], [], [], max(deadline - time.monotonic(), 0))[0] \
            or not os.read(fd, 1):
        raise RuntimeError("slirp4netns did not configure the sandbox's network")


def _forward(api: str, host_port: int, guest_port: int, deadline: float) -> None:
    request = {"execute": "add_hostfwd", "arguments": {
        "proto": "tcp", "host_addr": "127.0.0.1", "host_port": host_port,
        "guest_port": guest_port}}
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(max(deadline - time.monotonic(), 0.1))
        sock.connect(api)
        sock.sendall(json.dumps(request).encode())
        answer = json.loads(sock.recv(4096) or b"{}")
    if "return" not in answer:
        raise RuntimeError(f"port {host_port} could not be forwarded: {answer.get('error')}")


def helper(slirp: str, forward: str, info_fd: int, block_fd: int, exit_fd: int,
           bwrap_pid: int) -> None:
    """Set up the sandbox's network, then unblock bwrap (or kill it on failure)."""
    deadline = time.monotonic() + SETUP_TIMEOUT
    workdir = tempfile.mkdtemp(prefix="stcloud-net-", dir="/run" if os.geteuid() == 0 else None)
    api = os.path.join(workdir, "api.sock")
    sandbox_pid = 0
    try:
        sandbox_pid = _read_child_pid(info_fd, deadline)
        _wait_loopback(sandbox_pid, deadline)
        ready_r, ready_w = os.pipe()
        if os.fork() == 0:  # slirp4netns: stays in the app's group; ends with exit_fd
            os.close(ready_r)
            os.set_inheritable(ready_w, True)
            devnull = os.open(os.devnull, os.O_RDWR)
            os.dup2(devnull, 0)
            os.dup2(devnull, 1)
            os.dup2(devnull, 2)  # its chatter ("exitfd event") is not the app's log
            # Its own sandbox (mount namespace, capabilities dropped) would hide the API
            # socket's directory, so it is used only when no port is forwarded.
            extra = [f"--api-socket={api}"] if forward else ["--enable-sandbox"]
            if os.geteuid() != 0:  # the sandbox's network namespace is its user namespace's
                extra.append(f"--userns-path=/proc/{sandbox_pid}/ns/user")
            os.execv(slirp, [slirp, "--configure", "--mtu=65520", "--disable-host-loopback",
                             "--enable-seccomp", f"--ready-fd={ready_w}",
                             f"--exit-fd={exit_fd}", *extra, str(sandbox_pid), "tap0"])
        os.close(ready_w)
        _wait_ready(ready_r, deadline)
        if forward:
            host_port, _, guest_port = forward.partition(":")
            _forward(api, int(host_port), int(guest_port), deadline)
        os.write(block_fd, b"1")
    except Exception as exc:  # any failure must stop the sandbox
        sys.stderr.write(f"stcloud: the sandbox's network could not be set up: {exc}\n")
        sys.stderr.flush()
        for pid in (sandbox_pid, bwrap_pid):  # the sandbox first: it must never run
            try:
                if pid:
                    os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    finally:
        for remove, path in ((os.unlink, api), (os.rmdir, workdir)):
            try:
                remove(path)
            except OSError:
                pass


def main(argv: list[str]) -> int:
    if "--" not in argv or argv.index("--") not in (2, 3):
        print("usage: sandbox_launch.py SLIRP4NETNS [HOST_PORT:GUEST_PORT] -- bwrap ARGS...",
              file=sys.stderr)
        return 64
    split = argv.index("--")
    slirp, forward, command = argv[1], (argv[2] if split == 3 else ""), argv[split + 1:]
    info_r, info_w = os.pipe()
    block_r, block_w = os.pipe()
    exit_r, exit_w = os.pipe()  # slirp4netns ends when every holder of exit_w is gone
    os.set_inheritable(info_w, True)
    os.set_inheritable(block_r, True)
    os.set_inheritable(exit_w, True)
    bwrap_pid = os.getpid()
    if os.fork() == 0:
        os.close(info_w)
        os.close(block_r)
        os.close(exit_w)
        os.set_inheritable(exit_r, True)
        try:
            helper(slirp, forward, info_r, block_w, exit_r, bwrap_pid)
        finally:
            os._exit(0)
    os.close(info_r)
    os.close(block_w)
    os.close(exit_r)
    os.execv(command[0], [command[0], "--info-fd", str(info_w), "--block-fd", str(block_r),
                          *command[1:]])


if __name__ == "__main__":
    sys.exit(main(sys.argv))
