"""The over-limit page and email say how much the app used and what its limit is: the
highest memory sample in the minutes before it was stopped, against the limit (developers
only; viewers see neither figure). Through the real proxy app (tests/support/overlay_env)."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

from sqlmodel import select

from backend.accounts import identity
from backend.analytics import usage
from backend.context import Context
from models import App, AppEvent, EmailOutbox, session_scope, utcnow
from tests.support.overlay_env import Env, run, set_cookies

MIB = 1 << 20


def test_over_limit_page_and_email_name_used_and_limit(ctx: Context) -> None:
    async def scenario(env: Env) -> None:
        now = utcnow()
        for minutes_ago, used in ((30, 1000), (6, 900), (3, 980), (1, 1010)):
            usage.record_sample(env.ctx, env.app_id, used * MIB, 1024 * MIB,
                                at=now - timedelta(minutes=minutes_ago))
        route = env.routes.get("hello")
        env.routes.set(dataclasses.replace(route, state="over_limit", address=None))
        with session_scope(env.ctx.engine) as s:
            app = s.get(App, env.app_id)
            app.state, app.memory_limit_mb = "over_limit", 1024
            s.add(AppEvent(app_id=env.app_id, from_state="running", to_state="over_limit"))
        async with env.request("GET", "/", page=True, cookies=env.signed_in(env.dev)) as r:
            html = await r.text()
        # The last ten minutes before the newest sample: 1010, not the older 1000.
        assert "limit of <strong>1024 MiB</strong>" in html
        assert "highest memory reading before that was <strong>1010 MiB</strong>" in html
        vcookies = env.signed_in(env.viewer)
        async with env.request("GET", "/", page=True, cookies=vcookies) as r:
            viewer_html = await r.text()
            token = set_cookies(r)[identity.CSRF_COOKIE]
        assert "1010 MiB" not in viewer_html and "1024 MiB" not in viewer_html
        vcookies[identity.CSRF_COOKIE] = token
        async with env.request("POST", "/__stcloud/notify", cookies=vcookies,
                               data={"csrf": token}) as r:
            assert r.status == 200
        with session_scope(env.ctx.engine) as s:
            mail = s.exec(select(EmailOutbox).where(EmailOutbox.kind == "over_limit")).one()
        assert "memory limit of 1024 MiB" in mail.body_text
        assert "was 1010 MiB of that 1024 MiB limit" in mail.body_text, mail.body_text
    run(ctx, scenario)

