"""A marketer changes how purchases earn, in Debian's headless Chromium against the live server: she logs in, raises
the purchase rule's rate by saving a new version of it (a version keeps its terms), and checks with the purchase
preview what a purchase earns now. The browser speaks English; the counter fixture's rule is 2 points per 1 CNY."""

from datetime import timedelta

import pytest
from django.utils import timezone
from selenium.webdriver.common.by import By

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def preview_shown(page):
    """The preview's answer, as shown: (its line, [(source, points)] of how the points are made up), or None."""
    if not page.driver.find_elements(By.ID, "preview-result"):
        return None
    rows = page.driver.find_elements(By.CSS_SELECTOR, "#preview-result tbody > tr")
    breakdown = [tuple(cell.text for cell in row.find_elements(By.TAG_NAME, "td")) for row in rows]
    return page.text("#preview-result strong"), breakdown


def open_rule(page, name):
    """Follows the link of the rule named `name` in the rules' list (the link is its channel, the first column)."""
    link = page.driver.find_element(
        By.XPATH, f"//table[@id='result_list']//tr[td[contains(@class, 'field-name')] = '{name}']/th/a"
    )
    page.follow(link)


def preview(page, member, amount):
    page.fill({"member": member, "amount": amount})
    page.submit()
    return preview_shown(page)


def test_a_marketer_raises_the_purchase_rate_and_previews_what_a_purchase_earns(page, counter):
    member = counter.member
    page.log_in("marketer")
    page.click_link("Earning rules")
    open_rule(page, "Purchase: 2 points per 1 CNY")
    assert page.field("points_per_unit").get_attribute("value") == "2.00"

    # Before: the preview, from the rule's page, says what the rule in force gives.
    page.follow("#preview-purchase-link")
    # growth value: the default growth policy's 1 per CNY + 10 per order
    assert preview(page, "138 0013 8000", "120.00") == (
        "240 points available; growth value 130.",
        [("base", "240")],
    )
    page.follow(".breadcrumbs a:nth-of-type(3)")  # Home › Points › Earning rules
    open_rule(page, "Purchase: 2 points per 1 CNY")

    # A new version at 3 points per 1 CNY, in force from a minute ago (her business time zone's clock).
    starts = timezone.localtime() - timedelta(minutes=1)
    page.fill(
        {
            "name": "Purchase: 3 points per 1 CNY",
            "points_per_unit": "3",
            "valid_from_0": starts.strftime("%Y-%m-%d"),
            "valid_from_1": starts.strftime("%H:%M:%S"),
        }
    )
    page.submit("_saveasnew")
    version = f"Purchase: 3 points per 1 CNY (purchase, from {starts:%Y-%m-%d})"  # str(rule): the business date
    assert page.messages() == [
        ("success", f"The earning rule “{version}” was added successfully. You may edit it again below.")
    ]
    assert page.field("points_per_unit").get_attribute("value") == "3.00"
    page.save_screenshot("earning-rule-new-version")

    page.follow("#preview-purchase-link")
    assert preview(page, member.member_no, "120.00") == (
        "360 points available; growth value 130.",  # 120.00 × 3
        [("base", "360")],
    )
    assert page.text("#preview-result .help") == "Nothing was recorded."
    assert preview(page, "138 0013 8000", "99.99") == (
        "299 points available; growth value 109.",  # 299.97 points, rounded down
        [("base", "299")],
    )
    page.save_screenshot("earning-rule-preview")

    # The old version is still listed: the points earned under it were earned at 2 per 1 CNY.
    page.click_link("Earning rules")
    names = page.texts("#result_list tbody td.field-name")
    assert {"Purchase: 2 points per 1 CNY", "Purchase: 3 points per 1 CNY"} <= set(names)
    assert page.console_errors() == []


def test_the_purchase_preview_says_which_member_it_cannot_find(page, counter):
    page.log_in("marketer")
    page.open("/admin/points/earningrule/preview/")

    shown = preview(page, "13900000000", "50.00")

    assert shown is None
    assert page.text(".errornote") == "Please correct the errors below."
    assert page.text(".field-member .errorlist") == "No member has exactly this card number or phone."
