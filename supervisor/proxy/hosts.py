"""Which host a request is for: the dashboard host, an app host, or neither.

`DOMAIN` or an IP literal (127.0.0.1, [::1]) is the dashboard host; `<sub>.DOMAIN` (one
label) is the app host of `sub`; anything else is unknown. `/__stcloud/` (`RESERVED_PREFIX`)
is ours on every host and never forwarded to an app.
"""

from __future__ import annotations

import ipaddress

RESERVED_PREFIX = "/__stcloud/"
DASHBOARD = "dashboard"
APP = "app"
UNKNOWN = "unknown"
_CACHE_MAX = 4096


def split_host(value: str) -> str:
    """`Host` header → lower-case host name without port or trailing dot."""
    host = value.strip().lower()
    if host.startswith("["):  # [v6]:port
        end = host.find("]")
        return host[: end + 1] if end > 0 else host
    if host.count(":") == 1:
        host = host.split(":", 1)[0]
    return host.rstrip(".")


def typed_host(value: str) -> str:
    """The `Host` header as the visitor typed it (port included) for our pages, at most a
    DNS name's length plus a port; escaped where it is shown."""
    return value.strip()[:262] or "this address"


def is_ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def is_reserved(path: str) -> bool:
    """Is `path` under `/__stcloud/` (or that prefix without its slash)?"""
    return path.startswith(RESERVED_PREFIX) or path == RESERVED_PREFIX[:-1]


class HostClassifier:
    """Classifies `Host` header values for one DOMAIN, cached per value."""

    def __init__(self, domain: str) -> None:
        self.domain = domain.lower().rstrip(".")
        self.suffix = "." + self.domain
        self._hosts: dict[str, tuple[str, str]] = {}

    def classify(self, host_header: str) -> tuple[str, str]:
        """(DASHBOARD | APP | UNKNOWN, host name or subdomain)."""
        found = self._hosts.get(host_header)
        if found is None:
            found = self._classify(split_host(host_header))
            if len(self._hosts) >= _CACHE_MAX:
                self._hosts.clear()
            self._hosts[host_header] = found
        return found

    def _classify(self, host: str) -> tuple[str, str]:
        if host == self.domain or is_ip_literal(host):
            return DASHBOARD, host
        if host.endswith(self.suffix):
            sub = host[: -len(self.suffix)]
            if sub and "." not in sub:
                return APP, sub
        return UNKNOWN, host
