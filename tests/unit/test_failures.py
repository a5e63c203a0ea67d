"""The failure explainer and the host-path sanitizer on output the real tools printed here
(tests/unit/failure_samples/README.md says how each sample was made)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from backend.apps import failures
from backend.apps import log_files as logs
from backend.platform import host_paths
from backend.platform.settings import Settings

SAMPLES = Path(__file__).parent / "failure_samples"


def sample(name: str) -> str:
    return (SAMPLES / name).read_text()


def test_missing_package_is_named_with_the_file_to_fix() -> None:
    got = failures.explain("resolve", sample("uv_missing_package.txt"))
    assert got.summary == "No package named 'nonexistent-package-xyz-stcloud' on the package index."
    assert "requirements.txt" in got.fix
    assert any(line.startswith("error: No solution found") for line in got.lines)


def test_missing_version_names_the_pin() -> None:
    got = failures.explain("resolve", sample("uv_missing_version.txt"))
    assert got.summary == "requirements.txt pins streamlit==0.0.1, which does not exist."


def test_pandas_without_wheel_keeps_the_line_that_matters() -> None:
    text = sample("uv_pandas_142_py311.txt")
    got = failures.explain("build", text)
    assert got.summary.startswith("pandas==1.4.2 has no wheel for Python 3.11 and its source "
                                  "build failed")
    assert "older Python" in got.fix and "newer pandas" in got.fix
    # the old "last 15 lines" dropped it; it is the first line kept now
    assert "Failed to build `pandas==1.4.2`" not in "\n".join(text.splitlines()[-15:])
    assert any("Failed to build `pandas==1.4.2`" in line for line in got.lines)
    assert len(got.lines) <= failures.MAX_LINES
    assert sum(len(line) + 1 for line in got.lines) <= failures.MAX_CHARS + 2


def test_sdist_that_fails_to_build_quotes_its_exception() -> None:
    got = failures.explain("build", sample("uv_sdist_build_failed.txt"))
    assert got.summary.startswith("stcloud-badpkg==1.0 has no wheel")
    assert "RuntimeError: this package cannot be built here" in got.summary


def test_unparsable_requirement_quotes_the_line() -> None:
    got = failures.explain("resolve", sample("uv_parse_error.txt"))
    assert "this is not a requirement ((" in got.summary


def test_unreachable_index() -> None:
    got = failures.explain("download", sample("uv_index_unreachable.txt"))
    assert got.summary.startswith("The package index could not be reached")


@pytest.mark.parametrize("name,expected", [
    ("git_missing_repository.txt", "could not be read: it does not exist"),
    ("git_missing_branch.txt", "The branch 'nobranch' does not exist"),
    ("git_unknown_host.txt", "could not be found"),
    ("git_ssh_refused.txt", "could not be reached"),
])
def test_git_failures(name: str, expected: str) -> None:
    got = failures.explain("clone", sample(name), repo="R", branch="")
    assert expected in got.summary
    assert got.lines  # git's own message is kept


def test_module_not_found_at_start_suggests_the_package() -> None:
    got = failures.explain("start", sample("streamlit_module_not_found.txt"))
    assert got.summary == "ModuleNotFoundError: No module named 'foo_missing_mod'."
    assert got.fix == "Add foo_missing_mod to requirements.txt and push."
    assert "\x1b" not in got.message()
    sk = failures.explain("start", "ModuleNotFoundError: No module named 'sklearn'")
    assert "scikit-learn" in sk.fix


def test_health_timeout() -> None:
    got = failures.explain("health", "Collecting usage statistics.\n", timeout_s=60)
    assert got.summary == "The app did not answer its health check within 60 s."


def test_sanitizer_hides_host_paths(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    text = (sample("uv_sdist_build_failed.txt")
            + f"\n{tmp_path}/envs/abc123.building-x1/.stcloud-src/requirements.txt"
            + f"\n{tmp_path}/envs/abc123/lib/python3.11/site-packages/x.py"
            + f"\n{tmp_path}/apps/7/src-0123456789ab-xyz/streamlit_app.py"
            + f"\n{tmp_path}/logs/7/app.log"
            + "\n/root/.pyenv/versions/3.11.7/bin/python3.11")
    out = host_paths.sanitize(settings, text)
    assert str(tmp_path) not in out and "/root/" not in out and ".pyenv" not in out
    assert "\nrequirements.txt\n" in out
    assert "<env>/lib/python3.11/site-packages/x.py" in out
    assert "/app/streamlit_app.py" in out
    assert "<python>/bin/python3.11" in out


def test_app_log_shows_the_public_url(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    shown = host_paths.show_app_log(settings, sample("streamlit_module_not_found.txt"),
                                    "http://hello.localhost:8080")
    assert "127.0.0.1" not in shown
    assert "  URL: http://hello.localhost:8080" in shown
    assert sys.prefix not in shown  # the interpreter that printed the traceback
    assert "You can now view your Streamlit app in your browser." in shown


def test_current_run_lines_skip_earlier_runs(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_text("earlier run 1\nearlier run 2\n")
    logs.mark_run_start(log)
    with open(log, "a") as fh:
        fh.write("this run\n")
    assert logs.current_run_lines(log) == "this run"
    os.replace(log, tmp_path / "app.log.1")  # rotated: the new file is all this run's
    log.write_text("after rotation\n")
    assert logs.current_run_lines(log) == "after rotation"
    logs.mark_run_start(log)
    assert logs.current_run_lines(log) == ""
    (tmp_path / "app.log.run-start").unlink()  # never marked: the tail, as before
    assert logs.current_run_lines(log) == "after rotation"


def test_conflicting_pins_are_named() -> None:
    got = failures.explain("resolve", sample("uv_conflict.txt"))
    assert got.summary.startswith("The versions that requirements.txt requires cannot be "
                                  "installed together. uv says: Because streamlit>=1.67.0 "
                                  "depends on protobuf>=5.26.1,<8")
    assert got.fix == ("Loosen or remove the pins of protobuf, streamlit in requirements.txt "
                       "so that they agree.")


def test_source_tree_that_fails_to_build() -> None:
    got = failures.explain("install", sample("uv_local_tree_build_failed.txt"))
    assert got.summary == ("A package of requirements.txt failed to build from source "
                           "(RuntimeError: this package cannot be built here: missing libfoo "
                           "headers).")
    assert "a path in requirements.txt" in got.fix and "Python 3.11" in got.fix


def test_sanitizer_hides_paths_printed_relative_to_the_working_directory(tmp_path: Path) -> None:
    """uv prints a venv under its working directory relative to it (seen: `Using Python
    3.11.7 environment at: pytest-of-root/…/envs0/<hash>.building-…` from a build in /tmp)."""
    settings = Settings(data_dir=tmp_path / "data", envs_dir=tmp_path / "envs0")
    relative = str(tmp_path / "envs0").lstrip("/").split("/", 1)[1]
    out = host_paths.sanitize(settings, f"Using Python 3.11.7 environment at: {relative}/"
                                        "f8149cdc.building-d4i38iap\nenvs stays\n")
    assert out == "Using Python 3.11.7 environment at: <env>\nenvs stays\n"
