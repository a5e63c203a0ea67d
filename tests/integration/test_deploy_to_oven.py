"""From the moment a deploy is accepted, the app's URL answers the oven page, never "No app
lives at …": the first request is sent as soon as the backend call returns, then the URL is
polled until the app serves. Every oven page shows "Latest step" only with a step in it.
A host nobody serves names the host as it was typed, port included."""

from __future__ import annotations

import re

from backend.apps import service as apps
from backend.context import open_context
from tests.support.instances import http_get
from tests.support.supervisor_harness import SupervisorProcess, load_app, wait_until

OVEN = "Your app is in the oven"
STEP = re.compile(r'<div id="latest-step"( hidden)?><p class="muted">Latest step:</p>'
                  r'<pre id="progress" class="progress">(.*?)</pre></div>', re.S)


def check_oven(body: str) -> None:
    """The oven page, its Latest step hidden exactly when there is no step to show."""
    assert OVEN in body, body[:400]
    found = STEP.search(body)
    assert found, "the Latest step block"
    hidden, step = found.group(1), found.group(2)
    assert bool(hidden) == (step.strip() == ""), found.group(0)
    assert not re.match(r"\[\d{4}-", step), "the step is shown without its timestamp"


def test_deployed_url_answers_the_oven_at_once(settings, admin, hello_repo, tmp_path) -> None:
    ctx = open_context(settings)
    sup = SupervisorProcess(settings, tmp_path / "sup.log").start()
    try:
        status, body = http_get(settings.port, f"nosuch.localhost:{settings.port}")
        assert status == 404 and f"No app lives at nosuch.localhost:{settings.port}" in body
        for i in range(4):
            sub = f"fresh{i}"
            host = f"{sub}.localhost:{settings.port}"
            view = apps.deploy_app(ctx, admin, repo_url=hello_repo.url, subdomain=sub)
            seen: list[int] = []

            def serving(host: str = host, seen: list[int] = seen) -> bool:
                status, body = http_get(settings.port, host)
                seen.append(status)
                assert "No app lives" not in body, f"{host} after {seen}"
                if status == 200:
                    return True
                assert status == 503, (status, body[:400])
                check_oven(body)
                return False

            wait_until(serving, 300, f"{sub} to serve", sup, interval=0.02)
            assert seen[0] == 503, "the first answer is the oven page"
            app = load_app(ctx, view.id)
            assert app is not None and app.state == "running"
    finally:
        sup.stop()
