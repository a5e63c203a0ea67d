"""The masking rules of backend/apps/log_masking.py and the history of secret values it
reads (backend/apps/secrets.py, models/secret_values.py): which values are masked, in which
forms, that a rotated or removed value stays masked, and that the history never holds a
value in clear."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from sqlmodel import select

from backend.accounts import auth
from backend.apps import log_masking
from backend.apps import secrets as app_secrets
from backend.apps import service as apps
from backend.context import Context
from backend.errors import BackendError
from models import App, AppEvent, AppSecretValue, EmailOutbox, User, session_scope

REPO = "/srv/git/team/demo.git"


def masked(text: str, *values: str) -> str:
    return log_masking.mask_text(text, log_masking.targets(values))


@pytest.mark.parametrize(("values", "text", "shown"), [
    (["hunter22"], "pw hunter22 ok", "pw **** ok"),
    (["abcdef"], "abcdef", "****"),  # MIN_LENGTH itself
    (["abcde", "1", "true", "admin"], "abcde 1 true admin", "abcde 1 true admin"),
    (["  padded-value \n"], "x padded-value y", "x **** y"),
    (["s3cr3t-one"], "a s3cr3t-one b s3cr3t-one", "a **** b ****"),
    # overlapping and adjacent values are one mask, no piece left over
    (["abcdefgh", "efghijkl"], "<abcdefghijkl>", "<****>"),
    (["abcdefgh", "ijklmnop"], "abcdefghijklmnop!", "****!"),
    # a value inside a longer one
    (["token-123456", "123456"], "token-123456 and 123456", "**** and ****"),
])
def test_mask_rules(values: list[str], text: str, shown: str) -> None:
    assert masked(text, *values) == shown


def test_multi_line_values_are_masked_whole_and_line_by_line() -> None:
    pem = ("-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n"
           "bWFza2VkLWxpbmUtdHdv\n-----END PRIVATE KEY-----\n")
    assert masked(f"key: {pem}", pem) == "key: ****\n"
    lines = "bWFza2VkLWxpbmUtdHdv\nsomething else\n"
    assert masked(lines, pem) == "****\nsomething else\n"
    assert masked(repr(pem), pem) == "'****'"  # print({'key': pem}) escapes newlines
    assert "MIIE" not in masked(json.dumps({"k": pem}), pem)


@pytest.mark.parametrize("value", ['quo"te-value', "back\\slash-val", "ünïcödé-válue"])
def test_escaped_forms_are_masked(value: str) -> None:
    for shown in (value, repr(value), json.dumps(value), json.dumps(value,
                                                                    ensure_ascii=False)):
        out = masked(f"log {shown} end", value)
        assert value not in out and "****" in out, (shown, out)
        assert out.startswith("log ") and out.endswith(" end")


def test_leaf_values_cover_tables_arrays_and_numbers() -> None:
    data = app_secrets.parse_secrets(
        'top = "top-level-1"\nport = 5432\naccount = 123456789012\npi = 3.14159265\n'
        'on = true\nwhen = 2026-01-01\n[db]\npassword = "nested-pw-1"\n'
        '[db.deeper]\nlist = ["in-array-1", {inline = "in-inline-1"}]\n')
    values = set(app_secrets.leaf_values(data))
    assert {"top-level-1", "nested-pw-1", "in-array-1", "in-inline-1", "123456789012",
            "3.14159265", "5432"} <= values
    assert "True" not in values and "true" not in values
    text = "top-level-1 nested-pw-1 in-array-1 in-inline-1 123456789012 5432 true"
    assert masked(text, *values) == "**** **** **** **** **** 5432 true"


def test_history_keeps_rotated_and_removed_values(ctx: Context, admin: User) -> None:
    app = apps.deploy_app(ctx, admin, repo_url=REPO, subdomain="masked")
    app_secrets.set_secrets(ctx, admin, app.id, 'token = "first-token-1"\n[db]\npw = "db-pw-1"\n')
    app_secrets.set_secrets(ctx, admin, app.id, 'token = "second-token-2"\n')
    app_secrets.set_secrets(ctx, admin, app.id, "")  # all removed
    text = "first-token-1 db-pw-1 second-token-2 unrelated"
    assert log_masking.mask(ctx, app.id, text) == "**** **** **** unrelated"
    other = apps.deploy_app(ctx, admin, repo_url=REPO, subdomain="other")
    assert log_masking.mask(ctx, other.id, text) == text  # one app's values only


def test_history_is_encrypted_and_stored_once(ctx: Context, admin: User) -> None:
    app = apps.deploy_app(ctx, admin, repo_url=REPO, subdomain="once")
    value = "plain-value-never-stored-7"
    for _ in range(3):
        app_secrets.set_secrets(ctx, admin, app.id, f'token = "{value}"\n')
    with session_scope(ctx.engine) as s:
        rows = list(s.exec(select(AppSecretValue).where(AppSecretValue.app_id == app.id)))
    assert len(rows) == 1
    assert value not in rows[0].ciphertext and value not in rows[0].fingerprint
    assert app_secrets.decrypt(ctx, rows[0].ciphertext) == value
    if ctx.settings.db_url.startswith("sqlite"):  # nothing in clear in the database file
        db = Path(ctx.settings.db_url.split("///", 1)[1])
        for path in db.parent.glob(db.name + "*"):
            assert value.encode() not in path.read_bytes(), path


def test_values_saved_before_the_history_are_kept_when_replaced(ctx: Context, admin: User) -> None:
    app = apps.deploy_app(ctx, admin, repo_url=REPO, subdomain="legacy")
    app_secrets.set_secrets(ctx, admin, app.id, 'token = "legacy-token-1"\n')
    with session_scope(ctx.engine) as s:  # as an installation upgraded to the history has it
        for row in s.exec(select(AppSecretValue)):
            s.delete(row)
    assert log_masking.mask(ctx, app.id, "legacy-token-1") == "****"  # the current document
    app_secrets.set_secrets(ctx, admin, app.id, 'token = "new-token-2"\n')
    assert log_masking.mask(ctx, app.id, "legacy-token-1 new-token-2") == "**** ****"


def test_an_outsider_cannot_add_to_the_history(ctx: Context, admin: User) -> None:
    app = apps.deploy_app(ctx, admin, repo_url=REPO, subdomain="guarded")
    outsider = auth.create_user(ctx, "outsider", "outsider-password-1")
    with pytest.raises(BackendError):  # NotFound: the app is not even revealed
        app_secrets.set_secrets(ctx, outsider, app.id, 'x = "outsider-value-1"\n')
    with session_scope(ctx.engine) as s:
        assert not list(s.exec(select(AppSecretValue).where(AppSecretValue.app_id == app.id)))


def test_recorded_reasons_and_emails_mask_secret_values(ctx: Context, admin: User) -> None:
    """Reasons may quote an app's or a build's output: the supervisor's records mask them
    in the event, the app's state reason, its last deploy error and the email."""
    from supervisor.control.app_records import AppRecords
    app = apps.deploy_app(ctx, admin, repo_url=REPO, subdomain="reasons")
    app_secrets.set_secrets(ctx, admin, app.id, 'token = "reason-secret-1"\n', restart=False)
    app_secrets.set_secrets(ctx, admin, app.id, 'token = "reason-secret-2"\n', restart=False)
    with session_scope(ctx.engine) as s:
        row = s.get(User, admin.id)
        assert row is not None
        row.email = "dev@example.com"
    records = AppRecords(ctx, runtime=None)  # type: ignore[arg-type]  # records only
    quoted = "Last lines of its log:\nold reason-secret-1\nnew reason-secret-2"
    for state in ("building", "starting", "running"):
        records.transition(app.id, state, state)
    records.transition(app.id, "crashed", f"The app stopped. {quoted}",
                       notify=("crashed", {"details": quoted}))
    records.note(app.id, f"Update failed: {quoted}", notify=("deploy_failed", "c1", {
        "commit": "c" * 40, "serving": "d" * 40, "details": quoted}),
        last_deploy_error=quoted)
    with session_scope(ctx.engine) as s:
        stored = s.get(App, app.id)
        assert stored is not None
        texts = [stored.state_reason, stored.last_deploy_error]
        texts += [e.reason for e in s.exec(select(AppEvent).where(AppEvent.app_id == app.id))]
        mails = list(s.exec(select(EmailOutbox).where(EmailOutbox.app_id == app.id)))
    assert {m.kind for m in mails} == {"crashed", "deploy_failed"}
    texts += [t for m in mails for t in (m.body_text, m.body_html)]
    assert all("reason-secret" not in t for t in texts), texts
    # the state reason, the last deploy error, two events, and each mail's text and html
    assert sum("old ****" in t and "new ****" in t for t in texts) == 4 + 2 * len(mails)


def test_history_rows_of_another_key_are_skipped(ctx: Context, admin: User) -> None:
    """A row the key cannot decrypt (saved under a key file since replaced) is left out;
    the other rows and the current document still mask."""
    app = apps.deploy_app(ctx, admin, repo_url=REPO, subdomain="rekeyed")
    app_secrets.set_secrets(ctx, admin, app.id, 'token = "current-value-2"\n', restart=False)
    app_secrets.runtime_path(ctx.settings, app.id).unlink()  # only the database is read
    foreign = Fernet(Fernet.generate_key()).encrypt(b"lost-value").decode()
    with session_scope(ctx.engine) as s:
        for row in s.exec(select(AppSecretValue).where(AppSecretValue.app_id == app.id)):
            s.delete(row)
        s.flush()
        s.add(AppSecretValue(app_id=app.id, fingerprint="f" * 64, ciphertext=foreign))
        s.flush()
        s.add(AppSecretValue(app_id=app.id, fingerprint="a" * 64,
                             ciphertext=app_secrets.encrypt(ctx, "old-under-key-1")))
    text = "old-under-key-1 current-value-2 lost-value"
    assert log_masking.mask(ctx, app.id, text) == "**** **** lost-value"
