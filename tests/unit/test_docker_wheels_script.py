"""The Docker wheels-only phase's script (docker_scripts.wheels_script), run in bash against
a stand-in `uv` that records its calls and writes the pinned list it is told to: uv runs on
the venv only as compile and then ONE sync (never a `uv pip install` after it: that would
start the venv's Python on the new wheels' .pth files with the shared cache writable), the
default Streamlit and app_auth_packages join the compiled set only when the files bring
none, a failed auth compile does not fail the phase, and a failed compile or sync asks for
the sandboxed phase."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from supervisor.runtimes import docker_scripts
from supervisor.runtimes.base import EnvSpec

# Stand-in uv: log the call; `compile … -o FILE` writes PINNED (env) plus a line per extra
# requirements file's content; FAIL_ON names a word that makes a call fail.
FAKE_UV = r'''#!/bin/bash
echo "$*" >> "$CALLS"
if [ -n "${FAIL_ON:-}" ] && [[ "$*" == *"$FAIL_ON"* ]]; then exit 1; fi
if [ "$2" = compile ]; then
  out=""; prev=""; srcs=()
  for a in "$@"; do
    [ "$prev" = -o ] && out="$a"
    [[ "$a" == /* && "$prev" != -o ]] && srcs+=("$a")
    prev="$a"
  done
  { printf '%s\n' $PINNED; for s in "${srcs[@]}"; do
      [[ "$s" == *.in ]] && cat "$s"; done; } > "$out"
fi
exit 0
'''


def run(tmp_path: Path, pinned: str, auth: str = "", fail_on: str = "") -> tuple[int, list[str]]:
    spec = EnvSpec(python_version="3.11", files={"requirements.txt": b"pandas\n"},
                   default_streamlit="1.67.0")
    script = docker_scripts.wheels_script(spec, {}, False, layered=True)
    work = tmp_path / "root"
    (work / "src").mkdir(parents=True)
    (work / "src" / "requirements.txt").write_text("pandas\n")
    script = script.replace("rm -rf /tmp/* /root/.cache", "true")
    for name in ("pinned.txt", "extra.in", "plain.in"):
        script = script.replace(f"/tmp/{name}", str(tmp_path / name))
    script = script.replace(docker_scripts.WORK, str(work / "work")).replace(
        docker_scripts.SRC, str(work / "src"))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "uv").write_text(FAKE_UV)
    (bin_dir / "uv").chmod(0o755)
    calls = tmp_path / "calls"
    env = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "CALLS": str(calls),
           "PINNED": pinned, "FAIL_ON": fail_on, docker_scripts.AUTH_PACKAGES_VAR: auth}
    script = script.replace("export PATH=/stcloud/bin:$PATH", "")
    done = subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True,
                          timeout=30)
    return done.returncode, calls.read_text().splitlines() if calls.exists() else []


def verbs(calls: list[str]) -> list[str]:
    return [c.split()[1] for c in calls]


def test_the_files_bring_everything_one_compile_one_sync(tmp_path: Path) -> None:
    code, calls = run(tmp_path, "pandas==3 streamlit==1.67.0 authlib==1", auth="Authlib==1")
    assert code == 0 and verbs(calls) == ["compile", "sync"], calls
    assert "--no-build" in calls[0] and "--no-build" in calls[1]


def test_streamlit_and_auth_packages_join_the_compiled_set(tmp_path: Path) -> None:
    code, calls = run(tmp_path, "pandas==3", auth="Authlib==1.9.6 httpx==0.28.1")
    assert code == 0 and verbs(calls) == ["compile", "compile", "sync"], calls
    extra = [Path(a) for a in calls[1].split() if a.endswith(".in")]
    assert len(extra) == 1 and extra[0].read_text().split() == [
        "streamlit==1.67.0", "Authlib==1.9.6", "httpx==0.28.1"]
    assert "install" not in " ".join(verbs(calls))


def test_a_failed_auth_compile_keeps_streamlit_and_does_not_fail(tmp_path: Path) -> None:
    code, calls = run(tmp_path, "pandas==3", auth="Authlib==1.9.6", fail_on="extra.in")
    assert code == 0 and verbs(calls) == ["compile", "compile", "compile", "sync"], calls
    assert calls[2].split()[-1].endswith("plain.in"), calls


def test_a_failed_sync_asks_for_the_sandboxed_phase(tmp_path: Path) -> None:
    code, calls = run(tmp_path, "pandas==3 streamlit==1", fail_on="pip sync")
    assert code == docker_scripts.NEEDS_SOURCE_BUILD and verbs(calls) == ["compile", "sync"]
