"""What an app container is, for both Docker engines: its name, its labels and its arguments.

The Docker runtime creates a container from `container_args`; the swarm runtime translates
the very same arguments into a task template (`swarm_spec.task_template`), so nothing about
what an app sees is defined twice.

Names and labels. A container (or service) is `stcloud-<install>-<app name>-<app id>`,
where `<install>` is a short hash of `settings.data_dir`: two installations on one daemon
(parallel test runs) never see each other's instances. Labels `stcloud.install`,
`stcloud.component=app`, `stcloud.app_id`, `stcloud.generation` are what `list()` adopts
by. A second instance of an app started alongside (zero-downtime redeploy) is
`…-<app id>-<token>`, labelled `stcloud.instance=<token>`, with `"instance": token` in its
state; finding an instance by labels only ever matches the same token, so stopping the old
instance can never find and stop the new one.

Isolation. An app container gets its checkout read-only at /run/checkout and a writable
/app (a tmpfs of `app_workdir_size_mb` that `workdir.py` fills from it), its secrets
read-only at Streamlit's user-level secrets path (~/.streamlit/secrets.toml, HOME=/tmp),
its log file and the CA bundle, and no other host path; no Docker socket, no host
environment, all capabilities dropped, no-new-privileges, a read-only root filesystem with
a tmpfs /tmp, memory (no swap), CPU and pids limits, tini as PID 1, and port 8501.

Logs. The container's stdout/stderr are redirected by `sh -c 'exec … >>LOG 2>&1'` into the
app's log file, bind-mounted (that one file) into the container. Output reaches the file
whether or not a supervisor is running, with no follower task to restart on adoption and
no gap or duplicate across supervisor restarts.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

from docker.types import Mount

from backend.platform.settings import Settings
from supervisor.runtimes import workdir
from supervisor.runtimes.base import AppSpec, EnvRef, Instance, streamlit_command

APP_PORT = 8501
LOG_IN_CONTAINER = "/run/stcloud/output.log"
SECRETS_IN_CONTAINER = "/tmp/.streamlit/secrets.toml"
CA_IN_CONTAINER = "/etc/ssl/certs/ca-certificates.crt"
VENV = "/opt/venv"


def install_id(settings: Settings) -> str:
    """Short hash of the data dir: the installation's namespace on a shared daemon."""
    return hashlib.sha256(str(Path(settings.data_dir).resolve()).encode()).hexdigest()[:8]


def dns_label(text: str) -> str:
    return re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-") or "app"


def container_name(install: str, app_name: str, app_id: int, token: str = "") -> str:
    """`stcloud-<install>-<name>-<id>[-<token>]`, at most 63 characters (one DNS label)."""
    tail = f"{app_id}-{token}" if token else str(app_id)
    room = 63 - len(f"stcloud-{install}--{tail}")
    label = dns_label(app_name)[:max(room, 1)].strip("-") or "app"
    return f"stcloud-{install}-{label}-{tail}"


def app_filters(install: str, *extra: str) -> dict[str, list[str]]:
    """The Docker list filter of this installation's app instances (and `extra` labels)."""
    return {"label": [f"stcloud.install={install}", "stcloud.component=app", *extra]}


def is_app_of(labels: dict[str, str], install: str, app_id: int) -> bool:
    """Whether an object's labels make it an instance of app `app_id` of this installation."""
    return (labels.get("stcloud.install"), labels.get("stcloud.component"),
            labels.get("stcloud.app_id")) == (install, "app", str(app_id))


def has_token(labels: dict[str, str], token: str) -> bool:
    """Whether the labels are those of the instance `token` ("" the app's first instance)."""
    return labels.get("stcloud.instance", "") == token


def adopted_instance(labels: dict[str, str], address: tuple[str, int],
                     state: dict[str, Any]) -> Instance | None:
    """The Instance an adopted container or service is, from its labels (its app id,
    generation and instance token); None when its labels name no app."""
    try:
        app_id = int(labels["stcloud.app_id"])
    except (KeyError, ValueError):
        return None
    if labels.get("stcloud.instance"):
        state = {**state, "instance": labels["stcloud.instance"]}
    return Instance(app_id, address, state, int(labels.get("stcloud.generation", 0)))


