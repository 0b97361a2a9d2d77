"""What several end-to-end suites share: a headless Chromium, driven by Playwright."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from helpers import cannot_run_here

CHROMIUM = Path("/usr/bin/chromium")


@contextmanager
def chromium() -> Iterator[Any]:
    """Debian's Chromium (Playwright cannot download its own browsers here). Playwright's
    sync API runs an event loop in this thread while it is open: async tests cannot run
    beside it."""
    if not CHROMIUM.exists():
        cannot_run_here("no Chromium at /usr/bin/chromium (make deps installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One browser for a module of sync tests."""
    with chromium() as launched:
        yield launched


@pytest.fixture
def own_browser() -> Iterator[Any]:
    """A browser for one test, in a module that also has async tests."""
    with chromium() as launched:
        yield launched
