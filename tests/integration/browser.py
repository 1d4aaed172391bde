"""Debian's headless Chromium driven by chromium-driver (selenium), for the snippet's tests.

Never skipped: a missing `chromium` or `chromedriver` is an error naming the install
(`make install` runs scripts/install-system-deps.sh, which installs both)."""

from __future__ import annotations

import shutil
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service


def _binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise RuntimeError(
            f"{name} is not installed: run `make install` (Debian packages chromium, "
            "chromium-driver)"
        )
    return path


def headless_chromium(profile: Path) -> webdriver.Chrome:
    options = Options()
    options.binary_location = _binary("chromium")
    for arg in (
        "--headless=new",
        "--no-sandbox",  # root in CI containers
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--no-first-run",
        f"--user-data-dir={profile}",
        "--window-size=1280,900",
    ):
        options.add_argument(arg)
    return webdriver.Chrome(
        options=options, service=Service(executable_path=_binary("chromedriver"))
    )
