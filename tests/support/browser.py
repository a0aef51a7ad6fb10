"""Debian's Chromium, headless, driven by Playwright with its path given (no browser is
downloaded): the ``browser`` fixture, one per module. A pytest plugin (tests/conftest.py
registers it); tests that use ``browser`` are the ``browser`` tier."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, sync_playwright

from tests.support.ci import IN_CI

CHROMIUM = os.environ.get("GPUINV_CHROMIUM", "/usr/bin/chromium")


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not shutil.which(CHROMIUM) and not Path(CHROMIUM).exists():
        message = f"Chromium is required for the dashboard tests and not found at {CHROMIUM}"
        if IN_CI:
            pytest.fail(message + " (.ci/run installs Debian's chromium)", pytrace=False)
        pytest.skip(message + ": apt-get install chromium")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield browser
        browser.close()
