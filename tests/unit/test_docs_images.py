"""The screenshots in docs/images/ and the docs that show them agree: every image link in
docs/*.md points at an existing file, every file in docs/images/ is linked from some doc,
and each image is small enough to keep the repository light. The images are made by
scripts/screenshots.sh (tests/browser/docs_shots.py)."""

from __future__ import annotations

import re
from pathlib import Path

DOCS = Path(__file__).resolve().parents[2] / "docs"
IMAGES = DOCS / "images"
IMAGE_LINK = re.compile(r"!\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
MAX_BYTES = 300_000


def image_links() -> dict[str, list[str]]:
    """Each image link target (relative to docs/) -> the docs that use it."""
    found: dict[str, list[str]] = {}
    for doc in sorted(DOCS.glob("*.md")):
        for target in IMAGE_LINK.findall(doc.read_text(encoding="utf-8")):
            found.setdefault(target, []).append(doc.name)
    return found


def test_every_image_link_has_its_file() -> None:
    missing = {t: where for t, where in image_links().items()
               if t.startswith(("http://", "https://")) or not (DOCS / t).is_file()}
    assert not missing, f"image links without a file under docs/ (or remote): {missing}"


def test_every_image_is_linked() -> None:
    linked = {(DOCS / t).resolve() for t in image_links()}
    unlinked = sorted(p.name for p in IMAGES.glob("*") if p.resolve() not in linked)
    assert not unlinked, f"images in docs/images/ no doc links: {unlinked}"


def test_images_are_small_pngs() -> None:
    images = sorted(IMAGES.glob("*"))
    assert images, "docs/images/ has no screenshots (run scripts/screenshots.sh)"
    for image in images:
        assert image.suffix == ".png", image.name
        assert image.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", f"{image.name} is not a PNG"
        assert image.stat().st_size <= MAX_BYTES, f"{image.name}: {image.stat().st_size} B"
