"""Issuing to a tag's or a segment's members as a job (a coupon batch), chunk by chunk."""

import pytest
from django.db import transaction

from campaigns.jobs import issue_batch_chunk, run_coupon_batch
from campaigns.models_coupons import Coupon, CouponBatch
from members.models import MemberTag
from tests.coupons.helpers import issue, template
from tests.factories import MemberFactory, TagFactory

pytestmark = pytest.mark.django_db


def tagged(tag, count, store, **kwargs):
    members = [MemberFactory(home_store=store, **kwargs) for _ in range(count)]
    MemberTag.objects.bulk_create([MemberTag(member=member, tag=tag) for member in members])
    return members


def start(client, offer, body, key="b1"):
    return client.post(f"/api/v1/coupon-templates/{offer.pk}/issue/", body, format="json", HTTP_IDEMPOTENCY_KEY=key)


def test_a_tag_issue_answers_202_and_the_job_gives_each_tagged_member_one_coupon(
    marketer_api, store_a, django_capture_on_commit_callbacks
):
    vip = TagFactory(code="vip")
    members = tagged(vip, 4, store_a)
    tagged(vip, 1, store_a, status="frozen")
    MemberFactory(home_store=store_a)  # not tagged
    offer = template(total_quantity=100)

    with django_capture_on_commit_callbacks(execute=True):
        response = start(marketer_api, offer, {"tag": "vip"})

    assert response.status_code == 202, response.content
    assert response.json()["status"] == "pending"
    batch = marketer_api.get(f"/api/v1/coupon-batches/{response.json()['id']}/").json()
    assert (batch["status"], batch["issued"], batch["target"]) == (
        "done",
        4,
        {"tag": "vip", "segment": None, "list": None},
    )
    assert sorted(Coupon.objects.values_list("member_id", flat=True)) == sorted(m.pk for m in members)
    assert set(Coupon.objects.values_list("source", "source_ref")) == {("bulk", f"batch:{batch['id']}")}
    offer.refresh_from_db()
    assert offer.issued_count == 4
    again = start(marketer_api, offer, {"tag": "vip"})
    assert (again.status_code, again.json()["id"]) == (202, response.json()["id"])


def test_a_batch_skips_members_over_the_limit_and_stops_at_the_quantity(store_a):
    vip = TagFactory(code="vip")
    members = tagged(vip, 6, store_a)
    offer = template(total_quantity=4, per_member_limit=1)
    with transaction.atomic():
        issue(offer, members[1])  # she holds one already
    batch = CouponBatch.objects.create(
        template=offer, tag="vip", next_member_id=members[0].pk, last_member_id=members[-1].pk, created_by="test"
    )

    result = run_coupon_batch(batch.pk, chunk_size=2)

    assert (result["status"], result["issued"], result["skipped_over_limit"], result["skipped_over_quantity"]) == (
        "done",
        3,
        1,
        2,
    )
    holders = set(Coupon.objects.filter(source="bulk").values_list("member_id", flat=True))
    assert holders == {members[0].pk, members[2].pk, members[3].pk}
    offer.refresh_from_db()
    assert offer.issued_count == 4


def test_a_chunk_done_again_gives_nobody_a_second_coupon(store_a):
    vip = TagFactory(code="vip")
    members = tagged(vip, 3, store_a)
    offer = template()
    batch = CouponBatch.objects.create(
        template=offer, tag="vip", next_member_id=members[0].pk, last_member_id=members[-1].pk, created_by="test"
    )
    assert issue_batch_chunk(batch.pk, chunk_size=2) is True
    CouponBatch.objects.filter(pk=batch.pk).update(next_member_id=members[0].pk)  # as if the mark were lost
    while issue_batch_chunk(batch.pk, chunk_size=2):
        pass
    assert Coupon.objects.count() == 3
    assert CouponBatch.objects.get(pk=batch.pk).issued == 3


def test_only_marketers_issue_to_a_tag_and_the_target_must_exist(clerk_api, marketer_api, store_a):
    offer = template()
    TagFactory(code="vip")
    assert start(clerk_api, offer, {"tag": "vip"}).status_code == 403
    unknown = start(marketer_api, offer, {"tag": "nobody"}, key="b2")
    assert (unknown.status_code, list(unknown.json()["errors"])) == (400, ["tag"])
    no_rfm = start(marketer_api, offer, {"segment": "important_value"}, key="b3")
    assert (no_rfm.status_code, list(no_rfm.json()["errors"])) == (400, ["segment"])
    both = start(marketer_api, offer, {"tag": "vip", "members": ["1"]}, key="b4")
    assert both.status_code == 400
    assert not CouponBatch.objects.exists()
