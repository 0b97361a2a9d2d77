"""What several end-to-end suites share: a headless Chromium, driven by Playwright."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import cannot_run_here

CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture(scope="module")
def browser():  # type: ignore[no-untyped-def]
    """Debian's Chromium (Playwright cannot download its own browsers here)."""
    if not CHROMIUM.exists():
        cannot_run_here("no Chromium at /usr/bin/chromium (make deps installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        yield launched
        launched.close()
