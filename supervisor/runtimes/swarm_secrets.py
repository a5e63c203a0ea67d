"""An app's secrets as a Swarm secret, for the swarm runtime.

The Docker runtime bind-mounts the app's secrets file (`AppSpec.secrets_file`, on the
supervisor's host) read-only at Streamlit's secrets path. A swarm task may run on another
node, where that host path does not exist (or is another file). So a service gets the file's
content as a Swarm secret instead: created on the manager (stored in its raft log, encrypted
at rest), sent only to the node that runs the task and held there in memory, mounted at the
same paths (`SECRET_TARGETS`), 0400 root (the app's user in the container).

One secret per instance and content (`stcloud-<install>-<app id>-<token|main>-<sha256/12>`),
labelled like the app's objects; `prune_secrets` removes those no service of the app uses any
more (after a stop, or once a replaced instance is gone). An empty secrets file stays a bind
mount (Swarm refuses empty secrets).
"""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path
from typing import Any

import docker.errors

from supervisor.runtimes import docker_spec
from supervisor.runtimes.base import AppSpec
from supervisor.runtimes.docker_api import DockerAPI

SECRET_TARGETS = (docker_spec.SECRETS_IN_CONTAINER, "/app/.streamlit/secrets.toml")


def secret_name(install: str, app_id: int, token: str, content: bytes) -> str:
    """At most 64 characters (Swarm's limit): the token is a short hex string."""
    digest = hashlib.sha256(content).hexdigest()[:12]
    return f"stcloud-{install}-{app_id}-{token or 'main'}-{digest}"[:64]


async def attach_secrets(api: DockerAPI, template: dict[str, Any], install: str,
                         app: AppSpec, token: str) -> None:
    """Replace the bind mounts of the secrets file in `template` (a task template) by one
    Swarm secret of its content, mounted at the same targets."""
    spec = template["ContainerSpec"]
    mounts = spec.get("Mounts") or []
    targets = [m["Target"] for m in mounts if m.get("Target") in SECRET_TARGETS]
    if app.secrets_file is None or not targets:
        return
    content = await asyncio.to_thread(Path(app.secrets_file).read_bytes)
    if not content:
        return
    name = secret_name(install, app.app_id, token, content)
    labels = {"stcloud.install": install, "stcloud.component": "secret",
              "stcloud.app_id": str(app.app_id), "stcloud.instance": token}
    secret_id = await _ensure_secret(api, name, content, labels)
    spec["Mounts"] = [m for m in mounts if m.get("Target") not in SECRET_TARGETS]
    spec["Secrets"] = [{"SecretID": secret_id, "SecretName": name,
                        "File": {"Name": target, "UID": "0", "GID": "0", "Mode": 0o400}}
                       for target in targets]


async def _ensure_secret(api: DockerAPI, name: str, content: bytes,
                         labels: dict[str, str]) -> str:
    """The id of the secret `name`, created with `content` when missing (the name holds
    the content's hash, so one found under it has that content)."""
    low: Any = api.client().api
    try:
        created = await api.call(low.create_secret, name, content, labels)
        return str(created["ID"])
    except docker.errors.APIError as exc:
        if exc.status_code != 409:
            raise
    found = await api.call(low.inspect_secret, name)
    return str(found["ID"])


async def prune_secrets(api: DockerAPI, install: str, app_id: int) -> None:
    """Remove the app's secrets that none of its services names any more."""
    low: Any = api.client().api
    secrets = await api.call(low.secrets, filters={"label": [
        f"stcloud.install={install}", f"stcloud.app_id={app_id}",
        "stcloud.component=secret"]})
    services = await api.call(low.services, filters=docker_spec.app_filters(
        install, f"stcloud.app_id={app_id}"))
    used = {ref.get("SecretID") for service in services
            for ref in service["Spec"]["TaskTemplate"]["ContainerSpec"].get("Secrets") or []}
    for secret in secrets:
        if secret["ID"] in used:
            continue
        try:
            await api.call(low.remove_secret, secret["ID"])
        except docker.errors.APIError:  # still in use by a service being removed: later
            pass
