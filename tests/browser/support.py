"""What every browser test shares: Debian's headless Chromium (started once per test session by the `browser`
fixture in tests/conftest.py), and `Page`, the browser bound to one test's live server, with the steps a person
takes in the admin (log in, open a page, wait for something to show) and screenshots.

Screenshots are test artefacts: `Page.save_screenshot(name)` writes `<name>.png` into the folder BROWSER_ARTIFACTS
names (a pytest temporary folder when it is unset). With UPDATE_README_SCREENSHOTS=1 the pictures the README shows
are written into docs/ as well (`Page.save_readme_screenshot`): at most README_WIDTH pixels wide, and a test fails
when one is over README_MAX_BYTES.
"""

import base64
import math
import os
import shutil
import struct
from pathlib import Path

from django.conf import settings
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.wait import WebDriverWait

from tests.factories import PASSWORD

# Debian's chromium and chromium-driver (`make browser`); the browser tests use these paths and nothing else.
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"

WAIT_SECONDS = 60  # a loaded 2-core CI machine; a page that works settles in about a second
WINDOW_WIDTH = 1280
README_WIDTH = 960
README_MAX_BYTES = 150_000
README_FOLDER = Path(settings.BASE_DIR) / "docs"


def browser_missing():
    """Why the browser tests cannot run here, or "" when they can."""
    paths = {"chromium": CHROMIUM, "chromedriver": CHROMEDRIVER}
    missing = [name for name, path in paths.items() if not shutil.which(path)]
    if missing:
        return f"needs Debian's {' and '.join(missing)}: run `make browser` (as root) to install them with apt"
    return ""


def updating_readme_screenshots():
    return os.environ.get("UPDATE_README_SCREENSHOTS") == "1"


def start_chromium():
    """Debian's Chromium, headless, through Debian's chromedriver (both from `make browser`): Selenium is given
    both paths, so its own browser downloader never runs. English (a test that wants Chinese sets the language
    cookie), a fixed window and no device scaling, so a screenshot is the same on every machine."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless=new",
        "--no-sandbox",  # CI runs as root, where Chromium's sandbox cannot start
        "--disable-dev-shm-usage",
        "--disable-gpu",
        f"--window-size={WINDOW_WIDTH},1800",
        "--force-device-scale-factor=1",
        "--hide-scrollbars",
        "--lang=en-US",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-extensions",
        "--disable-sync",
    ):
        options.add_argument(argument)
    options.add_experimental_option("prefs", {"intl.accept_languages": "en-US,en"})
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(WAIT_SECONDS)
    return driver


def png_size(png):
    """(width, height) from a PNG's header."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    return struct.unpack(">II", png[16:24])


