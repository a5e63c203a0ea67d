"""Where a repository URL leads, for servers that fetch only from public hosts.

With `allow_local_repos = false` git must not become a way to reach this server's own
services or its private network (the database, the Docker API, a cloud metadata service at
169.254.169.254, an internal git host). So a repository host must be a public address:
not loopback, link-local, private, shared (100.64/10), unspecified, multicast, reserved or
documentation space, IPv4 or IPv6, an IPv4 address embedded in IPv6 (mapped, 6to4, NAT64)
judged as that IPv4 address. It is checked twice:

- `literal_host_problem` (no DNS, from `backend.validation.validate_repo_url`): a host that
  is an address in any form git's resolver reads (`127.1`, `0x7f000001`, `2130706433`,
  `[::1]`), `localhost` or a name under it, with or without a trailing dot.
- `public_fetch_target` right before each git run (`backend.repositories.checks`,
  `supervisor.sources.gitsync`): the host is resolved and every address checked; one that is not
  public refuses the fetch before git starts. For http(s) git is then pinned to the checked
  addresses (`http.curloptResolve`), so a second DNS answer (rebinding) is never used, and
  redirects are off (`http.followRedirects=false`), so a public server cannot send git on to
  a private one. ssh and git:// URLs are checked the same way, but ssh and git resolve the
  name again themselves: a name whose DNS answer changes between the check and the connect
  can still lead there (use https URLs where that matters).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from urllib.parse import unquote, urlparse

from backend.errors import ValidationError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Sequence[str]]  # (host, port) -> addresses as text
NAT64 = ipaddress.ip_network("64:ff9b::/96")
DEFAULT_PORTS = {"https": 443, "http": 80, "git": 9418, "ssh": 22}
HOST_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789.-_")


class RepoAddressError(ValidationError):
    """The repository's host is not a public address (or the URL hides which host it is)."""

    def __init__(self, message: str) -> None:
        super().__init__("repo_url", message)


@dataclass(frozen=True)
class FetchTarget:
    """A checked repository host: its addresses and the git options that hold git to them."""

    host: str
    port: int
    addresses: tuple[str, ...]
    git_config: tuple[str, ...]  # "-c", "name=value", ... to put before the git command


def address_problem(address: IPAddress) -> str | None:
    """Why git may not fetch from `address` ('loopback', 'private', ...), None if public."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour or \
            (ipaddress.IPv4Address(int(address) & 0xFFFFFFFF) if address in NAT64 else None)
        if embedded is not None:
            return address_problem(embedded)
    checks = (("unspecified", address.is_unspecified), ("loopback", address.is_loopback),
              ("link-local", address.is_link_local), ("multicast", address.is_multicast),
              ("private", address.is_private), ("reserved", address.is_reserved),
              ("not globally routable", not address.is_global))
    return next((name for name, hit in checks if hit), None)


def parse_address(host: str) -> IPAddress | None:
    """`host` as an IP address when it is one in any form the C resolver accepts (IPv6,
    dotted quad, and the short, octal, hex and decimal IPv4 forms), else None."""
    text = host.strip("[]").split("%", 1)[0]  # brackets of a URL, an IPv6 zone
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        pass
    if not text or any(c not in "0123456789abcdefx." for c in text.lower()):
        return None  # inet_aton would also read "1.2.3.4 trailing words"
    try:
        return ipaddress.IPv4Address(socket.inet_aton(text))
    except OSError:
        return None


def url_host(url: str) -> tuple[str, int]:
    """(host, port) of a remote git URL (https, http, git, ssh or scp-like `user@host:path`),
    the host lower-cased and percent-decoded as curl reads it; `RepoAddressError` (its
    message a phrase: why) when the URL has no host this module can vouch for."""
    if "\\" in url:  # parsers disagree on backslashes: the host git uses may differ
        raise RepoAddressError("the URL contains '\\', which parsers read differently")
    try:
        parsed = urlparse(url)
    except ValueError:  # an unclosed [IPv6 literal
        raise RepoAddressError("the URL's host is not valid") from None
    if parsed.scheme in DEFAULT_PORTS and parsed.netloc:
        try:
            host, port = parsed.hostname or "", parsed.port or DEFAULT_PORTS[parsed.scheme]
        except ValueError:
            raise RepoAddressError("the URL's port is not a number from 1 to "
                                   "65535") from None
    elif "@" in url.split("/", 1)[0] and ":" in url:  # scp-like git@host:owner/repo
        host, port = url.split("@", 1)[1].split(":", 1)[0], DEFAULT_PORTS["ssh"]
    else:
        raise RepoAddressError("only https, http, ssh and git URLs are allowed")
    host = unquote(host).lower()
    if parse_address(host) is None and (not host or not set(host) <= HOST_CHARS):
        raise RepoAddressError(f"'{host[:80]}' is not a host name")
    return host, port


def _is_local_name(host: str) -> bool:
    name = host.rstrip(".")
    return name == "localhost" or name.endswith(".localhost")


def literal_host_problem(url: str) -> str | None:
    """Why the host written in `url` is not a public one (a phrase for a message), or
    None when it may be (a name still has to resolve to public addresses at fetch time)."""
    try:
        host, _ = url_host(url)
    except RepoAddressError as e:
        return e.message
    if _is_local_name(host):
        return f"{host} is this server itself"
    address = parse_address(host)
    problem = address_problem(address) if address is not None else None
    return f"{host} is not a public address ({problem})" if problem else None


def _system_resolve(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


def public_fetch_target(url: str, resolve: Resolver | None = None) -> FetchTarget:
    """Resolve the host of `url` (with `resolve`, by default the system's resolver) and
    check every address (see the module docstring); `RepoAddressError` unless all are
    public."""
    refused = "This server fetches repositories only from public hosts (setting " \
        "allow_local_repos is off)"
    problem = literal_host_problem(url)
    if problem:
        raise RepoAddressError(f"{refused}: {problem}. Use the repository's public URL.")
    host, port = url_host(url)
    try:
        addresses = tuple(dict.fromkeys((resolve or _system_resolve)(host, port)))
    except (OSError, UnicodeError) as e:
        raise RepoAddressError(f"The host {host} of the repository URL could not be resolved "
                               f"({e}). Check the URL.") from None
    if not addresses:
        raise RepoAddressError(f"The host {host} of the repository URL has no address.")
    for text in addresses:
        address = parse_address(text)
        problem = address_problem(address) if address is not None else "unreadable"
        if problem:
            raise RepoAddressError(f"{refused}: {host} resolves to {text}, which is not a "
                                   f"public address ({problem}). Use the repository's "
                                   "public URL.")
    return FetchTarget(host, port, addresses, _git_config(url, host, port, addresses))


def _git_config(url: str, host: str, port: int, addresses: tuple[str, ...]) -> tuple[str, ...]:
    config = ["-c", "http.followRedirects=false"]
    if urlparse(url).scheme in ("http", "https") and parse_address(host) is None:
        pinned = ",".join(f"[{a}]" if ":" in a else a for a in addresses)
        config += ["-c", f"http.curloptResolve={host}:{port}:{pinned}"]
    return tuple(config)
