"""Reading each git host's push event (backend/apps/push_formats.py) from payloads as the
hosts send them (tests/support/webhooks/): the pushed branch refs, the repository's URLs,
the refs a push deleted, and the proofs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from backend.apps import hooks, push_formats

PAYLOADS = Path(__file__).parent.parent / "support" / "webhooks"
ZERO = "0" * 40


def load(name: str) -> Any:
    return json.loads((PAYLOADS / name).read_text())


def read(key: str, headers: dict[str, str], payload: Any) -> push_formats.PushEvent:
    fmt = push_formats.FORMATS[key]
    return push_formats.read_event(fmt, headers, json.dumps(payload).encode())


def test_each_hosts_push_names_its_branch_and_repository() -> None:
    gitlab = read("gitlab", {"X-Gitlab-Event": "Push Hook"}, load("gitlab_push.json"))
    assert (gitlab.kind, gitlab.refs, gitlab.deleted) == ("push", ("refs/heads/main",), ())
    assert {hooks.normalise_repo_url(u) for u in gitlab.repo_urls} == {
        "gitlab.example.com/analytics/reports/diaspora"}
    gitea = read("gitea", {"X-Gitea-Event": "push"}, load("gitea_push.json"))
    assert (gitea.kind, gitea.refs) == ("push", ("refs/heads/main",))
    forgejo = read("gitea", {"X-Forgejo-Event": "push", "X-Gitea-Event": "push"},
                   load("gitea_push.json"))
    assert forgejo.kind == "push"
    cloud = read("bitbucket", {"X-Event-Key": "repo:push"}, load("bitbucket_cloud_push.json"))
    assert (cloud.refs, cloud.repo_urls) == (("refs/heads/main",),
                                             ("https://bitbucket.org/team/dash",))
    server = read("bitbucket", {"X-Event-Key": "repo:refs_changed"},
                  load("bitbucket_server_push.json"))
    assert server.refs == ("refs/heads/main",)
    assert {hooks.normalise_repo_url(u) for u in server.repo_urls} == {
        "bitbucket.example.com/team/dash", "bitbucket.example.com/scm/team/dash"}


def test_a_deleted_branch_is_read_as_deleted_not_pushed() -> None:
    gitlab = {**load("gitlab_push.json"), "after": ZERO}
    event = read("gitlab", {"X-Gitlab-Event": "Push Hook"}, gitlab)
    assert (event.refs, event.deleted) == ((), ("refs/heads/main",))
    gitea = {**load("gitea_push.json"), "after": ZERO}
    event = read("gitea", {"X-Gitea-Event": "push"}, gitea)
    assert (event.refs, event.deleted) == ((), ("refs/heads/main",))
    cloud = load("bitbucket_cloud_push.json")
    cloud["push"]["changes"][0]["new"] = None
    event = read("bitbucket", {"X-Event-Key": "repo:push"}, cloud)
    assert (event.refs, event.deleted) == ((), ("refs/heads/main",))
    server = load("bitbucket_server_push.json")
    server["changes"][0]["type"] = "DELETE"
    event = read("bitbucket", {"X-Event-Key": "repo:refs_changed"}, server)
    assert (event.refs, event.deleted) == ((), ("refs/heads/main",))


def test_tags_pings_and_other_events_push_no_branch() -> None:
    tag = {**load("gitlab_push.json"), "ref": "refs/tags/v1"}
    assert read("gitlab", {"X-Gitlab-Event": "Tag Push Hook", "object_kind": "tag_push"},
                {**tag, "object_kind": "tag_push"}).kind == "Tag Push Hook"
    assert read("bitbucket", {"X-Event-Key": "diagnostics:ping"}, {"test": True}).kind == "ping"
    assert read("bitbucket", {"X-Event-Key": "pullrequest:created"}, {}).kind == \
        "pullrequest:created"


@pytest.mark.parametrize("body", [b"not json", b"[]", b'{"repository": 3}'])
def test_a_body_of_the_wrong_shape_is_a_payload_error(body: bytes) -> None:
    for key in ("gitlab", "gitea"):
        with pytest.raises(push_formats.PayloadError):
            push_formats.read_event(push_formats.FORMATS[key], {}, body)


def test_each_proof_verifies_only_its_secret_and_body() -> None:
    body = b'{"x": 1}'
    gitlab, gitea, bitbucket = (push_formats.FORMATS[k] for k in ("gitlab", "gitea",
                                                                   "bitbucket"))
    assert gitlab.proves("s3cret", body, "s3cret") and not gitlab.proves("s3cret", body, "s3cre")
    assert not gitlab.proves("", body, "")
    sig = push_formats.hmac_hex("s3cret", body)
    assert gitea.proves("s3cret", body, sig) and gitea.proves("s3cret", body, sig.upper())
    assert not gitea.proves("s3cret", body + b" ", sig)
    assert bitbucket.proves("s3cret", body, "sha256=" + sig)
    assert not bitbucket.proves("s3cret", body, sig) and not bitbucket.proves("other", body,
                                                                              "sha256=" + sig)
