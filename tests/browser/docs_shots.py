"""Screenshots for the documentation, taken by the browser flows themselves.

With `STCLOUD_SCREENSHOTS=<dir>` set (scripts/screenshots.sh sets it to docs/images), each
`docs_shot(page, name)` a flow calls saves `<dir>/<name>.png`: the visible 1280×800 viewport
(the page is resized for the shot and back), once the Streamlit page in it has finished its
run, reduced to a 256-colour palette so an image stays well under 200 KB. Unset (the normal
test run), `docs_shot` does nothing and the flows behave exactly as without it.

The names are the contract with docs/*.md, which link `images/<name>.png`;
tests/unit/test_docs_images.py checks that every link has its file and every file its link.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from backend.platform.settings import PROJECT_ROOT

ENV = "STCLOUD_SCREENSHOTS"
VIEWPORT = {"width": 1280, "height": 800}
SETTLE_MS = 15_000  # how long a shot waits for the page's Streamlit run to end
# True once no Streamlit app in the page is running a script, none of its elements is a
# previous run's (stale) copy, every chart and table has drawn, and the page's elements and
# text have stayed the same for STABLE_POLLS polls in a row (elements arrive in a burst after
# the script's run; the running indicator shows only some time into a run); true soon on
# pages without Streamlit.
STABLE_POLLS = 3
POLL_MS = 200
SETTLED_JS = """(stable) => {
  const busy = document.querySelector('[data-testid="stStatusWidget"] *, [data-stale="true"]');
  const drawn = [...document.querySelectorAll(
      '[data-testid="stVegaLiteChart"], [data-testid="stDataFrame"]')]
    .every(c => c.querySelector('canvas, svg'));
  const sig = document.querySelectorAll('*').length + ':' + document.body.innerText.length;
  if (busy || !drawn || window.__docsShotSig !== sig) {
    window.__docsShotSig = sig;
    window.__docsShotSame = 0;
    return false;
  }
  window.__docsShotSame += 1;
  return window.__docsShotSame >= stable;
}"""


def screenshots_dir() -> Path | None:
    """Where docs screenshots go, or None when they are off (the variable unset or empty)."""
    value = os.environ.get(ENV, "").strip()
    if not value:
        return None
    path = Path(value)
    return path if path.is_absolute() else PROJECT_ROOT / path


def _target(name: str) -> Path | None:
    folder = screenshots_dir()
    if folder is None:
        return None
    if not name.replace("-", "").isalnum():
        raise ValueError(f"a docs screenshot name is lowercase words and dashes: {name!r}")
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{name}.png"


def shrink_png(path: Path) -> None:
    """Rewrite the PNG with a 256-colour palette (flat UI colours survive it unchanged)."""
    from PIL import Image
    with Image.open(path) as image:
        palette = image.convert("RGB").quantize(colors=256, method=Image.Quantize.FASTOCTREE)
    palette.save(path, optimize=True)


def docs_shot(page: Any, name: str) -> None:
    """Save the docs screenshot `name` of a Playwright (sync API) page, when they are on."""
    target = _target(name)
    if target is None:
        return
    before = page.viewport_size
    page.set_viewport_size(VIEWPORT)
    try:
        from playwright.sync_api import TimeoutError as StillBusy
        try:
            page.wait_for_function(SETTLED_JS, arg=STABLE_POLLS, polling=POLL_MS,
                                   timeout=SETTLE_MS)
        except StillBusy:  # a page that never settles is shot as it is
            pass
        page.screenshot(path=str(target))
    finally:
        if before and before != VIEWPORT:
            page.set_viewport_size(before)
    shrink_png(target)


async def docs_shot_async(page: Any, name: str) -> None:
    """`docs_shot` for a page of Playwright's async API."""
    target = _target(name)
    if target is None:
        return
    before = page.viewport_size
    await page.set_viewport_size(VIEWPORT)
    try:
        from playwright.async_api import TimeoutError as StillBusy
        try:
            await page.wait_for_function(SETTLED_JS, arg=STABLE_POLLS, polling=POLL_MS,
                                   timeout=SETTLE_MS)
        except StillBusy:  # a page that never settles is shot as it is
            pass
        await page.screenshot(path=str(target))
    finally:
        if before and before != VIEWPORT:
            await page.set_viewport_size(before)
    shrink_png(target)
