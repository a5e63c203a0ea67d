"""The overlay (Manage app button, star) in the HTML pages of hosted apps.

Only an app's HTML is touched: a GET answered 200 with `Content-Type: text/html`, and
never a page asked for with `?embed=true` (`apphost.embedded`: the app alone, as
Community Cloud's embed URLs show it). Every other response (JS, JSON, media, websockets,
206 ranges, 304s) keeps the streaming path of `forward.py` and is never buffered. For
requests that may be a page (a navigation, or an `Accept` that names text/html) the
upstream is asked for `Accept-Encoding: identity` and for the whole page (no Range, no
conditional headers), so it is plain text we can edit; an upstream that compresses anyway
is decoded here (gzip, deflate; br when the `brotli` module is installed, else passed
through unedited).

The edit is one insertion right before the first `</head>` (else the last `</body>`):
`<link>` and `<script defer>` tags for `/__stcloud/overlay.css` and `.js` (same origin, so
an app's `script-src 'self'` policy allows them). Nothing else changes; the length is
recomputed and `ETag`/`Last-Modified` are dropped, since the body is no longer the
upstream's. A page larger than `MAX_HTML` is passed through unedited, still streamed.
"""

from __future__ import annotations

import hashlib
import logging
import re
import zlib
from pathlib import Path

from aiohttp import web
from multidict import CIMultiDict, MultiMapping

log = logging.getLogger("supervisor.proxy")

ASSETS = Path(__file__).resolve().parent / "assets"
MAX_HTML = 5 * 1024 * 1024
# Request headers that would make the upstream answer a page we cannot edit.
PAGE_REQUEST_DROP = ("Range", "If-Range", "If-None-Match", "If-Modified-Since")
# Response headers that describe the upstream's bytes, not ours.
EDITED_RESPONSE_DROP = ("Content-Length", "Content-Encoding", "ETag", "Last-Modified",
                        "Content-MD5", "Digest", "Accept-Ranges")
_HEAD_END = re.compile(rb"</head\s*>", re.IGNORECASE)
_BODY_END = re.compile(rb"</body\s*>", re.IGNORECASE)

try:  # optional: decode brotli pages when the module is there
    import brotli
except ImportError:  # pragma: no cover - depends on the environment
    brotli = None


def _asset_version() -> str:
    digest = hashlib.sha256()
    for name in ("overlay.js", "overlay.css"):
        digest.update((ASSETS / name).read_bytes())
    return digest.hexdigest()[:12]


ASSET_VERSION = _asset_version()
OVERLAY_TAGS = (
    f'<link rel="stylesheet" href="/__stcloud/overlay.css?v={ASSET_VERSION}">'
    f'<script src="/__stcloud/overlay.js?v={ASSET_VERSION}" defer></script>'
).encode()


def may_be_page(request: web.BaseRequest) -> bool:
    """A GET that may be answered with an HTML page (a navigation, or HTML accepted)."""
    if request.method != "GET":
        return False
    headers = request.headers
    dest = headers.get("Sec-Fetch-Dest")
    if dest is not None:
        return dest in ("document", "iframe", "frame", "embed", "object")
    return "text/html" in headers.get("Accept", "")


def prepare_page_request(headers: CIMultiDict[str]) -> None:
    """Ask the upstream for the whole page, uncompressed (in place)."""
    for name in PAGE_REQUEST_DROP:
        headers.popall(name, None)
    headers["Accept-Encoding"] = "identity"


def is_html(headers: MultiMapping[str]) -> bool:
    return headers.get("Content-Type", "").split(";", 1)[0].strip().lower() == "text/html"


def decode(body: bytes, encoding: str) -> bytes | None:
    """The decoded body, or None when the encoding is not one we can undo."""
    coding = encoding.strip().lower()
    try:
        if coding in ("", "identity"):
            return body
        if coding in ("gzip", "x-gzip"):
            return zlib.decompress(body, 16 + zlib.MAX_WBITS)
        if coding == "deflate":
            try:
                return zlib.decompress(body)
            except zlib.error:
                return zlib.decompress(body, -zlib.MAX_WBITS)
        if coding == "br" and brotli is not None:
            decoded: bytes = brotli.decompress(body)
            return decoded
    except (zlib.error, ValueError, OSError) as exc:
        log.info("inject_decode_failed encoding=%s error=%s", coding, exc)
    return None


def insert_tags(html: bytes, tags: bytes = OVERLAY_TAGS) -> bytes | None:
    """`html` with `tags` right before `</head>` (else the last `</body>`); None if neither."""
    match = _HEAD_END.search(html)
    if match is None:
        ends = list(_BODY_END.finditer(html))
        match = ends[-1] if ends else None
    if match is None:
        return None
    at = match.start()
    return html[:at] + tags + html[at:]


def asset_response(name: str) -> web.Response:
    """overlay.js / overlay.css, cacheable (the injected URL carries their version)."""
    kind = "application/javascript" if name.endswith(".js") else "text/css"
    return web.Response(body=_ASSET_BYTES[name], content_type=kind, charset="utf-8",
                        headers={"Cache-Control": "public, max-age=86400",
                                 "X-Content-Type-Options": "nosniff"})


_ASSET_BYTES = {name: (ASSETS / name).read_bytes()
                for name in ("overlay.js", "overlay.css", "return.js")}