class Page:
    """The session's browser, bound to this test's live server and artefact folder."""

    def __init__(self, driver, base_url, artifacts):
        self.driver = driver
        self.base_url = base_url
        self.artifacts = Path(artifacts)

    # Moving around ---------------------------------------------------------------------------------------------

    def open(self, path):
        self.driver.get(self.base_url + path)

    def path(self):
        """The path (and query) of the page the browser shows."""
        return self.driver.current_url.removeprefix(self.base_url)

    def set_language(self, language):
        """Django's language cookie (the admin's language switch sets it too): "en" or "zh-hans"."""
        if not self.driver.current_url.startswith(self.base_url):
            self.open("/admin/login/")  # a cookie is set for the page the browser is on
        self.driver.add_cookie({"name": settings.LANGUAGE_COOKIE_NAME, "value": language, "path": "/"})

    def log_in(self, username, password=PASSWORD, language=None):
        """Through the admin's login form, as a person does (with the language cookie first, when one is given)."""
        self.open("/admin/login/")
        if language:
            self.set_language(language)
            self.open("/admin/login/")
        self.fill({"username": username, "password": password})
        self.submit()
        self.wait_for(expected_conditions.presence_of_element_located((By.ID, "user-tools")))

    def log_out(self):
        """The admin's log-out button (a POST form since Django 5)."""
        self.driver.find_element(By.CSS_SELECTOR, "#logout-form button").click()
        self.wait_for(lambda driver: not driver.find_elements(By.ID, "user-tools"))

    # Forms -----------------------------------------------------------------------------------------------------

    def field(self, name):
        return self.driver.find_element(By.NAME, name)

    def fill(self, values):
        """Types each value into the field of that name, replacing what it held."""
        for name, value in values.items():
            element = self.field(name)
            element.clear()
            element.send_keys(str(value))

    def choose(self, name, visible_text):
        from selenium.webdriver.support.select import Select

        Select(self.field(name)).select_by_visible_text(visible_text)

    def submit(self, name=None):
        """Presses the form's submit button (the one named `name`, else the first in the content) and waits for the
        next page to replace this one."""
        selector = f'input[type=submit][name="{name}"]' if name else "#content input[type=submit], input[type=submit]"
        button = self.driver.find_element(By.CSS_SELECTOR, selector)
        self.mark_page()
        button.click()
        self.wait_for_next_page()

    def click_link(self, text):
        """Follows the link with exactly this text (as shown: CSS may capitalise it) and waits for the next page."""
        self.follow(self.driver.find_element(By.LINK_TEXT, text))

    def follow(self, link):
        """Follows a link (an element, or a CSS selector of one) and waits for the next page."""
        if isinstance(link, str):
            link = self.driver.find_element(By.CSS_SELECTOR, link)
        self.mark_page()
        link.click()
        self.wait_for_next_page()

    def mark_page(self):
        """Marks the document shown now, so that wait_for_next_page can tell it from the next one."""
        self.driver.execute_script("window.__left_behind = true;")

    def wait_for_next_page(self):
        """Until the marked page is gone and the next one has loaded.

        Asking the old page's element whether it went stale (expected_conditions.staleness_of) races the navigation:
        Chromium sometimes answers "Node with given id does not belong to the document" instead of "stale", which
        failed a CI run. A mark on the old window object asks the question of whichever document is current."""

        def next_page_loaded(driver):
            try:
                return driver.execute_script("return !window.__left_behind && document.readyState === 'complete';")
            except WebDriverException:  # the navigation replaced the document while the script was being sent
                return False

        self.wait_for(next_page_loaded)

    # Reading ---------------------------------------------------------------------------------------------------

    def wait_for(self, condition, seconds=WAIT_SECONDS):
        return WebDriverWait(self.driver, seconds).until(condition)

    def text(self, selector):
        return self.driver.find_element(By.CSS_SELECTOR, selector).text

    def texts(self, selector):
        return [element.text for element in self.driver.find_elements(By.CSS_SELECTOR, selector)]

    def messages(self):
        """The admin's messages after the last action: [(level, text)]."""
        return [
            (element.get_attribute("class"), element.text)
            for element in self.driver.find_elements(By.CSS_SELECTOR, "ul.messagelist li")
        ]

    def console_errors(self):
        """Errors the page logged (the browser's request for /favicon.ico, which the admin does not serve, aside)."""
        return [
            entry
            for entry in self.driver.get_log("browser")
            if entry["level"] == "SEVERE" and "/favicon.ico" not in entry["message"]
        ]

    # Screenshots -----------------------------------------------------------------------------------------------

    def screenshot(self, width=WINDOW_WIDTH, selector=None, until=None):
        """A PNG of the whole page `width` CSS pixels wide (the viewport is made as tall as the page through
        Chromium's DevTools protocol, so nothing below the fold is cut); of the element `selector` names only; or
        from the top of the page down to the bottom of the element `until` names."""
        self.driver.execute_cdp_cmd(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": 800, "deviceScaleFactor": 1, "mobile": False},
        )
        try:
            height = self.driver.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]["height"]
            metrics = {"width": width, "height": math.ceil(height), "deviceScaleFactor": 1, "mobile": False}
            self.driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)
            self.settle()
            parameters = {"format": "png", "captureBeyondViewport": True}
            if selector or until:
                x, y, w, h = self.driver.execute_script(
                    "const r = document.querySelector(arguments[0]).getBoundingClientRect();"
                    "return [r.left + window.scrollX, r.top + window.scrollY, r.width, r.height];",
                    selector or until,
                )
                if until:
                    x, y, w, h = 0, 0, width, y + h + 16  # a margin under it
                parameters["clip"] = {"x": x, "y": y, "width": w, "height": h, "scale": 1}
            shot = self.driver.execute_cdp_cmd("Page.captureScreenshot", parameters)
            return base64.b64decode(shot["data"])
        finally:
            self.driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})

    def settle(self):
        """Waits, before a screenshot, until the page (resized for it) has finished drawing: nothing to wait for on
        a page without scripts that draw."""

    def save_screenshot(self, name, **options):
        """The page as a test artefact, <artifacts>/<name>.png; returns its path."""
        self.artifacts.mkdir(parents=True, exist_ok=True)
        path = self.artifacts / f"{name}.png"
        path.write_bytes(self.screenshot(**options))
        return path

    def save_readme_screenshot(self, name, until=None):
        """A small picture for the README, README_WIDTH pixels wide, of the whole page or of its top down to the
        element `until` names: written as an artefact (readme/<name>.png) and, with UPDATE_README_SCREENSHOTS=1,
        as docs/<name>.png. Its size is checked either way, so a page that grew past the README's limit fails."""
        png = self.screenshot(width=README_WIDTH, until=until)
        width, _ = png_size(png)
        assert width <= README_WIDTH, (name, width)
        assert len(png) < README_MAX_BYTES, f"{name}.png is {len(png)} bytes, over {README_MAX_BYTES}"
        (self.artifacts / "readme").mkdir(parents=True, exist_ok=True)
        (self.artifacts / "readme" / f"{name}.png").write_bytes(png)
        if updating_readme_screenshots():
            README_FOLDER.mkdir(exist_ok=True)
            (README_FOLDER / f"{name}.png").write_bytes(png)
        return png
