"""Processes, reference proxies and wrk for bench/proxy.py: free ports and waits, the
processes a run starts (stopped in reverse order), CPU and memory of a process tree, the
wrk/nginx/configurable-http-proxy tools (installed once when missing), nginx's
configuration, and wrk's output parsed."""

import http.client
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from bench import proxy_ws

NODE_DIR = Path.home() / ".cache" / "stcloud-bench" / "node"
CHP = NODE_DIR / "node_modules" / ".bin" / "configurable-http-proxy"


# Processes ---------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(port: int, path: str, host: str, timeout: float = 5) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Host": host})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def wait_http(port: int, path: str, host: str, deadline_s: float, proc=None) -> None:
    deadline = time.monotonic() + deadline_s
    while True:
        try:
            if http_get(port, path, host, timeout=2)[0] == 200:
                return
        except OSError:
            pass
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process for port {port} exited with {proc.returncode}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{host}{path} on port {port} not answering after "
                               f"{deadline_s:.0f} s")
        time.sleep(0.05)


def wait_port(port: int, deadline_s: float, proc=None) -> None:
    deadline = time.monotonic() + deadline_s
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            pass
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process for port {port} exited with {proc.returncode}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"port {port} not listening after {deadline_s:.0f} s")
        time.sleep(0.05)


class Procs:
    """The processes this run started; stopped (by pid) in reverse order at the end."""

    def __init__(self) -> None:
        self.items: list[tuple[str, subprocess.Popen]] = []

    def start(self, name: str, cmd: list[str], log: Path, **kw) -> subprocess.Popen:
        fh = open(log, "wb")
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT,
                                start_new_session=True, **kw)
        self.items.append((name, proc))
        return proc

    def stop_all(self) -> None:
        for _, proc in reversed(self.items):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for _, proc in reversed(self.items):
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)


def child_pids(pid: int) -> list[int]:
    """pid and its descendants (nginx master + worker)."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    parents[int(entry)] = int(fh.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                pass
    out, frontier = [pid], [pid]
    while frontier:
        current = frontier.pop()
        for child, parent in parents.items():
            if parent == current:
                out.append(child)
                frontier.append(child)
    return out


def tree_cpu(pid: int | None) -> float:
    return sum(proxy_ws.cpu_seconds(p) for p in child_pids(pid)) if pid else 0.0


def tree_rss(pid: int | None) -> int:
    return sum(proxy_ws.rss_kib(p) for p in child_pids(pid)) if pid else 0


# Reference proxies -------------------------------------------------------------------------
def ensure_tools(install: bool) -> dict[str, str]:
    """Paths of wrk, nginx, chp; installs missing ones once when allowed. Missing → ''."""
    def run(cmd: list[str], timeout: float = 240) -> bool:
        try:
            return subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                  timeout=timeout,
                                  env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
                                  ).returncode == 0
        except (OSError, subprocess.TimeoutExpired):
            return False

    nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists()
                                      else "")
    wrk = shutil.which("wrk") or ""
    if install and os.geteuid() == 0 and shutil.which("apt-get") and not (wrk and nginx):
        packages = [p for p, have in (("wrk", wrk), ("nginx-light", nginx)) if not have]
        if not run(["apt-get", "install", "-y", "-qq", *packages]):
            run(["apt-get", "update", "-qq"])
            run(["apt-get", "install", "-y", "-qq", *packages])
        wrk = shutil.which("wrk") or ""
        nginx = shutil.which("nginx") or ("/usr/sbin/nginx"
                                          if Path("/usr/sbin/nginx").exists() else "")
    if install and not CHP.exists() and shutil.which("npm"):
        NODE_DIR.mkdir(parents=True, exist_ok=True)
        run(["npm", "install", "--prefix", str(NODE_DIR), "--no-audit", "--no-fund",
             "configurable-http-proxy"])
    return {"wrk": wrk, "nginx": nginx, "chp": str(CHP) if CHP.exists() else ""}


NGINX_CONF = """worker_processes 1;
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log warn;
events {{ worker_connections 8192; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/nginx-body;
    proxy_temp_path {tmp}/nginx-proxy;
    fastcgi_temp_path {tmp}/nginx-fastcgi;
    uwsgi_temp_path {tmp}/nginx-uwsgi;
    scgi_temp_path {tmp}/nginx-scgi;
    map $http_upgrade $connection_upgrade {{ default upgrade; '' ''; }}
    upstream streamlit {{ server 127.0.0.1:{upstream}; keepalive 64; }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://streamlit;
            proxy_http_version 1.1;
            proxy_set_header Host $http_host;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_read_timeout 3600s;
        }}
    }}
}}
"""


# wrk -----------------------------------------------------------------------------------------
_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text.strip())
    if not match:
        raise ValueError(f"unexpected wrk latency {text!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def parse_wrk(out: str) -> dict:
    res: dict = {}
    for pct in ("50", "75", "90", "99"):
        m = re.search(rf"^\s+{pct}%\s+(\S+)", out, re.M)
        if m:
            res[f"p{pct}_ms"] = _ms(m.group(1))
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    res["rps"] = float(m.group(1)) if m else 0.0
    m = re.search(r"(\d+) requests in ([\d.]+\w+)", out)
    res["requests"] = int(m.group(1)) if m else 0
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    res["socket_errors"] = sum(int(g) for g in m.groups()) if m else 0
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    res["non_2xx"] = int(m.group(1)) if m else 0
    return res


def wrk(tool: str, port: int, path: str, host: str, connections: int, seconds: float
        ) -> dict:
    cmd = [tool, "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--latency",
           "--timeout", "10s", "-H", f"Host: {host}", f"http://127.0.0.1:{port}{path}"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 30).stdout
    return parse_wrk(out)
