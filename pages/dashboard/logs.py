"""Logs: one app's runtime log (its output) and build log (clone and environment), live.

Each section follows its file: a fragment rereads the tail every `TAIL_SECONDS` and shows
the last N lines in a code block, newest at the bottom, inside a fixed-height container
that scrolls itself to the bottom when lines arrive (`autoscroll`). A filter keeps the
lines that contain its words; "Download" gives the whole file (read when clicked). Secret
values of the app are masked (backend.apps.logs). Developers of the app's workspace only.
"""

from __future__ import annotations

from typing import Any

import streamlit as st

from backend.apps import logs as app_logs
from backend.apps import service as app_service
from backend.context import Context
from backend.errors import BackendError
from pages.dashboard import _ui as ui

TAIL_SECONDS = 2.0
LINE_CHOICES = (200, 50, 1000)
LOG_HEIGHT = 440  # px: fits a 1280×800 window under the controls
SECTIONS = (("app", "Runtime log", "What the app prints (stdout and stderr), since it "
             "was deployed.", "(no output yet)"),
            ("build", "Build log", "Cloning the repository and building its environment, "
             "for the last deploy or push.", "(no build yet)"))


def filtered(text: str, needle: str, lines: int) -> tuple[str, int]:
    """The last `lines` lines containing every word of `needle`; and how many matched."""
    rows = text.rstrip("\n").splitlines()
    words = needle.lower().split()
    if words:
        rows = [r for r in rows if all(w in r.lower() for w in words)]
    return "\n".join(rows[-lines:]), len(rows)


def section(ctx: Context, user: Any, app: Any, kind: str, title: str, about: str,
            empty: str) -> None:
    head, download = st.columns([4, 1], vertical_alignment="bottom")
    head.subheader(title)
    head.caption(about)
    download.download_button(
        "Download", data=lambda: app_logs.read_full(ctx, user, app.id, kind),
        file_name=f"{app.subdomain}-{kind}.log", mime="text/plain", key=f"download_{kind}",
        icon=ui.ICON["download"], on_click="ignore", width="stretch")

    def tail() -> None:
        needle = st.session_state.get("log_filter", "")
        lines = st.session_state.get("log_lines", LINE_CHOICES[0])
        try:
            log = app_logs.read_tail(ctx, user, app.id, kind)
        except BackendError as e:
            st.error(str(e))
            return
        shown, matched = filtered(log.text, needle, lines)
        if needle.strip():
            st.caption(f"{matched} line{'' if matched == 1 else 's'} match "
                       f"“{ui.md(needle.strip())}”; the last {min(matched, lines)} shown.")
        with st.container(height=LOG_HEIGHT, autoscroll=True, border=False):
            st.code(shown or (empty if not needle.strip() else "(no matching line)"),
                    language=None, wrap_lines=True)

    st.fragment(tail, run_every=TAIL_SECONDS if st.session_state.get("log_follow", True)
                else None, key=f"tail_{kind}")()


ctx, user = ui.page_context()
st.title("Logs")
app_id = ui.app_picker(ctx, user)
if app_id is None:
    st.stop()
try:
    app = app_service.get_app(ctx, user, app_id)
except BackendError as e:
    st.error(str(e))
    st.stop()
if not app.can_manage:
    st.info(f"Logs are shown to developers of workspace {ui.md(app.workspace)}. Ask one of "
            "its admins for the developer role.")
    st.stop()
ui.status_badge(app)
ui.app_links(app, skip=ui.LOGS)
search, lines, follow = st.columns([3, 1, 1], vertical_alignment="bottom")
search.text_input("Filter", key="log_filter", placeholder="Show only lines with these words",
                  icon=":material/filter_list:", live="300ms")
lines.selectbox("Lines", LINE_CHOICES, key="log_lines")
follow.toggle("Live", value=True, key="log_follow",
              help=f"Reread the logs every {TAIL_SECONDS:g} s")
runtime_tab, build_tab = st.tabs([title for _, title, _, _ in SECTIONS])
for tab, (kind, title, about, empty) in zip((runtime_tab, build_tab), SECTIONS, strict=True):
    with tab:
        section(ctx, user, app, kind, title, about, empty)
