"""Settings changed live (backend/platform/setting_overrides.py): validated as the settings
table says, refused for settings that are read once at start, audited, overlaid on what
the process started with, and picked up by another process's context on its next refresh."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from sqlmodel import col, select

from backend.context import Context, open_context
from backend.errors import PermissionDenied, ValidationError
from backend.platform import setting_overrides as live
from backend.platform import settings_view
from backend.platform.settings_load import load_settings
from models import session_scope
from models.setting_overrides import SettingChange, SettingOverride
from tests.support.api_world import make_user


def test_a_change_is_overlaid_audited_and_reset(ctx: Context) -> None:
    admin = make_user(ctx, "root", is_admin=True)
    started = ctx.settings
    assert live.change(ctx, admin, "smtp_host", " mail.example.org ")
    assert live.change(ctx, admin, "smtp_port", "2525")
    assert live.change(ctx, admin, "hibernate_after_days", "6")
    assert (ctx.settings.smtp_host, ctx.settings.smtp_port) == ("mail.example.org", 2525)
    assert ctx.settings.hibernate_after_days == 6.0
    assert ctx.base_settings is started and started.smtp_host == ""
    assert not live.change(ctx, admin, "smtp_port", 2525)  # the same value: no new version

    with session_scope(ctx.engine) as s:
        changes = list(s.exec(select(SettingChange).order_by(col(SettingChange.id))))
    assert [(c.name, c.old_json, c.new_json, c.changed_by) for c in changes] == [
        ("smtp_host", "", '"mail.example.org"', "root"), ("smtp_port", "", "2525", "root"),
        ("hibernate_after_days", "", "6.0", "root")]
    sources = live.live_sources(ctx)
    assert sources["smtp_host"].startswith("changed live by root at ")
    rows = {r.name: r for r in settings_view.settings_for_admin(ctx, admin)}
    assert rows["smtp_host"].value == "mail.example.org"
    assert rows["smtp_host"].source == sources["smtp_host"]

    assert live.reset(ctx, admin, "smtp_host")
    assert ctx.settings.smtp_host == "" and ctx.settings.smtp_port == 2525
    # setting the start value again removes the live value rather than pinning it
    assert live.change(ctx, admin, "smtp_port", str(started.smtp_port))
    with session_scope(ctx.engine) as s:
        assert [r.name for r in s.exec(select(SettingOverride))] == ["hibernate_after_days"]
    assert [h.name for h in live.history(ctx, admin)][:2] == ["smtp_port", "smtp_host"]


def test_the_smtp_password_changes_live_and_is_kept_sealed(ctx: Context, tmp_path: Path
                                                          ) -> None:
    """The SMTP password is live too: the sender of every process picks it up, and no row,
    history entry or settings page holds it in clear; a process whose server key differs
    skips it rather than sending a wrong one."""
    admin = make_user(ctx, "root", is_admin=True)
    password = "hunter2-smtp-Secret"
    assert live.change(ctx, admin, "smtp_password", password)
    assert ctx.settings.smtp_password == password
    other = open_context(ctx.settings)
    assert live.refresh(other) and other.settings.smtp_password == password
    with session_scope(ctx.engine) as s:
        stored = [r.value_json for r in s.exec(select(SettingOverride))]
        history = [(c.old_json, c.new_json) for c in s.exec(select(SettingChange))]
    assert stored and password not in stored[0] and "sealed" in stored[0]
    assert history == [("", live.HIDDEN)]
    assert all(password not in str(h) for h in live.history(ctx, admin))
    rows = {r.name: r for r in settings_view.settings_for_admin(ctx, admin)}
    assert rows["smtp_password"].value == "(set, hidden)"
    assert ctx.base_settings is not None
    live.change(ctx, admin, "smtp_host", "mail.example.org")
    elsewhere = open_context(dataclasses.replace(  # the same database, another server key
        ctx.base_settings, data_dir=tmp_path / "other", database_url=ctx.settings.db_url))
    live.refresh(elsewhere)
    assert (elsewhere.settings.smtp_host, elsewhere.settings.smtp_password) == \
        ("mail.example.org", "")
    assert live.reset(ctx, admin, "smtp_password") and ctx.settings.smtp_password == ""


def test_another_process_picks_a_change_up_on_refresh(ctx: Context) -> None:
    admin = make_user(ctx, "root", is_admin=True)
    other = open_context(ctx.settings)  # e.g. the supervisor, next to the dashboard
    assert not live.refresh(other)  # nothing changed: one query, same object
    live.change(ctx, admin, "memory_limit_mb", "2048")
    live.change(ctx, admin, "support_url", "https://help.example.org/")
    assert other.settings.memory_limit_mb == 1024
    assert live.refresh(other)
    assert other.settings.memory_limit_mb == 2048
    assert other.settings.support_url == "https://help.example.org/"
    assert not live.refresh(other)
    live.reset(ctx, admin, "memory_limit_mb")
    assert live.refresh(other) and other.settings.memory_limit_mb == 1024


def test_the_sleep_and_its_warning_move_together(ctx: Context) -> None:
    admin = make_user(ctx, "root", is_admin=True)
    assert live.change_many(ctx, admin, {"hibernate_after_days": "2",
                                         "hibernate_warn_after_days": "1.5",
                                         "sleep_default_policy": "idle 12h"}) == [
        "hibernate_after_days", "hibernate_warn_after_days", "sleep_default_policy"]
    assert (ctx.settings.hibernate_after_days, ctx.settings.hibernate_warn_after_days) == \
        (2.0, 1.5)
    with pytest.raises(ValidationError, match="shortest idle period"):
        live.change(ctx, admin, "sleep_min_idle_minutes", "1440")  # the default policy: 12 h


@pytest.mark.parametrize("name", ["database_url", "data_dir", "runtime", "port",
                                  "dashboard_port", "github_client_secret",
                                  "allow_local_repos", "domain", "process_sandbox"])
def test_settings_read_at_start_are_refused(ctx: Context, name: str) -> None:
    admin = make_user(ctx, "root", is_admin=True)
    with pytest.raises(ValidationError, match="cannot be changed while the platform runs"):
        live.change(ctx, admin, name, "x")
    with session_scope(ctx.engine) as s:
        assert list(s.exec(select(SettingChange))) == []


@pytest.mark.parametrize("name,raw,says", [
    ("smtp_port", "many", "expected int"),
    ("smtp_port", "70000", "enter 1 to 65535"),
    ("smtp_tls", "tls", "enter starttls, ssl or none"),
    ("smtp_host", "smtp://mail.example.org:25", "no scheme, no port"),
    ("smtp_from", "not-an-address", "is not an email address"),
    ("support_url", "javascript:alert(1)", "starting with https://"),
    ("docs_url", "", "starting with https://"),
    ("hibernate_after_days", "-1", "enter 0 to 3650"),
    ("hibernate_after_days", "nan", "enter 0 to 3650"),
    ("hibernate_after_days", "4", "lower the warning first"),  # warning at 5 days
    ("memory_limit_mb", "16", "outside 128 to 65536 MiB"),
    ("memory_warning_percent", "150", "enter 0 to 100 percent"),
    ("memory_warning_minutes", "0", "enter more than 0"),
    ("hibernate_private_apps", "perhaps", "expected bool"),
    ("no_such_setting", "1", "There is no setting"),
    ("sleep_default_policy", "sometimes", "is not a sleep policy"),
    ("sleep_min_idle_minutes", "0", "enter more than 0"),
])
def test_bad_values_say_what_to_enter(ctx: Context, name: str, raw: str, says: str) -> None:
    admin = make_user(ctx, "root", is_admin=True)
    before = ctx.settings
    with pytest.raises(ValidationError, match=says) as e:
        live.change(ctx, admin, name, raw)
    assert e.value.field == name
    assert ctx.settings is before


def test_only_site_admins_change_settings(ctx: Context) -> None:
    member = make_user(ctx, "member")
    with pytest.raises(PermissionDenied):
        live.change(ctx, member, "smtp_host", "mail.example.org")
    with pytest.raises(PermissionDenied):
        live.reset(ctx, member, "smtp_host")


def test_a_stored_value_that_no_longer_validates_is_skipped(ctx: Context) -> None:
    admin = make_user(ctx, "root", is_admin=True)
    live.change(ctx, admin, "smtp_host", "mail.example.org")
    with session_scope(ctx.engine) as s:  # e.g. written by an older version, or by hand
        s.add(SettingOverride(name="database_url", value_json=json.dumps("sqlite:///x"),
                              changed_by="root"))
        s.add(SettingOverride(name="smtp_port", value_json=json.dumps("many"),
                              changed_by="root"))
        s.add(SettingChange(name="database_url", new_json='"sqlite:///x"', changed_by="root"))
    assert live.refresh(ctx)
    assert ctx.settings.smtp_host == "mail.example.org"
    assert ctx.base_settings is not None
    assert ctx.settings.database_url == ctx.base_settings.database_url
    assert ctx.settings.smtp_port == 0


def test_the_dashboard_process_still_tells_the_sources_apart(tmp_path: Path) -> None:
    """The supervisor hands the dashboard every setting as STCLOUD_<NAME>; the page there
    must still say which came from the operator's environment, the file or the default."""
    config = tmp_path / "server.toml"
    config.write_text('support_url = "https://help.example.org"\n')
    operator = {"PATH": "/usr/bin", "STCLOUD_CONFIG": str(config),
                "STCLOUD_DATA_DIR": str(tmp_path / "data"), "STCLOUD_SMTP_HOST": "mx.local"}
    started = dataclasses.replace(load_settings(env=operator), port=18080)  # e.g. a flag
    child = settings_view.child_env(started, operator)
    assert child["STCLOUD_HIBERNATE_AFTER_DAYS"] == "7.0"  # everything is passed on...
    rows = {r.name: r.source for r in settings_view.describe(load_settings(env=child), child)}
    assert rows["smtp_host"] == "environment STCLOUD_SMTP_HOST"  # ...but the sources hold
    assert rows["support_url"] == f"file {config}"
    assert rows["hibernate_after_days"] == "default"
    assert rows["port"] == "set at start"
    grandchild = settings_view.child_env(load_settings(env=child), child)
    assert grandchild[settings_view.OPERATOR_ENV] == child[settings_view.OPERATOR_ENV]