def workdir_command(main_file: str) -> list[str]:
    """Streamlit run by workdir.py in the writable /app it fills from the checkout."""
    return [f"{VENV}/bin/python", workdir.SCRIPT_IN_INSTANCE, workdir.CHECKOUT_IN_INSTANCE,
            main_file, "--", *streamlit_command(VENV, main_file, APP_PORT, "0.0.0.0")]


def _quote(word: str) -> str:
    return "'" + word.replace("'", "'\\''") + "'"


def log_config(settings: Settings) -> dict[str, Any]:
    """Docker's json-file driver capped like app.log (app_log_max_bytes, app_log_backups):
    it only holds what bypasses the redirect into the log file (tini, sh errors)."""
    size = settings.app_log_max_bytes or 1 << 20
    return {"Type": "json-file", "Config": {"max-size": str(size),
                                            "max-file": str(settings.app_log_backups + 1)}}


def _mounts(settings: Settings, app: AppSpec) -> list[Mount]:
    # The checkout read-only beside /app, a tmpfs that workdir.py fills from it.
    mounts = [Mount(workdir.CHECKOUT_IN_INSTANCE, str(app.checkout.resolve()),
                    type="bind", read_only=True),
              Mount(workdir.SCRIPT_IN_INSTANCE, workdir.SCRIPT, type="bind", read_only=True),
              Mount(LOG_IN_CONTAINER, str(app.log_path.resolve()), type="bind")]
    if app.secrets_file is not None:
        secrets = str(Path(app.secrets_file).resolve())
        mounts.append(Mount(SECRETS_IN_CONTAINER, secrets, type="bind", read_only=True))
        repo_copy = app.checkout / ".streamlit" / "secrets.toml"
        if repo_copy.is_file() and not repo_copy.is_symlink():
            # A secrets file committed to the repo is hidden by the dashboard's one.
            mounts.append(Mount("/app/.streamlit/secrets.toml", secrets, type="bind",
                                read_only=True))
    if settings.ca_bundle_path is not None:
        mounts.append(Mount(CA_IN_CONTAINER, str(settings.ca_bundle_path), type="bind",
                            read_only=True))
    return mounts


def container_args(settings: Settings, install: str, app: AppSpec, env: EnvRef,
                   token: str = "") -> dict[str, Any]:
    """The `containers.create` keyword arguments of an app instance (all but the image,
    the name and the network). Touches the app's log file, which is bind-mounted."""
    app.log_path.parent.mkdir(parents=True, exist_ok=True)
    app.log_path.touch(exist_ok=True)
    environment = {**app.env_vars, "PYTHONUNBUFFERED": "1", "HOME": "/tmp",
                   "PYTHONDONTWRITEBYTECODE": "1"}
    if settings.ca_bundle_path is not None:
        environment.update(SSL_CERT_FILE=CA_IN_CONTAINER, REQUESTS_CA_BUNDLE=CA_IN_CONTAINER)
    command = " ".join(_quote(w) for w in workdir_command(app.main_file))
    memory = f"{int(app.memory_limit_mb)}m"
    workdir_mb = max(1, int(settings.app_workdir_size_mb))
    labels = {"stcloud.install": install, "stcloud.component": "app",
              "stcloud.app_id": str(app.app_id), "stcloud.app": app.name,
              "stcloud.generation": str(app.generation), "stcloud.dep_hash": env.dep_hash}
    if token:
        labels["stcloud.instance"] = token
    kwargs: dict[str, Any] = {
        "command": ["sh", "-c", f"exec {command} >>{LOG_IN_CONTAINER} 2>&1"],
        "working_dir": "/app", "environment": environment,
        "mounts": _mounts(settings, app), "labels": labels,
        "ports": {f"{APP_PORT}/tcp": ("127.0.0.1", None)},
        "mem_limit": memory, "memswap_limit": memory, "read_only": True,
        "tmpfs": {"/tmp": f"rw,nosuid,nodev,size={int(app.memory_limit_mb)}m",
                  workdir.APP_DIR: f"rw,exec,nosuid,nodev,size={workdir_mb}m,"
                                   f"mode={workdir.TMPFS_MODE:o}"},
        "cap_drop": ["ALL"], "security_opt": ["no-new-privileges"], "privileged": False,
        "init": True, "restart_policy": {"Name": "no"}, "log_config": log_config(settings)}
    if settings.docker_cpus > 0:
        kwargs["nano_cpus"] = int(settings.docker_cpus * 1e9)
    if settings.docker_pids_limit > 0:
        kwargs["pids_limit"] = settings.docker_pids_limit
    return kwargs
