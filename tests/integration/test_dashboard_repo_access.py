"""The deploy form and the app's Settings page for a private repository on any git host,
under AppTest on the real Home.py: the form makes a deploy key and shows its public half
before Deploy; once that key is added to a real sshd's authorized_keys, Deploy checks the
repository with it and stores it with the app; the Settings page shows the key, refuses a
token for an ssh URL and removes the key; neither page ever shows a private key or a token."""

from __future__ import annotations

from pathlib import Path

from backend.apps import service as apps
from backend.repositories import credentials
from pages.dashboard import _ui as ui
from tests.support.dashboard import Dash, error_under, open_dashboard, text
from tests.support.git_servers import Sshd, bare_repo

FILES = {"streamlit_app.py": "import streamlit as st\nst.write('private')\n"}


def test_deploy_with_a_deploy_key_then_switch_to_a_token(dash: Dash, tmp_path: Path) -> None:
    authorized = tmp_path / "authorized_keys"
    authorized.write_text("")
    sshd = Sshd(tmp_path / "sshd", authorized)
    try:
        bare = bare_repo(tmp_path / "git", "team", "keyed", FILES)
        url = f"ssh://{sshd.user}@127.0.0.1:{sshd.port}{bare}"
        at = open_dashboard(dash.admin, ui.DEPLOY)
        at.text_input(key="deploy_repo").input(url).run()
        at.radio(key="deploy_access").set_value("deploy_key").run()
        public = next(c.value for c in at.code if c.value.startswith("ssh-ed25519 "))
        assert "PRIVATE KEY" not in text(at)
        # Deploy before the key is on the host: refused under the repository, nothing queued.
        at.button(key="deploy_submit").click().run()
        assert "needs credentials" in error_under(at, "Repository")
        assert apps.list_apps(dash.ctx, dash.admin) == []
        # The same key is offered again; the developer adds it, and Deploy reads with it.
        again = next(c.value for c in at.code if c.value.startswith("ssh-ed25519 "))
        assert again == public
        authorized.write_text(public + "\n")
        at.button(key="deploy_submit").click().run()
        assert not at.exception, at.exception
        [app] = apps.list_apps(dash.ctx, dash.admin)
        info = credentials.describe(dash.ctx, dash.admin, app.id)
        assert (info.kind, info.public_key) == ("deploy_key", public)
    finally:
        sshd.stop()

    at = open_dashboard(dash.admin, ui.SETTINGS, query={"app": str(app.id)})
    assert public in [c.value for c in at.code]
    at.text_input(key=f"access_token_{app.id}").input("glpat-new-token-123").run()
    at.button(key=f"access_set_{app.id}").click().run()
    assert not at.exception, at.exception
    # The app's URL is ssh: a token is refused, saying what to use, and the key stays.
    assert any("https" in e.value for e in at.error), [e.value for e in at.error]
    assert credentials.describe(dash.ctx, dash.admin, app.id).kind == "deploy_key"
    assert "glpat-new-token-123" not in text(at)
    at.button(key=f"access_rm_{app.id}").click().run()
    assert credentials.describe(dash.ctx, dash.admin, app.id).kind == ""
    assert "No credential" in text(at)
