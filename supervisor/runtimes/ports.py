"""Where the process runtime's app ports come from: below the kernel's ephemeral range
(`net.ipv4.ip_local_port_range`), which the kernel hands out to outgoing connections and to
listeners that bind port 0."""

from __future__ import annotations

FIRST_APP_PORT = 10000
RANGE_FILE = "/proc/sys/net/ipv4/ip_local_port_range"


def ephemeral_low(path: str = RANGE_FILE) -> int:
    """The first port of the ephemeral range (Linux's default 32768 when unreadable)."""
    try:
        with open(path) as fh:
            return int(fh.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768
