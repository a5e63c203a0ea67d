"""Server settings (site admins): every setting with its effective value and where it came
from (the built-in default, the TOML file, the environment, a live change), secrets never
shown; the settings that are safe to change while the platform runs are editable here.

Live changes (`backend.platform.setting_overrides`) take effect without a restart: every
process reloads its settings on its next pass. The rest are read once at start: change them
in the file or the environment they came from and restart the platform.
"""

from __future__ import annotations

from typing import Any

import streamlit as st

from backend.errors import BackendError, ValidationError
from backend.platform import setting_overrides, settings_view
from backend.platform.settings import SECRET_SETTINGS
from pages.dashboard import _ui as ui

# Live settings by group: (name, label); widgets follow each setting's type.
GROUPS: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = (
    ("Email", (("smtp_host", "SMTP host"), ("smtp_port", "SMTP port"),
               ("smtp_tls", "SMTP TLS"), ("smtp_user", "SMTP user name"),
               ("smtp_password", "SMTP password"), ("smtp_from", "Sender address"))),
    ("Links", (("support_url", "Support link"), ("docs_url", "Documentation link"))),
    ("Sleep", (("hibernate_after_days", "Days without a view before an app sleeps"),
               ("hibernate_warn_after_days", "Days without a view before the warning email"),
               ("hibernate_private_apps", "Private apps sleep too"),
               ("sleep_default_policy", "Default sleep policy"),
               ("sleep_min_idle_minutes", "Shortest idle period developers may choose "
                "(minutes)"),
               ("sleep_never_allowed", "Developers may choose 'never'"),
               ("sleep_never_max_per_workspace", "Most 'never' apps per workspace (0: no "
                "cap)"))),
    ("Resources", (("memory_limit_mb", "Default memory limit per app (MiB)"),
                   ("memory_warning_percent", "Warn developers above this share of the "
                    "limit (percent, 0: never)"),
                   ("memory_warning_minutes", "Minutes above that share before the "
                    "warning"))),
)
TLS_MODES = ("starttls", "ssl", "none")
ERRORS_KEY = "_live_settings_errors"
FLASH_KEY = "_live_settings_flash"


def _widget(name: str, label: str, value: Any, source: str) -> Any:
    key, hint = f"live_{name}", f"{name} · from {source}"
    if name in SECRET_SETTINGS:  # never sent to the browser: typing one replaces it
        return st.text_input(label, value="", type="password", key=key, help=hint,
                             placeholder="set, hidden: type to replace" if value else
                             "not set")
    if name == "smtp_tls":
        index = TLS_MODES.index(value) if value in TLS_MODES else 0
        return st.selectbox(label, TLS_MODES, index=index, key=key, help=hint)
    if isinstance(value, bool):
        return st.checkbox(label, value=value, key=key, help=hint)
    if isinstance(value, int):
        return st.number_input(label, value=value, step=1, key=key, help=hint)
    if isinstance(value, float):
        return st.number_input(label, value=value, step=0.5, format="%g", key=key, help=hint)
    return st.text_input(label, value=str(value), key=key, help=hint)


def _live_form(ctx: Any, admin: Any, sources: dict[str, str]) -> None:
    settings = ctx.settings
    with st.form("live_settings", border=False):
        asked: dict[str, Any] = {}
        for group, fields in GROUPS:
            present = [(n, label) for n, label in fields if hasattr(settings, n)]
            if not present:
                continue
            st.markdown(f"**{group}**")
            for name, label in present:
                asked[name] = _widget(name, label, getattr(settings, name), sources[name])
                for message in st.session_state.get(ERRORS_KEY, {}).get(name, []):
                    st.error(message, icon=ui.ICON["error"])
        saved = st.form_submit_button("Save changes", icon=ui.ICON["save"])
    if not saved:
        return
    changed = {n: v for n, v in asked.items() if v != getattr(settings, n)
               and not (n in SECRET_SETTINGS and v == "")}
    try:
        names = setting_overrides.change_many(ctx, admin, changed)
    except ValidationError as e:
        st.session_state[ERRORS_KEY] = {e.field: [e.message]}
        st.rerun()
    except BackendError as e:
        st.error(str(e), icon=ui.ICON["error"])
        return
    st.session_state[ERRORS_KEY] = {}
    st.session_state[FLASH_KEY] = (f"Saved {', '.join(names)}: in effect everywhere "
                                      "within a few seconds." if names else
                                      "Nothing changed.")
    st.rerun()


ctx, admin = ui.page_context()
st.title("Server settings")
try:
    rows = settings_view.settings_for_admin(ctx, admin)
except BackendError as e:
    st.warning(str(e))
    st.stop()
flash = st.session_state.pop(FLASH_KEY, None)
if flash:
    st.success(flash)
sources = {r.name: r.source for r in rows}

st.subheader("Change live")
st.caption("These settings take effect without a restart: every part of the platform picks "
           "a change up within seconds. Setting one back to its value from the file, the "
           "environment or the default removes the live change.")
_live_form(ctx, admin, sources)
undo = [n for n in setting_overrides.LIVE if sources.get(n, "").startswith("changed live")]
if undo:
    cols = st.columns([3, 1], vertical_alignment="bottom")
    pick = cols[0].selectbox("Undo a live change", undo, key="undo_pick",
                             help="Back to the value from the file, the environment or the "
                             "default.")
    if cols[1].button("Undo", key="undo_live", icon=":material/undo:"):
        setting_overrides.reset(ctx, admin, pick)
        st.session_state.pop(f"live_{pick}", None)  # the form shows the start value again
        st.session_state[FLASH_KEY] = f"{pick} is back to the value it started with."
        st.rerun()

st.subheader("Email")
st.caption("Send a test message through the outbox and the SMTP server set above; the "
           "supervisor sends it within a few seconds, and the Status page's outbox says "
           "whether it went.")
to_addr = st.text_input("Send a test email to", key="test_email_to",
                        value=getattr(admin, "email", "") or "")
if st.button("Send a test email", key="send_test_email", icon=":material/send:"):
    try:
        settings_view.queue_test_email(ctx, admin, to_addr)
    except BackendError as e:
        st.error(str(e), icon=ui.ICON["error"])
    else:
        st.success(f"Queued a test email to {ui.md(to_addr)}.")

st.subheader("All settings")
st.caption("Effective values of this platform's settings and where each came from. "
           "Precedence: a live change over the environment (STCLOUD_*) over the file over "
           "the default. Secrets are never shown. To change a setting that is not live, "
           "change it where it came from and restart the platform.")
query = st.text_input("Filter", key="settings_filter", placeholder="smtp, sleep, memory…")
shown = [r for r in rows if query.lower() in (r.name + " " + r.help).lower()]
st.dataframe(
    [{"Setting": r.name, "Value": r.value, "From": r.source, "What it does": r.help}
     for r in shown],
    hide_index=True, width="stretch", key="settings_table")

history = setting_overrides.history(ctx, admin)
if history:
    with st.expander(f"Live changes ({len(history)} latest)"):
        st.dataframe([{"When": f"{h.changed_at:%Y-%m-%d %H:%M} UTC", "Setting": h.name,
                       "From": h.old or "(start value)", "To": h.new or "(start value)",
                       "By": h.changed_by} for h in history],
                     hide_index=True, width="stretch", key="live_history")
