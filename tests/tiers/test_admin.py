"""The tier admin in Chinese (issue 15): a tier change's stored reason code (upgrade, downgrade ...) is shown by its
label in the list, its filter and its page; the codes themselves stay as stored."""

from datetime import date

import pytest

from tiers.models import Tier, TierChange

pytestmark = pytest.mark.django_db

CHANGES = "/admin/tiers/tierchange/"


def test_a_tier_changes_reason_reads_in_chinese(admin_client, member_a):
    entry, next_tier = Tier.objects.order_by("rank")[:2]
    change = TierChange.objects.create(
        member=member_a,
        from_tier=entry,
        to_tier=next_tier,
        reason="upgrade",
        growth_value=200,
        business_date=date(2026, 5, 17),
    )

    listing = admin_client.get(CHANGES, HTTP_ACCEPT_LANGUAGE="zh-hans").content.decode()
    filtered = admin_client.get(CHANGES, {"reason": "downgrade"}, HTTP_ACCEPT_LANGUAGE="zh-hans")
    page = admin_client.get(f"{CHANGES}{change.pk}/change/", HTTP_ACCEPT_LANGUAGE="zh-hans").content.decode()

    assert '<td class="field-shown_reason">升级</td>' in listing
    assert ['<a href="?reason=upgrade">升级</a>' in listing, '<a href="?reason=downgrade">降级</a>' in listing] == [
        True,
        True,
    ]
    assert ">upgrade<" not in listing
    assert list(filtered.context["cl"].result_list) == []
    assert '<div class="readonly">升级</div>' in page
    assert TierChange.objects.get().reason == "upgrade"
