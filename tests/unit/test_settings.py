"""Settings: one typed table, every entry documented, loaded from file, env and overrides."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from backend.platform.settings import PROJECT_ROOT, Settings
from backend.platform.settings_load import load_settings, setting_help


def test_every_setting_is_documented_in_the_operator_guide() -> None:
    guide = (PROJECT_ROOT / "docs" / "operator-guide.md").read_text()
    missing = [n for n in setting_help() if f"`STCLOUD_{n.upper()}`" not in guide]
    assert not missing, f"document these settings in docs/operator-guide.md: {missing}"
    assert all(text.strip() for text in setting_help().values())


def test_sources_in_priority_order(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text('domain = "cloud.example"\nport = 9000\n')
    s = load_settings(env={"STCLOUD_DATA_DIR": str(tmp_path), "STCLOUD_PORT": "9100",
                           "DATABASE_URL": "postgresql://u:pw@db/x"})
    assert s.domain == "cloud.example" and s.port == 9100
    assert s.db_url == "postgresql://u:pw@db/x"
    assert s.masked()["database_url"] == "postgresql://u:***@db/x"
    assert load_settings(env={}, data_dir=tmp_path, port=1).port == 1


def test_defaults_and_errors(tmp_path: Path) -> None:
    s = load_settings(env={"STCLOUD_DATA_DIR": str(tmp_path / "d")})
    assert (s.domain, s.port, s.runtime, s.memory_limit_mb) == ("localhost", 8080, "auto", 1024)
    assert s.db_url == f"sqlite:///{tmp_path / 'd' / 'cloud.db'}"
    assert s.public_url("app") == "http://app.localhost:8080"
    assert dataclasses.replace(s, scheme="https", public_port=443).public_url() == \
        "https://localhost"
    with pytest.raises(ValueError, match="runtime"):
        load_settings(env={"STCLOUD_RUNTIME": "kubernetes"})
    assert s.env_sharing == "installation" and s.uv_cache_for("") == s.uv_cache_path
    assert s.uv_cache_for("workspace-3") == s.uv_cache_path / "scopes" / "workspace-3"
    with pytest.raises(ValueError, match="env_sharing"):
        load_settings(env={"STCLOUD_ENV_SHARING": "team"})
    with pytest.raises(ValueError, match="port"):
        load_settings(env={"STCLOUD_PORT": "eighty"})
    (tmp_path / "bad.toml").write_text("nonsense = 1\n")
    with pytest.raises(ValueError, match="Unknown setting"):
        load_settings(env={"STCLOUD_CONFIG": str(tmp_path / "bad.toml")})


def test_to_env_round_trips(tmp_path: Path) -> None:
    s = load_settings(env={}, data_dir=tmp_path, port=8123, reconcile_interval=0.5)
    assert load_settings(env=s.to_env()) == s
    assert isinstance(Settings().port, int)
