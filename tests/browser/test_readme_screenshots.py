"""The README's pictures of the admin, taken in Chinese (the admin's default language) on the counter fixture's data:
the login page, the member page at a glance after a purchase (with the purchase's result), and the marketer's
purchase preview. Every run checks them (the figures on the page, and each picture's width and bytes: README_WIDTH,
README_MAX_BYTES) and keeps them as artefacts; with UPDATE_README_SCREENSHOTS=1 they are written into docs/ too:

    UPDATE_README_SCREENSHOTS=1 .venv/bin/python -m pytest tests/browser/test_readme_screenshots.py

The texts are not asserted here (they are the translators'); tests/browser/test_counter.py and test_marketer.py
assert them in English."""

import pytest
from selenium.webdriver.common.by import By

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_the_readme_shows_the_counter_and_the_purchase_preview_in_chinese(page, counter):
    member = counter.member
    page.open("/admin/login/")
    page.set_language("zh-hans")
    # The pictures leave out the admin's navigation sidebar (closed, as its « button leaves it): the page is the point.
    page.driver.execute_script("localStorage.setItem('django.admin.navSidebarIsOpen', 'false')")
    page.open("/admin/login/")
    assert page.driver.find_element(By.TAG_NAME, "html").get_attribute("lang") == "zh-hans"
    page.save_readme_screenshot("admin-login", until="#container")

    page.log_in("clerk")
    page.open(f"/admin/members/member/{member.pk}/change/")
    page.follow('.counter-actions a[href$="/record-purchase/"]')
    page.fill({"order_no": "SH01-0001", "amount": "188.00"})
    page.submit()
    ((level, text),) = page.messages()
    assert level == "success" and "SH01-0001" in text and "376" in text
    glance = page.text("#member-glance")
    assert "376" in glance and "188.00" in glance
    page.save_readme_screenshot("admin-member", until="#member-glance")

    page.log_out()
    page.log_in("marketer")
    page.open("/admin/points/earningrule/preview/")
    page.fill({"member": member.member_no, "amount": "120.00"})
    page.submit()
    assert "240" in page.text("#preview-result strong")  # 120.00 × 2
    page.save_readme_screenshot("admin-purchase-preview", until="#content-main")
