"""The shell scripts of a Docker env build: the wheels-only phase and the sandboxed phase.

Build code of a package (an sdist's setup.py, an in-tree build backend, a local package of
the repository) is the repository's code and runs as root in its build container. The
package cache is shared by every build of a scope (`Settings.uv_cache_for`), so no build
that may run such code gets the cache writable:

- **wheels-only** (`wheels_script`): apt for packages.txt (Debian's packages), then uv
  with the cache writable, run only on the venv as it was before the phase (the Streamlit
  layer's, `docker_layers`, made once per base image from no repository's input; or a new
  empty one): `uv pip compile --no-build` pins what the files ask for (plus the default
  Streamlit and app_auth_packages when they bring none), then ONE `uv pip sync
  --no-build` makes the venv exactly that set. Nothing of the repository runs: `--no-build`
  refuses every source build, bytecode is not compiled (that would start the venv's
  Python) and uv starts the venv's interpreter (to query it) before it installs anything;
  another uv call after the sync would run the `.pth` files of the wheels just installed.
  On the layer, what it already holds is neither copied nor committed again. Exit 0: the
  environment is complete and is committed. Exit `NEEDS_SOURCE_BUILD`: something must be
  built from source (or uv failed).
- **sandboxed** (`build_script`): the whole install again in a fresh container whose cache
  is a copy-on-write view of the shared one (`docker_cache`): warm reads, writes dropped
  with the build. Package build code runs here.

Both scripts print `==> phase NAME` lines (`supervisor.builds.phases`) where apt and uv's
part begin; uv's own lines (`Resolved`, `Prepared`, `Installed`, `Audited`) mark the rest.
"""

from __future__ import annotations

import posixpath
import shlex

from supervisor.builds.plan import InstallPlan
from supervisor.runtimes.base import EnvSpec

VENV = "/opt/venv"
CA_PATH = "/etc/stcloud/ca.crt"  # fixed path in build containers (apt may rewrite /etc/ssl)
SRC = "/stcloud/src"
WORK = "/tmp/stcloud-src"  # the build's writable copy of SRC; requirement paths point here
NEEDS_SOURCE_BUILD = 20

# Exit codes of the build scripts -> what failed, for the person reading the error.
STEPS = {10: "apt-get could not install the Debian packages of packages.txt",
         11: "the virtual environment could not be created",
         12: "uv could not install the Python dependencies",
         13: "uv could not install Streamlit"}
STREAMLIT_FILE = f"{VENV}/lib/python3*/site-packages/streamlit/__init__.py"
AUTHLIB_FILE = f"{VENV}/lib/python3*/site-packages/authlib/__init__.py"
AUTH_PACKAGES_VAR = "STCLOUD_AUTH_PACKAGES"  # the setting app_auth_packages, in the build env


def auth_lines() -> list[str]:
    """Install `app_auth_packages` (Authlib, httpx: st.login()) unless the environment has
    Authlib; best effort, never a failed build. Wheels only: both are pure Python."""
    var = AUTH_PACKAGES_VAR
    return [f'if [ -n "${{{var}:-}}" ] && ! ls {AUTHLIB_FILE} >/dev/null 2>&1; then',
            f'  echo "==> Installing ${var} for st.login() with the platform\'s accounts"',
            f"  uv pip install --no-build ${var} || echo \"==> Those did not install here: "
            "st.login() will ask for Authlib (add Authlib to requirements.txt)\"",
            "fi"]


def phase(name: str) -> str:
    return f'echo "==> phase {name}"'


def _head(spec: EnvSpec, env: dict[str, str], has_ca: bool, venv: bool = True) -> list[str]:
    """Exports, apt for packages.txt, the venv (unless the image has it) and the writable
    copy of the sources."""
    lines = ["set -u", "export PATH=/stcloud/bin:$PATH"]
    lines += [f"export {k}={shlex.quote(v)}" for k, v in env.items()]
    if spec.packages:
        pkgs = " ".join(shlex.quote(p) for p in spec.packages)
        apt_ca = f" -o Acquire::https::CAInfo={CA_PATH}" if has_ca else ""
        lines += [phase("packages"), f'echo "==> apt-get install {pkgs}"',
                  f"apt-get{apt_ca} update -q || exit 10",
                  f"apt-get{apt_ca} install -y -q --no-install-recommends {pkgs} || exit 10",
                  "apt-get clean; rm -rf /var/lib/apt/lists/*"]
    lines += [phase("resolve")]
    if venv:
        lines += [f'echo "==> uv venv {VENV}"',
                  f"uv venv -q --python /usr/bin/python3 {VENV} || exit 11"]
    # A writable copy: building a local package writes into its folder.
    lines += [f"cp -R {SRC} {WORK} || exit 12"]
    return lines


def _requirements(plan: InstallPlan, fail: int) -> tuple[list[str], str]:
    """(lines preparing the install, the uv arguments naming what to install)."""
    if plan.mode == "uv-lock":
        project = shlex.quote(posixpath.join(WORK, plan.folder))
        return ([f"uv export --project {project} --frozen --no-hashes --no-dev "
                 f"--no-emit-project -q -o /tmp/locked.txt || exit {fail}"],
                "-r /tmp/locked.txt")
    if plan.mode == "requirements":
        return [], "-r " + shlex.quote(posixpath.join(WORK, plan.requirements_path))
    if plan.mode == "pyproject-build":
        return [], "-r " + shlex.quote(posixpath.join(WORK, plan.chosen))
    return [], ""


