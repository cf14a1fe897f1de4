"""Helpers of the console's browser tests: where Chromium is, screenshots, image checks."""

from __future__ import annotations

import os
from pathlib import Path

LINE = "line-c"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOTS = os.environ.get("ECHO_IAD_SCREENSHOTS", "")  # a folder: every page is also saved there as PNG


def screenshot(page, name: str) -> None:  # type: ignore[no-untyped-def]
    if SCREENSHOTS:
        Path(SCREENSHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(SCREENSHOTS) / f"{name}.png"), full_page=True)


def images_loaded(page, selector: str) -> list[int]:  # type: ignore[no-untyped-def]
    """naturalWidth of every image matching selector, once each has finished loading (0: broken)."""
    page.wait_for_function(
        "sel => [...document.querySelectorAll(sel)].every(i => i.complete)", arg=selector, timeout=20_000
    )
    return page.eval_on_selector_all(selector, "els => els.map(i => i.naturalWidth)")
