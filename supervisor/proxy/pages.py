"""Our own pages: what a visitor sees when the proxy cannot (or must not) forward.

One branded template (inline CSS only, no external assets, `lang`, a title, one `h1`,
AA contrast in light and dark schemes) and one function per situation. Every response
carries `Cache-Control: no-store`, so a browser never shows a stale "in the oven" page
once the app serves. Oven and state pages answer 503 with `Retry-After`; 404 pages 404.

Pages that wait for something (the oven, the dashboard starting, a state page that may
change) poll `/__stcloud/status` on their own host with a tiny inline script and reload
when the host serves (or when the state leaves the set the page was rendered for), so a
visitor lands on the app by itself; the oven shows the build log's newest line as it
goes. A `<noscript>` meta refresh is the fallback. Pages whose content depends on who
looks (sleeping, over limit, failed, no access) are in `state_pages.py`.
"""

from __future__ import annotations

import json
import re
from html import escape
from typing import Any

from aiohttp import web
from multidict import CIMultiDict

from backend.platform.settings import Settings
from supervisor.routes import OVEN_STATES, Route

BRAND = "Streamlit Cloud"
# The timestamp BuildLog puts before each line ("[2026-01-31 12:00:00] ").
STAMP_JS = r"^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\] "
STAMP = re.compile(STAMP_JS)
NO_STORE = "no-store"

STATE_LABELS = {
    "queued": "Queued",
    "building": "Building",
    "starting": "Starting",
    "running": "Running",
    "build_failed": "Build failed",
    "crashed": "Crashed",
    "over_limit": "Over its resource limits",
    "sleeping": "Sleeping",
    "stopped": "Stopped",
    "deleting": "Being deleted",
}

# state -> (emoji, heading, what happened, what to do). `{dashboard}` is a link.
STATE_PAGES: dict[str, tuple[str, str, str, str]] = {
    "build_failed": (
        "🛠️", "This app failed to build",
        "Its environment could not be built from the repository's requirements.",
        "If you develop this app, open the build log from {dashboard}, fix the "
        "requirements and push again; the app rebuilds on its own.",
    ),
    "crashed": (
        "💥", "This app has crashed",
        "The app stopped unexpectedly and restarting it did not help.",
        "If you develop this app, read its logs and reboot it from {dashboard}.",
    ),
    "over_limit": (
        "🤯", "Argh. This app has gone over its resource limits",
        "It used more memory than it is allowed, so it was stopped.",
        "If you develop this app, reduce its memory use and reboot it from {dashboard}.",
    ),
    "sleeping": (
        "😴", "Zzzz… This app has gone to sleep due to inactivity",
        "Apps without visitors for a while are put to sleep to save resources.",
        "You can wake it from {dashboard}; it is back in a few seconds.",
    ),
    "stopped": (
        "⏹️", "This app is stopped",
        "Its developers have stopped it.",
        "If you develop this app, start it again from {dashboard}.",
    ),
    "deleting": (
        "🗑️", "This app is being deleted",
        "Its developers removed it from the platform.",
        "Find other apps on {dashboard}.",
    ),
}