def layered_ok(spec: EnvSpec) -> bool:
    """Can the layered script build `spec`? Not when its requirements carry hashes (the
    pinned list uv compiles has none) or when uv must build the project to read them."""
    plan = spec.install_plan()
    if plan.mode == "pyproject-build":
        return False
    return not any(b"--hash" in content or b"--require-hashes" in content
                   for content in spec.files.values())


def wheels_script(spec: EnvSpec, env: dict[str, str], has_ca: bool,
                  layered: bool = False) -> str:
    """The wheels-only phase's script (module docstring), on the base image (it makes the
    venv) or on the Streamlit layer (`layered`: the venv is the layer's). Exit 0 with the
    environment made; `NEEDS_SOURCE_BUILD` when something must be built from source (or
    uv failed). uv runs twice on the venv as it was when the script started (compile, then
    sync): Streamlit and app_auth_packages join the compiled set when the files bring
    none, never a later `uv pip install` (that would start the venv's Python on the
    `.pth` files of the wheels just installed, with the cache writable)."""
    plan = spec.install_plan()
    lines = _head(spec, env, has_ca, venv=not layered)
    lines += [f"echo {shlex.quote('==> ' + note)}" for note in spec.notes or plan.notes]
    prepare, what = _requirements(plan, NEEDS_SOURCE_BUILD)
    streamlit = shlex.quote(f"streamlit=={spec.default_streamlit}")
    pin = ("uv pip compile --no-build --emit-index-url --emit-find-links --no-header "
           "-o /tmp/pinned.txt")
    auth = f"${{{AUTH_PACKAGES_VAR}:-}}"
    fail = f"exit {NEEDS_SOURCE_BUILD}"
    what = what.removeprefix("-r ")  # compile takes the files themselves
    lines += prepare
    # The pinned list goes to the file; uv's "Resolved N packages" line to the log.
    lines += [f"{pin} {what} >/dev/null || {fail}" if what else ": > /tmp/pinned.txt",
              ": > /tmp/extra.in",
              "if ! grep -qi '^streamlit==' /tmp/pinned.txt; then",
              f'  echo "==> The app pins no streamlit: installing {streamlit} with it"',
              f"  echo {streamlit} >> /tmp/extra.in",
              "fi",
              f'if [ -n "{auth}" ] && ! grep -qi "^authlib==" /tmp/pinned.txt; then',
              f'  echo "==> Installing {auth} for st.login() with the platform\'s accounts"',
              "  cp /tmp/extra.in /tmp/plain.in",
              f"  printf '%s\\n' {auth} >> /tmp/extra.in",
              f"  if ! {pin} {what} /tmp/extra.in >/dev/null; then",
              '    echo "==> Those did not install here: st.login() will ask for Authlib '
              '(add Authlib to requirements.txt)"',
              f"    [ ! -s /tmp/plain.in ] || {pin} {what} /tmp/plain.in >/dev/null || {fail}",
              "  fi",
              f"elif [ -s /tmp/extra.in ]; then {pin} {what} /tmp/extra.in >/dev/null || {fail}",
              "fi",
              f"uv pip sync --no-build /tmp/pinned.txt || {fail}",
              "rm -rf /tmp/* /root/.cache", 'echo "==> Environment ready"']
    return "\n".join(lines) + "\n"


def layer_script(default_streamlit: str, env: dict[str, str]) -> str:
    """The Streamlit layer's build (`docker_layers`): one wheels-only install of the
    default Streamlit and app_auth_packages into a new venv."""
    lines = ["set -u", "export PATH=/stcloud/bin:$PATH"]
    lines += [f"export {k}={shlex.quote(v)}" for k, v in env.items()]
    streamlit = shlex.quote(f"streamlit=={default_streamlit}")
    lines += [f"uv venv -q --python /usr/bin/python3 {VENV} || exit 11",
              # Compiled here, once: app starts then import Streamlit's bytecode (their
              # containers cannot write it); these packages are ours, not a repository's.
              f"UV_COMPILE_BYTECODE=1 uv pip install --no-build {streamlit} "
              f"${{{AUTH_PACKAGES_VAR}:-}} || exit 13",
              "rm -rf /tmp/* /root/.cache"]
    return "\n".join(lines) + "\n"


def build_script(spec: EnvSpec, env: dict[str, str], has_ca: bool) -> str:
    """The sandboxed phase's script; its exit code names the failed step (`STEPS`).

    The build's environment is exported here rather than given to the container, because
    `docker commit` would copy a container's environment into the image.
    """
    plan = spec.install_plan()
    lines = _head(spec, env, has_ca)
    lines += [f"echo {shlex.quote('==> ' + note)}" for note in spec.notes or plan.notes]
    prepare, what = _requirements(plan, 12)
    lines += prepare
    if what:
        lines += [f"uv pip install {what} || exit 12"]
    streamlit = shlex.quote(f"streamlit=={spec.default_streamlit}")
    lines += [f"if ! {VENV}/bin/python -c 'import streamlit' 2>/dev/null; then",
              f'  echo "==> The app pins no streamlit: installing {streamlit}"',
              f"  if ! uv pip install {streamlit}; then",
              # e.g. Python 3.9, which newer Streamlit releases no longer support
              '    echo "==> That Streamlit does not install here; installing the newest '
              'Streamlit that supports this Python"',
              "    uv pip install streamlit || exit 13",
              "  fi",
              "fi",
              *auth_lines(),
              "rm -rf /tmp/* /root/.cache",
              'echo "==> Environment ready"']
    return "\n".join(lines) + "\n"
