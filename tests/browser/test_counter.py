"""A clerk's day at the counter, in Debian's headless Chromium against the live server: she logs in through the
admin's form, finds a member by phone in the members' search box, and from the member page records a purchase,
redeems a reward and refunds part of the order, reading each result and the new balance on the page. And what she
reads when the service refuses (a reward she cannot afford).

The browser speaks English (the texts asserted here are English; the screenshots for the README, in Chinese, are
test_readme_screenshots.py's). Each figure follows from the counter fixture's rule: 2 points per 1 CNY paid,
available at once."""

import uuid

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

from points import services
from tests.factories import PASSWORD

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def member_path(member):
    return f"/admin/members/member/{member.pk}/change/"


def glance(page):
    """The member page's summary, as shown: {row label: value}."""
    rows = page.driver.find_elements(By.CSS_SELECTOR, "#member-glance > table > tbody > tr")
    return {
        row.find_element(By.CSS_SELECTOR, ":scope > th").text: row.find_element(By.CSS_SELECTOR, ":scope > td").text
        for row in rows
    }


def balance(page):
    """Available and pending points, as the member page's summary shows them."""
    shown = glance(page)
    return int(shown["Available points"]), int(shown["Pending points"])


def row_cells(page, table, row=0):
    """The cells' texts of a row of a table's body (the newest first, in the member page's tables)."""
    rows = page.driver.find_elements(By.CSS_SELECTOR, f"{table} tbody tr")
    return [cell.text for cell in rows[row].find_elements(By.TAG_NAME, "td")]


def give_points(member, points):
    services.adjust_points(
        actor="staff:setup",
        role="admin",
        scope="browser-test",
        key=str(uuid.uuid4()),
        fingerprint=str(uuid.uuid4()),
        member_id=member.pk,
        points=points,
        reason="opening balance",
    )


def test_a_clerk_finds_a_member_by_phone_records_a_purchase_redeems_a_reward_and_refunds_part(page, counter):
    member = counter.member
    page.open("/admin/login/")
    page.save_screenshot("login")
    page.fill({"username": "clerk", "password": PASSWORD})
    page.submit()
    welcome = page.driver.find_element(By.CSS_SELECTOR, "#user-tools strong")
    assert welcome.get_attribute("textContent") == "clerk"  # shown in capitals (CSS)

    # The counter's search: her phone as she says it, with spaces and without +86, opens her page.
    page.click_link("Members")
    search = page.field("q")
    search.send_keys("138 0013 8000", Keys.ENTER)
    page.wait_for(lambda driver: driver.current_url.endswith(member_path(member)))
    assert page.text("#member-glance h2") == "At a glance"
    assert balance(page) == (0, 0)
    assert glance(page)["Last purchases"] == "No purchases yet."
    page.save_screenshot("member-before")

    page.click_link("Record a purchase")
    assert page.text(".points-balance") == "Available: 0 points; pending: 0."
    page.fill({"order_no": "SH01-0001", "amount": "188.00"})
    page.submit()  # her store is the clerk's only one, already chosen

    assert page.path() == member_path(member)
    assert page.messages() == [("success", "Purchase SH01-0001: 376 points available (base 376).")]
    assert balance(page) == (376, 0)  # 188.00 × 2
    assert row_cells(page, "table.member-purchases")[1:] == [
        "SH01-0001",
        "Jing'an",
        "188.00",
        "",
        "376",
    ]
    page.save_screenshot("purchase-result")

    page.click_link("Redeem a reward")
    assert page.text(".points-balance") == "Available: 376 points; pending: 0."
    page.choose("reward", "Tea mug — 150 points, 5 in stock")
    page.submit()

    assert page.messages() == [("success", "Redeemed 1 × Tea mug for 150 points; balance 226.")]
    assert balance(page) == (376 - 150, 0)
    assert row_cells(page, "table.points-redemptions")[1:5] == ["Tea mug", "1", "150", "completed"]
    page.save_screenshot("redemption-result")

    # She brings back part of the order: 50.00 of 188.00 refunded takes back 376 × 50 / 188 = 100 points.
    page.click_link("Refund an order")
    assert row_cells(page, "#refundable-purchases")[1:7] == [
        "SH01-0001",
        "Jing'an (SH01)",
        "188.00",
        "0.00",
        "188.00",
        "376",
    ]
    page.follow("#refundable-purchases tbody tr a.button")
    refund_no = page.field("refund_no").get_attribute("value")
    assert refund_no.startswith("R-")  # made by the form: posting it twice refunds once
    page.fill({"amount": "50.00"})
    page.submit()

    assert page.messages() == [
        (
            "success",
            f"Refund {refund_no} of order SH01-0001: 50.00 refunded; 100 points reversed, 0 points used as cash "
            "returned; balance 126.",
        )
    ]
    assert balance(page) == (226 - 100, 0)
    assert row_cells(page, "table.member-purchases")[1:] == ["SH01-0001", "Jing'an", "188.00", "50.00", "376"]
    page.save_screenshot("refund-result")
    assert page.console_errors() == []


def test_a_clerk_is_told_how_many_points_a_member_has_when_a_reward_costs_more(page, counter):
    member = counter.member
    give_points(member, 40)
    page.log_in("clerk")
    page.open(member_path(member))
    assert balance(page) == (40, 0)

    page.click_link("Redeem a reward")
    assert page.text("#form-notice") == (
        "She cannot afford any reward: 40 points available, and the cheapest reward (Tea mug) costs 150."
    )
    page.choose("reward", "Tea mug — 150 points, 5 in stock")
    page.submit()

    assert page.text(".errornote") == "Please correct the error below."
    assert page.text(".errorlist.nonfield") == (
        "insufficient_points: Not enough available points. (available: 40, required: 150)"
    )
    assert page.text(".points-balance") == "Available: 40 points; pending: 0."
    page.save_screenshot("insufficient-points")
    page.click_link("Back to the member")
    assert balance(page) == (40, 0)
    assert page.texts("table.points-redemptions tbody tr") == []
