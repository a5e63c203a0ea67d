"""`/api/v1/settings` (site admins): the settings with their sources, live changes checked
together, a setting read once at start refused with its field, null puts one back."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient

from backend.platform import setting_overrides
from tests.support.api_world import World, auth, run


def test_site_admin_reads_and_changes_settings_live(world: World) -> None:
    async def scenario(c: TestClient[Any, Any]) -> None:
        headers = auth(world, "siteadmin")
        r = await c.patch("/settings", headers=headers,
                          json={"smtp_host": "mail.example.org", "smtp_port": 2525})
        assert r.status == 200, await r.text()
        body = await r.json()
        assert body["changed"] == ["smtp_host", "smtp_port"]
        rows = {row["name"]: row for row in body["settings"]}
        assert rows["smtp_host"]["value"] == "mail.example.org" and rows["smtp_host"]["live"]
        assert rows["smtp_host"]["source"].startswith("changed live by ")
        assert rows["smtp_password"]["value"] == "(not set)" and not rows["port"]["live"]

        r = await c.patch("/settings", headers=headers,
                          json={"smtp_host": "other.example.org", "port": 9999})
        error = (await r.json())["error"]
        assert (r.status, error["code"], error["field"]) == (422, "invalid", "port")
        assert "restart" in error["message"]
        assert setting_overrides.live_sources(world.ctx).keys() == {"smtp_host", "smtp_port"}
        r = await c.get("/settings", headers=headers)
        rows = {row["name"]: row for row in (await r.json())["settings"]}
        assert rows["smtp_host"]["value"] == "mail.example.org"  # nothing of it changed
        r = await c.patch("/settings", headers=headers, json={"smtp_port": "many"})
        assert r.status == 422 and (await r.json())["error"]["field"] == "smtp_port"

        r = await c.patch("/settings", headers=headers, json={"smtp_host": None})
        assert (await r.json())["changed"] == ["smtp_host"]
        r = await c.get("/settings", headers=headers)
        rows = {row["name"]: row for row in (await r.json())["settings"]}
        assert rows["smtp_host"]["value"] == "" and rows["smtp_port"]["value"] == "2525"

    run(world, scenario)
    setting_overrides.refresh(world.ctx)
    assert (world.ctx.settings.smtp_host, world.ctx.settings.smtp_port) == ("", 2525)
