"""Server settings (site admins): every setting with its effective value and where it came
from (the built-in default, the TOML file, the environment), secrets never shown.

Settings are read once when the platform starts (`backend.platform.settings`); to change
one, edit the file or the environment it came from and restart the platform. The
environment wins over the file, the file over the default.
"""

from __future__ import annotations

import streamlit as st

from backend.errors import BackendError
from backend.platform import settings_view
from pages.dashboard import _ui as ui

ctx, admin = ui.page_context()
st.title("Server settings")
try:
    rows = settings_view.settings_for_admin(ctx, admin)
except BackendError as e:
    st.warning(str(e))
    st.stop()
st.caption("Effective values of this platform's settings and where each came from. "
           "Precedence: environment (STCLOUD_*) over the file over the default. Secrets "
           "are never shown. To change a setting, change it where it came from and restart "
           "the platform.")
query = st.text_input("Filter", key="settings_filter", placeholder="smtp, sleep, memory…")
shown = [r for r in rows if query.lower() in (r.name + " " + r.help).lower()]
st.dataframe(
    [{"Setting": r.name, "Value": r.value, "From": r.source, "What it does": r.help}
     for r in shown],
    hide_index=True, width="stretch", key="settings_table")

st.subheader("Email")
st.caption("Send a test message through the outbox and the configured SMTP server "
           "(smtp_host above); the supervisor sends it within a few seconds, and the Status "
           "page's outbox says whether it went.")
to_addr = st.text_input("Send a test email to", key="test_email_to",
                        value=getattr(admin, "email", "") or "")
if st.button("Send a test email", key="send_test_email", icon=":material/send:"):
    try:
        settings_view.queue_test_email(ctx, admin, to_addr)
    except BackendError as e:
        st.error(str(e), icon=ui.ICON["error"])
    else:
        st.success(f"Queued a test email to {ui.md(to_addr)}.")