_CSS = """
:root{color-scheme:light dark;--bg:#f6f7f9;--card:#fff;--fg:#1f2330;--muted:#4a5060;
--accent:#b3261e;--line:#dde1e7}
@media (prefers-color-scheme:dark){:root{--bg:#0e1117;--card:#1a1d26;--fg:#f2f3f5;
--muted:#c3c7d0;--accent:#ff8a80;--line:#30343f}}
*{box-sizing:border-box}
body{margin:0;min-height:100vh;display:flex;align-items:center;justify-content:center;
background:var(--bg);color:var(--fg);font:16px/1.55 system-ui,-apple-system,"Segoe UI",
Roboto,sans-serif;padding:1.5rem}
main{background:var(--card);border:1px solid var(--line);border-radius:12px;
max-width:34rem;width:100%;padding:2rem 2.25rem;box-shadow:0 2px 12px rgba(0,0,0,.06)}
.mark{font-size:2.75rem;line-height:1;margin:0 0 .75rem}
h1{font-size:1.5rem;line-height:1.25;margin:0 0 .75rem}
p{margin:.5rem 0}
.muted{color:var(--muted)}
.status{margin:1rem 0;padding:.75rem 1rem;border-left:4px solid var(--accent);
background:var(--bg);border-radius:4px}
.status strong{display:block}
a{color:var(--accent);font-weight:600}
a:focus-visible{outline:3px solid var(--accent);outline-offset:2px}
footer{margin-top:1.5rem;font-size:.85rem;color:var(--muted)}
form{margin:1rem 0 .5rem}
.button{font:inherit;font-weight:600;padding:.6rem 1.1rem;border-radius:8px;cursor:pointer;
border:1px solid var(--accent);background:var(--accent);color:var(--card)}
.button.secondary{background:transparent;color:var(--accent)}
.button:focus-visible{outline:3px solid var(--fg);outline-offset:2px}
pre{background:var(--bg);border:1px solid var(--line);border-radius:6px;padding:.6rem .75rem;
overflow:auto;max-height:16rem;font-size:.8rem;white-space:pre-wrap;word-break:break-word}
.progress{margin:.25rem 0 0;max-height:none;white-space:pre-wrap}
ol.phases{list-style:none;padding:0;margin:.5rem 0}ol.phases li{padding:.15rem 0}
li.phase.waiting{color:var(--muted)}li.phase.running{font-weight:600}
#phase-progress{width:100%}
"""

# Polls /__stcloud/status; reloads when the host serves or leaves the `keep` states.
_POLL_JS = """(function(){var c=%s;function t(){fetch("/__stcloud/status",
{cache:"no-store",credentials:"same-origin"}).then(function(r){return r.json()}).then(
function(d){if(d.serving||c.keep.indexOf(d.state)<0){location.reload();return}
var l=document.getElementById("state-label"),r=document.getElementById("reason");
if(l&&c.labels[d.state])l.textContent=c.labels[d.state];if(r)r.textContent=d.reason||"";
var p=document.getElementById("progress"),s=(d.progress||"").replace(c.stamp,"");
if(p){p.textContent=s;p.parentNode.hidden=!s}
var h=document.getElementById("phases");if(h&&d.phases!==undefined){h.innerHTML=d.phases;
h.hidden=!d.phases}
setTimeout(t,c.ms)}).catch(function(){setTimeout(t,c.ms)})}setTimeout(t,c.ms)})();"""


def render(title: str, heading: str, body_html: str, *, mark: str = "🎈",
           poll_keep: list[str] | None = None, poll_ms: int = 1000,
           refresh_s: int | None = None, refresh_always: bool = False) -> str:
    """The shared template. `body_html` must already be escaped.

    `refresh_s` adds a meta refresh, inside `<noscript>` unless `refresh_always`.
    """
    refresh = f'<meta http-equiv="refresh" content="{refresh_s}">' if refresh_s else ""
    if refresh and not refresh_always:
        refresh = f"<noscript>{refresh}</noscript>"
    script = ""
    if poll_keep is not None:
        conf = json.dumps({"keep": poll_keep, "ms": poll_ms, "labels": STATE_LABELS})
        conf = conf[:-1] + f', "stamp": /{STAMP_JS}/' + "}"  # a JS regex literal
        script = "<script>" + _POLL_JS % conf.replace("</", "<\\/") + "</script>"
    return (
        '<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        '<meta name="robots" content="noindex">\n'
        f"<title>{escape(title)} · {BRAND}</title>\n{refresh}\n"
        f"<style>{_CSS}</style>\n</head>\n<body>\n<main>\n"
        f'<p class="mark" aria-hidden="true">{mark}</p>\n'
        f"<h1>{escape(heading)}</h1>\n{body_html}\n"
        f'<footer>{BRAND}</footer>\n</main>\n{script}\n</body>\n</html>\n'
    )


def page_response(html: str, status: int, retry_after: int | None = None,
              cookies: tuple[str, ...] = ()) -> web.Response:
    headers: CIMultiDict[str] = CIMultiDict({"Cache-Control": NO_STORE,
                                             "X-Content-Type-Options": "nosniff"})
    if retry_after is not None:
        headers["Retry-After"] = str(retry_after)
    for value in cookies:
        headers.add("Set-Cookie", value)
    return web.Response(text=html, status=status, content_type="text/html",
                        charset="utf-8", headers=headers)


