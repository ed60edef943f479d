"""Each page a browser test shows: checked with axe-core, and with AUTHGATE_SCREENSHOTS=1
saved under docs/screenshots/ at desktop and phone width."""

from __future__ import annotations

import os
from pathlib import Path

from playwright.sync_api import Page

from _support.axe import assert_accessible

SHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"


def shot(page: Page, name: str) -> None:
    """Check the page with axe-core (no serious or critical violation); save it as
    docs/screenshots/NAME.png when AUTHGATE_SCREENSHOTS is set."""
    assert_accessible(page)
    if os.environ.get("AUTHGATE_SCREENSHOTS"):
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 360, "height": 740}


def shots(page: Page, name: str) -> None:
    """``shot`` at desktop width, then at phone width (360 px: nothing wider than the
    screen), then back."""
    shot(page, name)
    page.set_viewport_size(PHONE)
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"], name
    shot(page, name + "-phone")
    page.set_viewport_size(DESKTOP)


__all__ = ["DESKTOP", "PHONE", "SHOTS", "shot", "shots"]