def test_a_loop_keeps_its_settings_when_the_database_cannot_be_read(ctx: Context) -> None:
    admin = make_user(ctx, "root", is_admin=True)
    live.change(ctx, admin, "smtp_host", "mail.example.org")
    before = ctx.settings
    with ctx.engine.begin() as conn:  # e.g. a database that went away mid-run
        conn.exec_driver_sql("DROP TABLE setting_change")
    assert live.refresh_or_keep(ctx) is False
    assert ctx.settings is before


def test_a_combined_refusal_stands_under_the_field_it_concerns(ctx: Context) -> None:
    admin = make_user(ctx, "root", is_admin=True)
    with pytest.raises(ValidationError, match="lower the warning first") as e:
        live.change_many(ctx, admin, {"smtp_host": "mail.example.org",
                                      "hibernate_after_days": "3"})
    assert e.value.field == "hibernate_after_days"
    assert ctx.settings.smtp_host == ""  # nothing of the batch changed
    live.change(ctx, admin, "sleep_default_policy", "idle 1h")
    with pytest.raises(ValidationError, match="shortest idle period .* is 2 hours") as e:
        live.change_many(ctx, admin, {"support_url": "https://help.example.org",
                                      "sleep_min_idle_minutes": "120"})
    assert e.value.field == "sleep_min_idle_minutes"