def dashboard_link(settings: Settings, text: str = "the dashboard") -> str:
    return f'<a href="{escape(settings.public_url(), quote=True)}">{escape(text)}</a>'


def status_box(state: str, reason: str) -> str:
    label = STATE_LABELS.get(state, state.replace("_", " ").capitalize())
    return (f'<div class="status" role="status" aria-live="polite">'
            f'<strong id="state-label">{escape(label)}</strong>'
            f'<span id="reason" class="muted">{escape(reason)}</span></div>')


def latest_step(progress: str) -> str:
    """The build log's newest line as the oven page shows it: without its timestamp."""
    return STAMP.sub("", progress.strip())


def oven_page(route: Route, settings: Settings, progress: str = "",
              phases: str = "") -> web.Response:
    """queued / building / starting: wait here, reload onto the app when it serves.
    `progress` is the newest line of the build log; "Latest step" shows it while there is
    one and is hidden otherwise. `phases`: the deploy's phases (`supervisor.builds.phases`,
    already escaped). The page's polling updates all three."""
    step = latest_step(progress)
    hidden = "" if step else " hidden"
    body = (
        f"<p><strong>{escape(route.subdomain)}</strong> is being prepared. This page "
        "refreshes by itself and opens the app as soon as it is ready.</p>\n"
        f"{status_box(route.state, route.reason)}\n"
        f'<div id="phases" class="phases-box"{"" if phases else " hidden"}>{phases}</div>\n'
        f'<div id="latest-step"{hidden}><p class="muted">Latest step:</p>'
        f'<pre id="progress" class="progress">{escape(step)}</pre></div>\n'
        f'<p class="muted">Developers can follow the progress on '
        f"{dashboard_link(settings)}.</p>"
    )
    html = render("Your app is in the oven", "Your app is in the oven", body, mark="🧑‍🍳",
                  poll_keep=sorted(OVEN_STATES), poll_ms=1000, refresh_s=3)
    return page_response(html, 503, retry_after=5)


def state_page(route: Route, settings: Settings) -> web.Response:
    """build_failed, crashed, over_limit, sleeping, stopped, deleting (or any other)."""
    mark, heading, happened, todo = STATE_PAGES.get(route.state, (
        "⚠️", "This app is not available",
        "The app is not serving right now.",
        "If you develop this app, look at it on {dashboard}.",
    ))
    body = (
        f"<p>{escape(happened)}</p>\n{status_box(route.state, route.reason)}\n"
        f"<p>{escape(todo).replace('{dashboard}', dashboard_link(settings))}</p>"
    )
    html = render(heading, heading, body, mark=mark, poll_keep=[route.state],
                  poll_ms=5000, refresh_s=30)
    return page_response(html, 503, retry_after=30)


def not_found_page(host: str, settings: Settings) -> web.Response:
    """A host (or subdomain) we serve nothing at."""
    body = (f"<p>There is no app at this address. Check the link, or find the app on "
            f"{dashboard_link(settings)}.</p>")
    html = render("App not found", f"No app lives at {host}", body, mark="🔍")
    return page_response(html, 404)


def dashboard_starting_page(settings: Settings) -> web.Response:
    """The dashboard host while its Streamlit process is not (yet) answering."""
    body = ("<p>The platform is starting up. This page refreshes by itself and opens the "
            "dashboard as soon as it is ready.</p>\n"
            + status_box("starting", "Starting the dashboard"))
    html = render("The dashboard is starting", "The dashboard is starting", body,
                  poll_keep=["starting"], poll_ms=1000, refresh_s=3)
    return page_response(html, 503, retry_after=5)


def not_answering_page(route: Route, settings: Settings) -> web.Response:
    """The app should serve but its instance refused or timed out (502)."""
    body = ("<p>The app should be running, but it did not answer. It may be restarting; "
            "try again in a moment.</p>\n"
            f"{status_box(route.state, route.reason)}\n"
            f"<p>If you develop this app, check its logs on {dashboard_link(settings)}.</p>")
    html = render("The app is not answering", "The app is not answering", body,
                  mark="🔌", refresh_s=10, refresh_always=True)
    return page_response(html, 502, retry_after=10)


def json_response(data: dict[str, Any], status: int = 200) -> web.Response:
    return web.json_response(data, status=status, headers={"Cache-Control": NO_STORE})
