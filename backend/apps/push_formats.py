"""Push webhooks of the git hosts other than GitHub: what each sends, read into one shape.

Each host has its own endpoint under `/api/v1/hooks/` (the URL the developer pastes into
the host's webhook form, shown on the app's Settings page) and its own proof that the call
comes from someone who knows the app's webhook secret:

- `gitlab`: GitLab (.com or self-managed), `X-Gitlab-Event: Push Hook`; proof: the secret
  itself in `X-Gitlab-Token` (GitLab's "Secret token").
- `gitea`: Gitea and Forgejo, `X-Gitea-Event` / `X-Forgejo-Event: push`; proof:
  `X-Gitea-Signature` / `X-Forgejo-Signature`, the hex HMAC-SHA256 of the body.
- `bitbucket`: Bitbucket Cloud (`X-Event-Key: repo:push`) and Data Center
  (`repo:refs_changed`, `diagnostics:ping`); proof: `X-Hub-Signature: sha256=<hex HMAC>`.

A parser reads only what decides which apps to wake: the event, the pushed branch refs and
the repository's URLs. The payload is never trusted for more: the app's worker asks the
remote for the branch's commit itself, so a forged payload cannot choose what runs.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any


class PayloadError(ValueError):
    """The body is not the host's push event (what to send is in the message)."""


@dataclass(frozen=True)
class PushEvent:
    kind: str  # "push", "ping", or the host's name of another event (ignored)
    refs: tuple[str, ...]  # pushed refs, `refs/heads/<branch>`
    repo_urls: tuple[str, ...]  # the repository's URLs as the host gives them
    deleted: tuple[str, ...] = ()  # refs the push deleted


@dataclass(frozen=True)
class HostFormat:
    """One host's webhook: how to read it and how a secret proves it."""
    name: str
    proof_headers: tuple[str, ...]  # the first one present carries the proof
    parse: Callable[[Mapping[str, str], Any], PushEvent]
    proves: Callable[[str, bytes, str], bool]  # (app secret, raw body, header value)
    missing: str  # what to do when no proof header came


