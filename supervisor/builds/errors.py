"""The message of a failed build step, for the person who deployed: the explanation
(`backend.apps.failures`) of the step's whole output with host paths hidden
(`backend.platform.host_paths`), then its relevant lines. The full output stays in the build log.
"""

from __future__ import annotations

import itertools
from collections import deque
from collections.abc import Iterable, Sequence
from pathlib import PurePath

from backend.apps import failures
from backend.platform import host_paths
from backend.platform.settings import Settings

KEEP_LINES = 4000  # a step's output kept for the explainer (uv's error block comes last)
DEPENDENCY_FILES = ("requirements.txt", "pyproject.toml", "uv.lock", "locked.txt")


class StepOutput:
    """The lines of one build step, bounded: the first ones and the last KEEP_LINES."""

    def __init__(self) -> None:
        self.head: list[str] = []
        self.tail: deque[str] = deque(maxlen=KEEP_LINES)

    def add(self, line: str) -> None:
        if len(self.head) < 50:
            self.head.append(line)
        else:
            self.tail.append(line)

    def text(self) -> str:
        return "\n".join([*self.head, *self.tail])


def dependency_file_of(cmd: Sequence[str]) -> str:
    """The dependency file a uv command installs (its `-r` argument's name), else
    requirements.txt; an exported uv.lock is named uv.lock."""
    for flag, value in itertools.pairwise(cmd):
        if flag == "-r" or flag == "-o":
            name = PurePath(value).name
            return "uv.lock" if name == "locked.txt" else name
        if flag == "--project":
            return "uv.lock"
    return "requirements.txt"


def phase_of(cmd: Sequence[str]) -> str:
    """`build` for the step making the venv, `install` for the ones installing packages."""
    return "build" if "venv" in cmd and "pip" not in cmd else "install"


def step_failure_message(settings: Settings, cmd: Sequence[str], output: str | Iterable[str],
                         python_version: str = "") -> str:
    """What a failed build step says to its deployer (no host paths)."""
    text = output if isinstance(output, str) else "\n".join(output)
    shown = host_paths.sanitize(settings, text)
    found = failures.explain(phase_of(cmd), shown, dependency_file=dependency_file_of(cmd),
                             python_version=python_version)
    return found.message() + "\n\nThe whole output is in the build log."
