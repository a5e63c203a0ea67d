"""Failures a person can act on: what went wrong in a deploy, named after the package or file
responsible, with what to do next, and only the lines of output that matter.

`explain(phase, output)` reads the whole output of one failed step (uv's, git's, or the
app's log) and returns an `Explanation`. Phases: clone, resolve, download, build, install,
start, health. The phase is a hint: uv reports resolve, download and build failures in one
step, so the text decides where it can, and the phase gives the fallback wording.

The patterns are those of uv 0.13, git 2.x and Streamlit 1.67 as they print them (samples
in tests/unit/failure_samples/). Nothing here runs a process or reads a file: callers pass text,
and sanitize it of host paths first (`backend.platform.host_paths`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

PHASES = ("clone", "resolve", "download", "build", "install", "start", "health")
MAX_LINES = 20
MAX_CHARS = 2000
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")

# Import names whose package on the index has another name (the usual surprises).
PACKAGE_OF_MODULE = {"sklearn": "scikit-learn", "cv2": "opencv-python-headless",
                     "PIL": "pillow", "yaml": "pyyaml", "bs4": "beautifulsoup4",
                     "dotenv": "python-dotenv", "skimage": "scikit-image",
                     "google.generativeai": "google-generativeai", "docx": "python-docx",
                     "dateutil": "python-dateutil", "Crypto": "pycryptodome"}


@dataclass(frozen=True)
class Explanation:
    """What happened (naming the package or file), what to do, and the lines that show it."""

    summary: str
    fix: str
    lines: tuple[str, ...] = ()

    def message(self) -> str:
        """The text a deployer reads: summary and fix, then the relevant output."""
        head = f"{self.summary} {self.fix}".strip()
        return head + ("\n\n" + "\n".join(self.lines) if self.lines else "")


def strip_ansi(text: str) -> str:
    return ANSI.sub("", text)


def relevant_lines(output: str, limit: int = MAX_LINES,
                   max_chars: int = MAX_CHARS) -> tuple[str, ...]:
    """The lines that say what failed: uv's `error:`/`cause:`/`hint:` lines, git's `fatal:`,
    a traceback's final exception, and the last line; at most `limit` lines and
    `max_chars` characters (a long traceback's middle is left out)."""
    lines = [ln.rstrip() for ln in strip_ansi(output).splitlines()]
    keep: list[int] = []
    for i, line in enumerate(lines):
        bare = line.strip()
        if re.match(r"^(error|cause|hint|fatal|warning|remote|ERROR|E:)\b:?", bare) or \
                re.match(r"^[A-Za-z_][\w.]*(Error|Exception|Exit):", bare) or \
                re.match(r"^(ssh|Please make sure)", bare):
            keep.append(i)
    nonempty = [i for i, ln in enumerate(lines) if ln.strip()]
    if nonempty and nonempty[-1] not in keep:
        keep.append(nonempty[-1])
    chosen = [lines[i].strip() for i in sorted(set(keep))]
    if not chosen:
        return ()
    if len(chosen) > limit:  # the first (what failed) and the last ones (why)
        chosen = chosen[:3] + ["…"] + chosen[-(limit - 4):]
    out: list[str] = []
    used = 0
    for line in chosen:
        line = line if len(line) <= 300 else line[:297] + "…"
        if used + len(line) > max_chars:
            out.append("…")
            break
        out.append(line)
        used += len(line) + 1
    return tuple(out)


def _python_of(output: str, python_version: str) -> str:
    found = re.search(r"Using (?:C|CPython |Python )?(\d+\.\d+)(?:\.\d+)? "
                      r"(?:environment|interpreter)", output)
    return found.group(1) if found else python_version


def _last_exception(output: str) -> str:
    found = re.findall(r"^\s*([A-Za-z_][\w.]*(?:Error|Exception): .*)$", output, re.M)
    return found[-1].strip() if found else ""


def _dependency_failure(text: str, dep_file: str, python: str) -> tuple[str, str] | None:
    """(summary, fix) for uv's output, when it shows a known failure."""
    if m := re.search(r"Because (\S+?) was not found in the (?:package registry|provided "
                      r"package locations)", text):
        name = m.group(1)
        return (f"No package named '{name}' on the package index.",
                f"Check the name '{name}' in {dep_file} (a typo, or a module name that is "
                "not the package's name).")
    if m := re.search(r"Because there is no version of (\S+?)(?: and|,| we|$)", text, re.M):
        pin = m.group(1)
        name = re.split(r"[=<>!~]", pin, maxsplit=1)[0]
        return (f"{dep_file} pins {pin}, which does not exist.",
                f"Choose a version of {name} that is published on the package index, or "
                "drop the pin.")
    if "No solution found when resolving dependencies" in text:
        cause = re.search(r"cause: (Because .*?)(?=\n\S|\Z)", text, re.S)
        said = " ".join(cause.group(1).split()) if cause else ""
        names = sorted(set(re.findall(r"you require ([A-Za-z0-9][A-Za-z0-9_.-]*?)[<>=!~ ,]",
                                      said)))
        which = ", ".join(names) or "its packages"
        return (f"The versions that {dep_file} requires cannot be installed together. uv says: "
                f"{said[:400]}", f"Loosen or remove the pins of {which} in {dep_file} so "
                "that they agree.")
    if m := re.search(r"Failed to (?:build|download and build|download) `([^`]+)`\s*\n"
                      r"\s*(?:Caused by|cause): Git operation failed", text):
        # A git requirement whose repository could not be fetched: nothing was built.
        name, _, url = m.group(1).partition(" @ ")
        fatal = re.search(r"^\s*fatal: (.+)$", text, re.M)
        git_said = f" (git: {fatal.group(1).strip()[:300]})" if fatal else ""
        return (f"{name.strip()} could not be fetched from {url.strip() or 'its git URL'}"
                f"{git_said}.",
                f"Check the URL and ref of {name.strip()} in {dep_file}: the repository must "
                "exist and be reachable without signing in. Or require a release from the "
                "package index instead.")
    if m := re.search(r"Failed to (?:build|download and build) `([^`]+)`", text):
        pkg = m.group(1)
        name = re.split(r"[=<>!~@ ]", pkg, maxsplit=1)[0]
        pkg = name if " @ " in pkg else pkg  # a direct reference: its URL says nothing more
        why = _last_exception(text)
        if re.search(r"fatal error: \S+\.h: No such file|command '\S*gcc\S*' failed|"
                     r"pkg-config|Could not find .* library", text):
            fix = (f"It needs system libraries to compile: pin a release of {name} with "
                   f"wheels for Python {python or 'this version'}, or list the Debian "
                   "packages it needs in packages.txt (Docker runtime).")
        else:
            fix = (f"Choose an older Python version in the app's Settings, or require a "
                   f"newer {name} (one that publishes wheels for Python "
                   f"{python or 'this version'}) in {dep_file}.")
        because = f" ({why})" if why else ""
        return (f"{pkg} has no wheel for Python {python or 'this version'} and its source "
                f"build failed{because}.", fix)
    if re.search(r"^error: The build backend returned an error", text, re.M):
        # uv names no package when it builds a source tree (a path) whose metadata failed
        why = _last_exception(text)
        because = f" ({why})" if why else ""
        return (f"A package of {dep_file} failed to build from source{because}.",
                f"If it is your own (a path in {dep_file}), fix its build; otherwise choose an "
                f"older Python version in the app's Settings, or require a release with "
                f"wheels for Python {python or 'this version'}.")
    if m := re.search(r"Couldn't parse requirement in `([^`]+)`(?: at position \d+)?", text):
        bad = re.search(r"cause: .*\n\s+(.+)\n", text)
        line = f": '{bad.group(1).strip()}'" if bad else ""
        return (f"{dep_file} has a line that is not a requirement{line}.",
                "Fix or remove that line (one requirement per line, like 'pandas>=2').")
    if re.search(r"Failed to parse|TOML parse error", text):
        return (f"{dep_file} could not be read as a dependency file.",
                "Fix its syntax and push again.")
    if m := re.search(r"(?:Failed to fetch|Failed to download): [`']?(\S+?)[`']?$", text, re.M):
        return (f"The package index could not be reached ({m.group(1)}).",
                "This is usually temporary: reboot the app in a minute. If it persists, "
                "the server's administrator should check its network and index_url.")
    if m := re.search(r"^E: Unable to locate package (\S+)", text, re.M):
        return (f"packages.txt names {m.group(1)}, which Debian does not have.",
                "Check the package's name on packages.debian.org and fix packages.txt.")
    if re.search(r"No space left on device|os error 28|Disk quota exceeded", text):
        return ("The server ran out of disk space while building the environment.",
                "Ask the server's administrator to free space, then reboot the app.")
    return None


def _git_failure(text: str, repo: str, branch: str) -> tuple[str, str]:
    lowered = text.lower()
    where = f" {repo}" if repo else ""
    if "remote branch" in lowered and "not found" in lowered:
        name = branch or (re.search(r"Remote branch (\S+)", text) or [None, "?"])[1]
        return (f"The branch '{name}' does not exist in the repository{where}.",
                "Check the branch name in the app's settings, or push that branch.")
    if re.search(r"could not resolve host|name or service not known", lowered):
        return (f"The host of the repository{where} could not be found.",
                "Check the repository URL for a typo.")
    if re.search(r"could not read username|authentication failed|permission denied "
                 r"\(publickey|terminal prompts disabled|invalid username or password", lowered):
        return (f"The repository{where} needs credentials this server does not have "
                "(it is private, or the URL is wrong).",
                "On GitHub, connect GitHub on your Account page and deploy from there (a "
                "read-only deploy key is added). On any other host, give the app an access "
                "token or a deploy key (Settings → Repository access) and add that key to "
                "the repository with read access, then reboot; or make the repository "
                "public.")
    if re.search(r"repository .* not found|does not appear to be a git repository|"
                 r"repository not found|not found", lowered):
        return (f"The repository{where} could not be read: it does not exist, or this "
                "server may not read it.",
                "Check the URL (owner and name); a private repository needs GitHub "
                "connected on your Account page.")
    if re.search(r"connection refused|timed out|unable to access|could not read from remote",
                 lowered):
        return (f"The repository{where} could not be reached.",
                "Check the URL and that its host is up, then reboot the app.")
    return (f"Cloning the repository{where} failed.", "Check the URL and the branch.")


def _start_failure(text: str, dep_file: str, phase: str, main_file: str) -> tuple[str, str] | None:
    if m := re.search(r"ModuleNotFoundError: No module named '([\w.]+)'", text):
        module = m.group(1)
        top = module.split(".")[0]
        package = PACKAGE_OF_MODULE.get(module) or PACKAGE_OF_MODULE.get(top) or top
        return (f"ModuleNotFoundError: No module named '{module}'.",
                f"Add {package} to {dep_file} and push.")
    if m := re.search(r"ImportError: (cannot import name .*|.*)$", text, re.M):
        return (f"ImportError: {m.group(1).strip()[:200]}.",
                f"Check the versions pinned in {dep_file}: the code expects another "
                "release of that package.")
    if re.search(r"(?:Error: Invalid value: )?File does not exist: ", text):
        return (f"The main file '{main_file or '?'}' does not exist in the repository.",
                "Fix the main file path in the app's settings, or push the file.")
    if m := re.search(r"^\s*(SyntaxError|IndentationError): (.*)$", text, re.M):
        return (f"{m.group(1)} in the app's code: {m.group(2).strip()[:200]}.",
                "Fix it and push; the app updates by itself.")
    return None


def known_app_failure(output: str, dependency_file: str = "requirements.txt",
                      main_file: str = "") -> Explanation | None:
    """The explanation of an app's log when it shows a failure this module knows (a missing
    module, an import error, a missing main file, a syntax error); else None."""
    text = strip_ansi(output)
    found = _start_failure(text, dependency_file, "start", main_file)
    return Explanation(*found, relevant_lines(text)) if found else None


def explain(phase: str, output: str, *, dependency_file: str = "requirements.txt",
            python_version: str = "", repo: str = "", branch: str = "", main_file: str = "",
            timeout_s: float | None = None) -> Explanation:
    """Explain the failed `phase` from its whole captured `output` (already sanitized of host
    paths). Returns a summary naming the package or file responsible, a suggested fix, and
    the relevant lines (bounded: MAX_LINES, MAX_CHARS)."""
    text = strip_ansi(output)
    lines = relevant_lines(text)
    if phase == "clone":
        summary, fix = _git_failure(text, repo, branch)
        return Explanation(summary, fix, lines)
    if phase in ("resolve", "download", "build", "install"):
        found = _dependency_failure(text, dependency_file, _python_of(text, python_version))
        if found:
            return Explanation(*found, lines)
        if phase == "build" and "Failed to build" not in text:
            return Explanation("Creating the app's Python environment failed.",
                               "Reboot the app; if it fails again, tell the server's "
                               "administrator (the lines below say why).", lines)
        return Explanation(f"Installing the dependencies of {dependency_file} failed.",
                           f"Read the lines below; fix {dependency_file} and push.", lines)
    if phase in ("start", "health"):
        found = _start_failure(text, dependency_file, phase, main_file)
        if found:
            return Explanation(*found, lines)
        if phase == "health":
            within = f" within {timeout_s:.0f} s" if timeout_s else ""
            return Explanation(f"The app did not answer its health check{within}.",
                               "Make the script's top level fast (cache slow work with "
                               "st.cache_data / st.cache_resource) and reboot the app.", lines)
        return Explanation("The app stopped before it served.",
                           "Read the lines below; fix the cause and push.", lines)
    raise ValueError(f"unknown phase {phase!r}; one of {', '.join(PHASES)}")
