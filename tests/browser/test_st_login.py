"""In Chromium, a real hosted app (process runtime, in its sandbox) calling `st.login()`
against the platform's own accounts, with nothing configured by its developer: the
platform writes the app's `[auth]` secrets and installs Authlib into its environment.
A viewer signed in on the dashboard lands back in the app signed in, no second prompt,
and the app shows `st.user.email` and the viewer's role (and, the app having turned
them on, the identity headers in `st.context.headers`); an anonymous one goes through
the dashboard's sign-in form and back; `st.logout()` signs the app out; a private app's
invited viewer signs in the same way.

The sandbox has no host loopback, so the app reaches the platform's token endpoint at
`oidc_internal_url`: this host's own address, on which the proxy listens (bind 0.0.0.0)."""

from __future__ import annotations

import dataclasses
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from backend.accounts import auth, oidc_clients
from backend.apps import service as apps
from backend.apps import sharing
from backend.context import open_context
from backend.platform.settings import Settings
from backend.platform.settings_load import load_settings
from tests.browser.docs_shots import docs_shot
from tests.conftest import CACHE_ROOT, GitRepo, free_port
from tests.support.browser import chromium_path, screenshot, sign_in
from tests.support.supervisor_harness import SupervisorProcess, wait_for_state

TIMEOUT = 60_000  # ms
PASSWORD = "password123"
APP_SOURCE = '''import streamlit as st

st.title("Team dashboard")
st.caption(f"Header user: {st.context.headers.get('X-Forwarded-User', 'none')}")
if not st.user.is_logged_in:
    st.write("Sign in to see your numbers.")
    st.button("Log in", on_click=st.login)
else:
    st.write(f"Signed in as {st.user.email}")
    st.write(f"Role: {st.user.role}")
    st.button("Log out", on_click=st.logout)
'''


@dataclasses.dataclass
class Site:
    settings: Settings
    supervisor: SupervisorProcess

    def url(self, sub: str | None = None, path: str = "/") -> str:
        return self.settings.public_url(sub) + path


def host_address() -> str:
    """This host's address on its default route (no packet is sent), else skip."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))
        except OSError:
            pytest.skip("this host has no address besides loopback")
        address: str = s.getsockname()[0]
    if address.startswith("127."):
        pytest.skip("this host has no address besides loopback")
    return address


@pytest.fixture(scope="module")
def login_site(tmp_path_factory: pytest.TempPathFactory,
                module_database_url: str) -> Iterator[Site]:
    chromium_path()
    root = tmp_path_factory.mktemp("login")
    port = free_port()
    settings = load_settings(env={}, data_dir=root / "data", envs_dir=root / "envs",
                             uv_cache_dir=CACHE_ROOT / "uv", port=port, bind="0.0.0.0",
                             oidc_internal_url=f"http://{host_address()}:{port}",
                             runtime="process", reconcile_interval=0.2, health_timeout=60.0,
                             git_poll_interval=0.0, database_url=module_database_url)
    ctx = open_context(settings)
    dev = auth.create_user(ctx, "dev", PASSWORD, email="dev@example.com")
    auth.create_user(ctx, "vera", PASSWORD, email="vera@example.com", name="Vera")
    repo = GitRepo(root / "repos" / "team")
    # No [auth] and no Authlib: the developer configured nothing.
    repo.commit({"streamlit_app.py": APP_SOURCE,
                 "requirements.txt": f"streamlit=={settings.default_streamlit}\n"}, "app")
    view = apps.deploy_app(ctx, dev, repo_url=repo.url, subdomain="team")
    oidc_clients.set_identity_headers(ctx, dev, view.id, True)
    # The same app, private: vera is invited, otto is not.
    vault = apps.deploy_app(ctx, dev, repo_url=repo.url, subdomain="vault")
    sharing.set_visibility(ctx, dev, vault.id, "private")
    sharing.invite_viewer(ctx, dev, vault.id, "vera@example.com")
    sup = SupervisorProcess(settings, root / "supervisor.log").start()
    try:
        for app_id in (view.id, vault.id):
            app = wait_for_state(ctx, app_id, {"running", "build_failed", "crashed"},
                                 sup=sup, timeout=300)
            assert app.state == "running", app.state_reason
        yield Site(settings, sup)
    finally:
        sup.stop()


def log_in_from_the_app(page: Any, site: Site, header_user: str, sub: str = "team") -> None:
    """Open the app, see who its identity header names, press Log in (st.login())."""
    page.goto(site.url(sub))
    page.get_by_text("Sign in to see your numbers.").wait_for(timeout=TIMEOUT)
    page.get_by_text(f"Header user: {header_user}").wait_for(timeout=TIMEOUT)
    page.get_by_role("button", name="Log in").click()


def test_signed_in_viewer_lands_back_signed_in(login_site: Site, browser: Any,
                                               tmp_path: Path) -> None:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    try:
        sign_in(page, login_site, "vera")
        # The identity headers reach the app's connection (st.context.headers) before
        # st.login(): the app host knows the viewer from the dashboard.
        log_in_from_the_app(page, login_site, "vera")
        page.get_by_text("Signed in as vera@example.com").wait_for(timeout=TIMEOUT)
        page.get_by_text("Role: viewer").wait_for(timeout=TIMEOUT)
        assert page.url.startswith(login_site.url("team"))
        docs_shot(page, "app-st-login")
        screenshot(page, "st-login-signed-in")
        page.get_by_role("button", name="Log out").click()
        page.get_by_text("Sign in to see your numbers.").wait_for(timeout=TIMEOUT)
    except Exception:
        screenshot(page, "st-login-failure")
        raise
    finally:
        context.close()


def test_anonymous_viewer_signs_in_on_the_dashboard_and_comes_back(
        login_site: Site, browser: Any) -> None:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    try:
        log_in_from_the_app(page, login_site, "none")
        # The dashboard's sign-in form, then back through the provider into the app.
        sign_in(page, login_site, "dev", goto=False)
        page.get_by_text("Signed in as dev@example.com").wait_for(timeout=TIMEOUT)
        page.get_by_text("Role: admin").wait_for(timeout=TIMEOUT)
    except Exception:
        screenshot(page, "st-login-anonymous-failure")
        raise
    finally:
        context.close()


def test_private_app_signs_in_its_invited_viewer_without_a_prompt(
        login_site: Site, browser: Any) -> None:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    try:
        sign_in(page, login_site, "vera")
        log_in_from_the_app(page, login_site, "none", sub="vault")  # headers are off here
        page.get_by_text("Signed in as vera@example.com").wait_for(timeout=TIMEOUT)
        page.get_by_text("Role: viewer").wait_for(timeout=TIMEOUT)  # invited, no member
        assert page.url.startswith(login_site.url("vault"))
    except Exception:
        screenshot(page, "st-login-private-failure")
        raise
    finally:
        context.close()
