"""Headless Debian Chromium for the web pages' tests, and a loop thread for the servers.

Selenium drives ``/usr/bin/chromium`` through Debian's ``/usr/bin/chromedriver``
(packages ``chromium`` and ``chromium-driver``, installed by ``make test``): no browser
or driver is downloaded. Selenium's calls block, so the servers under test run on an
event loop in a thread of their own (:class:`LoopThread`) and the tests are plain
functions. Screenshots go to ``test-artifacts/screenshots/`` (git-ignored).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import shutil
import threading
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from selenium import webdriver
from selenium.common.exceptions import (
    NoSuchElementException,
    StaleElementReferenceException,
    WebDriverException,
)
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement

T = TypeVar("T")
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1280,1100")
ARTIFACTS = Path(__file__).resolve().parents[3] / "test-artifacts" / "screenshots"


def start_chromium(user_data_dir: Path, downloads: Path | None = None, *,
                   extra: tuple[str, ...] = ()) -> webdriver.Chrome:
    """A fresh headless Chromium (its own profile directory); fails if it is missing."""
    for binary, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not Path(binary).exists() and shutil.which(Path(binary).name) is None:
            pytest.fail(f"{binary} is missing: apt-get install {package} (make test does)")
    options = Options()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={user_data_dir}")
    for flag in extra:
        options.add_argument(flag)
    if downloads is not None:
        options.add_experimental_option("prefs", {
            "download.default_directory": str(downloads),
            "download.prompt_for_download": False})
    try:
        return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    except Exception as exc:  # selenium's own tree; one message naming the browser
        pytest.fail(f"headless Chromium did not start: {type(exc).__name__}: {exc}")


def spki_pin(cert_pem: bytes) -> str:
    """The value of Chromium's ``--ignore-certificate-errors-spki-list`` for a server
    certificate: the browser trusts that key only, nothing wider."""
    cert = x509.load_pem_x509_certificate(cert_pem)
    spki = cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(spki).digest()).decode()


def screenshot(driver: webdriver.Chrome, name: str) -> Path:
    """Save a PNG of the page a person can open (test-artifacts/screenshots/NAME.png)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    driver.save_screenshot(str(path))
    return path


def wait_for(predicate: Callable[[], T], what: str, timeout: float = 30.0) -> T:
    """Poll ``predicate`` until it is truthy (real time); AssertionError naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.1)


# What Chromium answers, instead of a stale-element error, when the page is replaced
# between finding an element and reading it (a form's answer arriving): not yet, not
# a failure.
_REPLACED_PAGE = ("does not belong to the document", "Cannot find context with specified id")


def page_replaced(exc: WebDriverException) -> bool:
    """Whether ``exc`` says the page went away under the command (a navigation)."""
    return any(words in str(exc.msg) for words in _REPLACED_PAGE)


def element_text(driver: webdriver.Chrome, css: str, timeout: float = 10.0) -> str:
    """The text of the first element matching ``css``, waiting for it to be there.

    An element missing, gone stale or on a page being replaced is "not yet": the page
    a form answered with may still be on its way."""
    def find() -> str | None:
        try:
            return str(driver.find_element(By.CSS_SELECTOR, css).text) or " "
        except (NoSuchElementException, StaleElementReferenceException):
            return None
        except WebDriverException as exc:
            if page_replaced(exc):
                return None
            raise

    return wait_for(find, f"{css} on {driver.current_url}", timeout).strip()


def _gone(element: WebElement) -> bool:
    try:
        element.is_enabled()  # any command on an element of a replaced page fails
    except StaleElementReferenceException:
        return True
    except WebDriverException as exc:
        if page_replaced(exc):
            return True
        raise
    return False


def submit(driver: webdriver.Chrome, button_id: str, timeout: float = 30.0) -> None:
    """Click the submit button ``button_id`` and wait for the page the server answers."""
    click_through(driver, driver.find_element(By.ID, button_id), timeout)


def click_through(driver: webdriver.Chrome, element: WebElement, timeout: float = 30.0) -> None:
    """Click ``element`` (a form's button, a link) and wait for the next page.

    A click may return before the browser has replaced the page, so anything read right
    after it may come from the page it was on: a "Settings saved" left by the save
    before, or an element replaced while it is read (the CI failure of 80be9ec). The
    page's root element is remembered; the wait ends once it has gone stale and the
    next page has loaded."""
    old = driver.find_element(By.TAG_NAME, "html")
    was = driver.current_url
    element.click()
    wait_for(lambda: _gone(old), f"the page after a click on {was}", timeout)

    def loaded() -> bool:
        try:
            return bool(driver.execute_script("return document.readyState") == "complete")
        except WebDriverException as exc:
            if page_replaced(exc):
                return False
            raise

    wait_for(loaded, f"the page after a click on {was} to load", timeout)


class LoopThread:
    """An asyncio loop in a daemon thread: ``run(coro)`` runs a coroutine there."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 60.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def call(self, fn: Callable[[], T]) -> T:
        """Run a plain function on the loop's thread (for objects that belong to it)."""
        async def wrapper() -> T:
            return fn()
        return self.run(wrapper())

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()
