"""A host laid out as a real data dir for the hostile-repository tests: a checkout
(`<data>/apps/1/src-…`) next to a key file with a recognisable secret and a copy of the
database, the symlink targets a repository would commit to reach them (and /etc/shadow),
and checks that no secret byte appears in an error or a log."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import pytest

from backend.platform.settings import Settings
from supervisor.runtimes.base import BuildError, EnvSpec
from tests.support.runtimes import make_runtime

SECRET = "stcloudKEYcafe0f1sh7x9q"  # no dots: a Python-version parser keeps it whole
DB_SECRET = "stcloudDBROW4242zebra"
SHADOW = Path("/etc/shadow")


@dataclasses.dataclass
class Host:
    data: Path
    checkout: Path
    key: Path
    db: Path


def make_host(tmp_path: Path) -> Host:
    """The data dir under `tmp_path` with its key file, database copy and one checkout."""
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


def engine_build(engine: str, settings: Settings, checkout: Path) -> tuple[str, str]:
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
