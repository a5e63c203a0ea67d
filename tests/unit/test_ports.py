"""The process runtime's app ports: below the kernel's ephemeral range (which outgoing
connections draw from, so a port picked there could be taken again before the app's
forwarder listened on it), and never one somebody listens on."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from supervisor.runtimes import ports, process


def test_the_ephemeral_range_is_read_from_the_kernel(tmp_path: Path) -> None:
    (tmp_path / "range").write_text("40000\t60999\n")
    assert ports.ephemeral_low(str(tmp_path / "range")) == 40000
    assert ports.ephemeral_low(str(tmp_path / "missing")) == 32768


def test_an_app_port_is_below_the_ephemeral_range_and_free(
        monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        picks = iter([busy, 23456])
        monkeypatch.setattr(process.random, "randrange", lambda a, b: next(picks))
        monkeypatch.setattr(ports, "ephemeral_low", lambda: 32768)
        assert process.free_port() == 23456, "the port somebody listens on is skipped"
    monkeypatch.undo()
    for _ in range(20):
        port = process.free_port()
        assert ports.FIRST_APP_PORT <= port < ports.ephemeral_low()