def hmac_hex(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def _same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


def _token_proves(secret: str, body: bytes, header: str) -> bool:
    return bool(secret) and _same(secret, header.strip())


def _hex_proves(secret: str, body: bytes, header: str) -> bool:
    return bool(secret) and _same(hmac_hex(secret, body), header.strip().lower())


def _sha256_proves(secret: str, body: bytes, header: str) -> bool:
    return bool(secret) and _same("sha256=" + hmac_hex(secret, body), header.strip())


def _texts(*values: Any) -> tuple[str, ...]:
    return tuple(v for v in values if isinstance(v, str) and v)


def _dict(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise PayloadError(f"Expected {what} in the event (content type application/json).")
    return value


def _sub(value: dict[str, Any], key: str) -> dict[str, Any]:
    """`value[key]` when it is an object, else {} (a field a host may leave out)."""
    found = value.get(key)
    return found if isinstance(found, dict) else {}


def parse_gitlab(headers: Mapping[str, str], payload: Any) -> PushEvent:
    event = headers.get("X-Gitlab-Event", "")
    body = _dict(payload, "a JSON object")
    project = _dict(body.get("project") or body.get("repository"), "a project")
    urls = _texts(project.get("git_http_url"), project.get("git_ssh_url"),
                  project.get("web_url"), project.get("http_url"), project.get("ssh_url"),
                  project.get("url"))
    kind = "push" if event == "Push Hook" or body.get("object_kind") == "push" else event
    return _split_deleted(PushEvent(kind, _texts(body.get("ref")), urls), body)


def parse_gitea(headers: Mapping[str, str], payload: Any) -> PushEvent:
    event = headers.get("X-Forgejo-Event") or headers.get("X-Gitea-Event", "")
    body = _dict(payload, "a JSON object")
    repo = _dict(body.get("repository"), "a repository")
    urls = _texts(repo.get("clone_url"), repo.get("ssh_url"), repo.get("html_url"))
    return _split_deleted(PushEvent(event or "unknown", _texts(body.get("ref")), urls), body)


def _split_deleted(event: PushEvent, body: dict[str, Any]) -> PushEvent:
    """GitLab and Gitea say a branch was deleted by an `after` of zeros."""
    if str(body.get("after", "")).strip("0") or not body.get("after"):
        return event
    return PushEvent(event.kind, (), event.repo_urls, event.refs)


def _bitbucket_cloud(body: dict[str, Any]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    repo = _dict(body.get("repository"), "a repository")
    urls = _texts(_sub(_sub(repo, "links"), "html").get("href"))
    refs = []
    for change in _sub(body, "push").get("changes") or []:
        new = change.get("new") if isinstance(change, dict) else None
        if isinstance(new, dict) and new.get("type") == "branch" and new.get("name"):
            refs.append(f"refs/heads/{new['name']}")
    return tuple(refs), urls


def _bitbucket_cloud_deleted(body: dict[str, Any]) -> tuple[str, ...]:
    gone = []
    for change in _sub(body, "push").get("changes") or []:
        if not isinstance(change, dict) or change.get("new") is not None:
            continue
        old = change.get("old")
        if isinstance(old, dict) and old.get("type") == "branch" and old.get("name"):
            gone.append(f"refs/heads/{old['name']}")
    return tuple(gone)


def _bitbucket_server(body: dict[str, Any]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    repo = _dict(body.get("repository"), "a repository")
    clones = _sub(repo, "links").get("clone") or []
    urls = _texts(*(c.get("href") for c in clones if isinstance(c, dict)))
    refs = []
    for change in body.get("changes") or []:
        ref = change.get("ref") if isinstance(change, dict) else None
        if isinstance(ref, dict) and ref.get("type") == "BRANCH" and ref.get("id") and \
                change.get("type") != "DELETE":
            refs.append(str(ref["id"]))
    return tuple(refs), urls


def _bitbucket_server_deleted(body: dict[str, Any]) -> tuple[str, ...]:
    return tuple(str(c["ref"]["id"]) for c in body.get("changes") or []
                 if isinstance(c, dict) and c.get("type") == "DELETE" and
                 isinstance(c.get("ref"), dict) and c["ref"].get("id"))


def parse_bitbucket(headers: Mapping[str, str], payload: Any) -> PushEvent:
    event = headers.get("X-Event-Key", "")
    body = _dict(payload, "a JSON object")
    if event == "diagnostics:ping":
        return PushEvent("ping", (), ())
    if event == "repo:push":
        return PushEvent("push", *_bitbucket_cloud(body), _bitbucket_cloud_deleted(body))
    if event == "repo:refs_changed":
        return PushEvent("push", *_bitbucket_server(body), _bitbucket_server_deleted(body))
    return PushEvent(event or "unknown", (), ())


FORMATS: dict[str, HostFormat] = {
    "gitlab": HostFormat("GitLab", ("X-Gitlab-Token",), parse_gitlab, _token_proves,
                         "X-Gitlab-Token is required: set the app's webhook secret as the "
                         "webhook's Secret token in GitLab."),
    "gitea": HostFormat("Gitea/Forgejo", ("X-Forgejo-Signature", "X-Gitea-Signature"),
                        parse_gitea, _hex_proves,
                        "X-Gitea-Signature (or X-Forgejo-Signature) is required: set the "
                        "app's webhook secret as the webhook's Secret."),
    "bitbucket": HostFormat("Bitbucket", ("X-Hub-Signature",), parse_bitbucket,
                            _sha256_proves,
                            "X-Hub-Signature is required: set the app's webhook secret as "
                            "the webhook's Secret in Bitbucket."),
}


def proof_of(fmt: HostFormat, headers: Mapping[str, str]) -> str:
    """The proof header's value, "" when none came."""
    for name in fmt.proof_headers:
        if headers.get(name):
            return headers[name]
    return ""


def read_event(fmt: HostFormat, headers: Mapping[str, str], body: bytes) -> PushEvent:
    """The event in `body`; PayloadError when it is not JSON of the host's shape."""
    try:
        payload = json.loads(body)
    except ValueError:
        raise PayloadError(f"Expected a {fmt.name} webhook event as JSON "
                           "(content type application/json).") from None
    return fmt.parse(headers, payload)
