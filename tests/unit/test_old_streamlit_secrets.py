"""Runtime secrets for a Streamlit too old for `secrets.files` (before it, Streamlit read
only ~/.streamlit/secrets.toml and the working directory's .streamlit/secrets.toml): the
process runtime tells the two apart by the environment's Streamlit, and workdir.py then
places the secrets at the project's path, replacing a file or link the repository
committed there."""

from __future__ import annotations

from pathlib import Path

from supervisor.runtimes import workdir
from supervisor.runtimes.process import reads_secrets_files


def fake_env(root: Path, config_text: str) -> str:
    config = root / "lib" / "python3.9" / "site-packages" / "streamlit" / "config.py"
    config.parent.mkdir(parents=True)
    config.write_text(config_text)
    return str(root)


def test_the_environments_streamlit_says_whether_it_reads_secrets_files(tmp_path: Path
                                                                        ) -> None:
    assert reads_secrets_files(fake_env(tmp_path / "new", '_create_option(\n"secrets.files"'))
    assert not reads_secrets_files(fake_env(tmp_path / "old", '_create_option("server.port"'))
    assert reads_secrets_files(str(tmp_path / "none"))  # unknown: the current behaviour


def test_the_secrets_replace_what_the_repository_committed(tmp_path: Path) -> None:
    secrets = tmp_path / "secrets.toml"
    secrets.write_text('api_key = "from-the-dashboard"\n')
    app = tmp_path / "app"
    (app / ".streamlit").mkdir(parents=True)
    (app / ".streamlit" / "secrets.toml").symlink_to("/etc/passwd")
    workdir.place_secrets(str(secrets), str(app))
    placed = app / ".streamlit" / "secrets.toml"
    assert not placed.is_symlink() and placed.read_text() == secrets.read_text()
    assert placed.stat().st_mode & 0o777 == 0o600
    workdir.place_secrets("", str(tmp_path / "untouched"))
    assert not (tmp_path / "untouched").exists()
