import base64
import math

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.wait import WebDriverWait

from tests.conftest import CHROMEDRIVER, CHROMIUM, PASSWORD
from tests.factories import StaffUserFactory

WAIT_SECONDS = 60  # a loaded 2-core CI machine; a page that works settles in about a second


@pytest.fixture(scope="session")
def browser(live_server):
    """Debian's Chromium, headless, through Debian's chromedriver (both from `make browser`): Selenium is given
    both paths, so its own browser downloader never runs. English, a fixed window and no device scaling, so the
    screenshot is the same on every machine. It quits before the live server stops (it depends on it), so no
    connection of it is left for the server's threads to close after the test database is gone."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless=new",
        "--no-sandbox",  # CI runs as root, where Chromium's sandbox cannot start
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1280,1800",
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
    yield driver
    driver.quit()


@pytest.fixture
def page(browser, live_server):
    """The browser with no cookies and no console entries left from another test, and helpers bound to this test's
    live server."""
    browser.execute_cdp_cmd("Network.clearBrowserCookies", {})  # every site's, not only the open page's
    # The browser is the session's: its console log still holds what an earlier test's page logged (e.g. the 404
    # a stubbed report answered on purpose). Reading the log empties it, so each test sees only its own entries.
    browser.get_log("browser")
    yield Page(browser, live_server.url)
    # Leave the page before the live server's database goes: no request of this test may still be in flight.
    browser.get("about:blank")


@pytest.fixture
def marketer(transactional_db):
    return StaffUserFactory(username="marketing", role="marketer")


class Page:
    def __init__(self, driver, base_url):
        self.driver = driver
        self.base_url = base_url

    def open(self, path):
        self.driver.get(self.base_url + path)

    def log_in(self, username, password=PASSWORD, language=None):
        """Through the admin's login form, as a person does (with the language cookie first, when one is given)."""
        self.open("/admin/login/")
        if language:
            self.driver.add_cookie({"name": "django_language", "value": language, "path": "/"})
            self.open("/admin/login/")
        self.driver.find_element(By.NAME, "username").send_keys(username)
        self.driver.find_element(By.NAME, "password").send_keys(password)
        self.driver.find_element(By.CSS_SELECTOR, "input[type=submit]").click()
        self.wait_for(expected_conditions.presence_of_element_located((By.ID, "user-tools")))

    def wait_for(self, condition, seconds=WAIT_SECONDS):
        return WebDriverWait(self.driver, seconds).until(condition)

    def wait_until_settled(self):
        """Until the dashboard's script has drawn every part (or failed to)."""
        self.wait_for(lambda driver: driver.find_element(By.ID, "content-main").get_attribute("data-state") == "ready")

    def charts(self):
        """{chart name: (state, rendered)} of every chart container."""
        return {
            element.get_attribute("data-chart"): (
                element.get_attribute("data-state"),
                element.get_attribute("data-rendered"),
            )
            for element in self.driver.find_elements(By.CSS_SELECTOR, "[data-chart]")
        }

    def kpis(self):
        """{KPI name: (value, change)} as the page shows them."""
        return {
            card.get_attribute("data-kpi"): (
                card.find_element(By.CLASS_NAME, "kpi-value").text,
                card.find_element(By.CLASS_NAME, "kpi-change").text,
            )
            for card in self.driver.find_elements(By.CSS_SELECTOR, "[data-kpi]")
        }

    def text(self, selector):
        return self.driver.find_element(By.CSS_SELECTOR, selector).text

    def console_errors(self):
        """Errors the page logged (the browser's request for /favicon.ico, which the admin does not serve, aside)."""
        return [
            entry
            for entry in self.driver.get_log("browser")
            if entry["level"] == "SEVERE" and "/favicon.ico" not in entry["message"]
        ]

    def screenshot(self):
        """A PNG of the whole page at 1280 CSS pixels wide: the viewport is made as tall as the page (Chromium's
        DevTools protocol), so nothing below the fold is cut."""
        height = self.driver.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]["height"]
        metrics = {"width": 1280, "height": math.ceil(height), "deviceScaleFactor": 1, "mobile": False}
        self.driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)
        try:
            self.wait_until_settled()
            shot = self.driver.execute_cdp_cmd(
                "Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True}
            )
            return base64.b64decode(shot["data"])
        finally:
            self.driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
