"""axe-core (from tests/interop's npm install) run in a Playwright page: the page's
accessibility violations, and an assertion that none is serious or critical."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from playwright.sync_api import Page

from _support.services import unavailable

AXE = Path(__file__).resolve().parents[1] / "interop" / "node_modules" / "axe-core" / "axe.min.js"
BLOCKING = ("serious", "critical")


def violations(page: Page) -> list[dict[str, Any]]:
    """axe-core's violations on the page as it is now (WCAG 2.x A and AA rules)."""
    if not AXE.is_file():
        unavailable("axe-core is not installed: run `npm ci --prefix tests/interop`")
    # Injected through the DevTools protocol, not a <script> tag: the pages' CSP allows
    # no script but their own, and the check must not loosen it.
    page.evaluate(AXE.read_text(encoding="utf-8") + "\n;void 0")
    result: dict[str, Any] = page.evaluate(
        "async () => await axe.run(document, {runOnly: {type: 'tag', values: "
        "['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa']}, resultTypes: ['violations']})"
    )
    found: list[dict[str, Any]] = result["violations"]
    return found


def assert_accessible(page: Page) -> None:
    """No serious or critical axe-core violation on the page."""
    bad = [v for v in violations(page) if v.get("impact") in BLOCKING]
    assert not bad, [(v["id"], v["impact"], [n["target"] for n in v["nodes"]][:3]) for v in bad]
