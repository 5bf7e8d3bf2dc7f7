"""The dashboard's browser tests: the shared browser and page (tests/conftest.py, tests/browser/support.py), with
the dashboard's own readings of the page."""

import pytest
from selenium.webdriver.common.by import By

from tests.browser.support import Page
from tests.factories import StaffUserFactory


@pytest.fixture
def page(page):
    """The shared page, as a DashboardPage."""
    return DashboardPage(page.driver, page.base_url, page.artifacts)


@pytest.fixture
def marketer(transactional_db):
    return StaffUserFactory(username="marketing", role="marketer")


class DashboardPage(Page):
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

    def settle(self):
        """A screenshot waits until every chart has drawn at the screenshot's size."""
        self.wait_until_settled()
