from datetime import date
from decimal import Decimal

import pytest
import time_machine
from django.db import transaction

from campaigns.jobs import expire_coupons_bounds, expire_coupons_chunk
from campaigns.models_coupons import Coupon, CouponStatus
from campaigns.services import coupons
from loyalty.scheduling import run_inline
from tests.coupons.helpers import issue, redeem, template
from tests.factories import MemberFactory

pytestmark = pytest.mark.django_db

NOON = "2026-03-10 12:00:00+08:00"


def _issue(template_, *members):
    with transaction.atomic():
        return issue(template_, *members)


@time_machine.travel(NOON, tick=False)
def test_a_coupon_valid_7_days_counts_the_day_of_issue(member_a):
    (coupon,) = _issue(template(valid_days=7), member_a)
    assert (coupon.valid_from, coupon.valid_until) == (date(2026, 3, 10), date(2026, 3, 16))
    assert coupon.status == CouponStatus.UNUSED
    assert coupon.member_id == member_a.pk


def test_issuing_never_passes_the_total_quantity_and_refuses_all_or_nothing(member_a, member_b):
    offer = template(total_quantity=2)
    _issue(offer, member_a)
    with pytest.raises(coupons.OutOfStock) as refused:
        _issue(offer, member_a, member_b)
    assert refused.value.extra == {"left": 1}
    offer.refresh_from_db()
    assert offer.issued_count == 1
    assert Coupon.objects.count() == 1


def test_the_per_member_limit_counts_coupons_she_holds_but_not_void_ones(member_a, member_b):
    offer = template(per_member_limit=1)
    (first,) = _issue(offer, member_a)
    with pytest.raises(coupons.LimitReached) as refused:
        _issue(offer, member_b, member_a)
    assert refused.value.extra["members"] == [str(member_a.pk)]
    Coupon.objects.filter(pk=first.pk).update(status=CouponStatus.VOID)
    assert len(_issue(offer, member_a)) == 1


def test_an_inactive_or_ended_template_issues_nothing(member_a):
    with pytest.raises(coupons.TemplateInactive):
        _issue(template(is_active=False), member_a)
    ended = template(valid_days=None, valid_from=date(2020, 1, 1), valid_until=date(2020, 1, 31))
    with pytest.raises(coupons.TemplateInactive):
        _issue(ended, member_a)


@pytest.mark.parametrize(
    ("kind", "terms", "amount", "discount"),
    [
        ("amount_off", {"amount_off": "20", "threshold": "100"}, "150.00", "20.00"),
        ("amount_off", {"amount_off": "20"}, "12.50", "12.50"),
        ("percent_off", {"percent_off": "15"}, "99.99", "15.00"),
        ("percent_off", {"percent_off": "15", "max_discount": "10"}, "99.99", "10.00"),
        ("gift", {}, "50.00", "0.00"),
        ("free_item", {"amount_off": "18"}, "50.00", "18.00"),
    ],
)
def test_the_discount_of_each_kind(kind, terms, amount, discount):
    terms = {name: Decimal(value) for name, value in terms.items()}
    offer = template(**{"kind": kind, "amount_off": None, "threshold": None, **terms})
    assert coupons.discount_for(offer, Decimal(amount)) == Decimal(discount)


@time_machine.travel(NOON, tick=False)
def test_check_says_why_a_coupon_cannot_be_used(member_a, member_b, store_a, store_b):
    offer = template(stores=["A001"], categories=["coffee"])
    (coupon,) = _issue(offer, member_a)

    def reason(**order):
        return coupons.check_coupon(code=coupon.code, **{"store": store_a, "amount": Decimal("150"), **order})

    assert (reason()["valid"], reason()["discount"], "reason" in reason()) == (True, "20.00", False)
    assert reason(store=store_b)["reason"] == "wrong_store"
    assert reason(amount=Decimal("99.99"))["reason"] == "below_threshold"
    assert reason(amount=Decimal("99.99"))["discount"] == "0.00"
    assert reason(member_id=member_b.pk)["reason"] == "not_owner"
    assert reason(member_id=member_a.pk)["valid"] is True
    assert reason(categories=["tea"])["reason"] == "wrong_category"
    assert reason(categories=["tea", "coffee"])["valid"] is True
    with time_machine.travel("2026-04-09 00:00:01+08:00", tick=False):
        assert reason()["reason"] == "expired"
    Coupon.objects.filter(pk=coupon.pk).update(status=CouponStatus.VOID)
    assert reason()["reason"] == "void"


def test_redeem_marks_the_coupon_used_once_and_a_retry_replays(store_a, member_a):
    (coupon,) = _issue(template(), member_a)
    first = redeem(coupon.code, store=store_a, order_no="O-1", key="k1")
    assert first.result["status"] == "used"
    assert (first.result["order_no"], first.result["discount"]) == ("O-1", "20.00")
    again = redeem(coupon.code, store=store_a, order_no="O-1", key="k1")
    assert (again.replayed, again.result) == (True, first.result)
    with pytest.raises(coupons.CouponUsed):
        redeem(coupon.code, store=store_a, order_no="O-2", key="k2")
    coupon.refresh_from_db()
    assert (coupon.status, coupon.order_no, coupon.discount, coupon.store) == ("used", "O-1", Decimal("20.00"), store_a)


def test_redeem_refuses_an_expired_or_inapplicable_coupon_and_writes_nothing(store_a, member_a):
    (coupon,) = _issue(template(), member_a)
    with pytest.raises(coupons.CouponNotApplicable) as refused:
        redeem(coupon.code, store=store_a, amount="80.00")
    assert refused.value.extra == {"reason": "below_threshold"}
    Coupon.objects.filter(pk=coupon.pk).update(status=CouponStatus.EXPIRED)
    with pytest.raises(coupons.CouponExpired):
        redeem(coupon.code, store=store_a)
    coupon.refresh_from_db()
    assert (coupon.status, coupon.order_no) == ("expired", "")


def test_undo_within_the_window_and_not_after(store_a, member_a, settings):
    settings.COUPON_UNDO_MINUTES = 10
    with time_machine.travel(NOON, tick=False) as clock:
        (coupon,) = _issue(template(), member_a)
        redeem(coupon.code, store=store_a)
        clock.shift(600)
        assert coupons.undo_redemption(actor="clerk", code=coupon.code)["status"] == "unused"
        redeem(coupon.code, store=store_a)
        clock.shift(601)
        with pytest.raises(coupons.UndoWindowPassed):
            coupons.undo_redemption(actor="clerk", code=coupon.code)
    with pytest.raises(coupons.CouponNotUsed):
        coupons.undo_redemption(actor="clerk", code=_issue(template(), member_a)[0].code)


def test_the_nightly_job_expires_unused_coupons_past_their_last_day_only(member_a, store_a):
    with time_machine.travel("2026-03-01 12:00:00+08:00", tick=False):
        short, long = template(valid_days=3), template(valid_days=10)
        (ends_3rd,) = _issue(short, member_a)
        (used,) = _issue(short, member_a)
        (ends_10th,) = _issue(long, member_a)
        redeem(used.code, store=store_a)
    with time_machine.travel("2026-03-05 01:00:00+08:00", tick=False):
        run = run_inline("expire_coupons", date(2026, 3, 3))
    assert run.counts == {"expired": 1}
    statuses = dict(Coupon.objects.values_list("code", "status"))
    assert statuses == {ends_3rd.code: "expired", used.code: "used", ends_10th.code: "unused"}
    assert expire_coupons_bounds(date(2026, 3, 3), {}) == (None, None)
    assert expire_coupons_chunk(date(2026, 3, 10), 0, 10**9, {}) == {"expired": 1}


def test_a_registration_issues_the_templates_flagged_for_it(store_a):
    template(issue_on="registration", name="welcome")
    template(issue_on="registration", name="ended", is_active=False)
    member = MemberFactory(home_store=store_a)
    coupons.issue_on_registration(member)
    assert list(Coupon.objects.filter(member=member).values_list("template__name", "source")) == [
        ("welcome", "registration")
    ]


def test_a_merge_moves_the_duplicates_coupons_to_the_survivor(member_a, store_a):
    from members.services.merge import merge_members

    duplicate = MemberFactory(home_store=store_a)
    (coupon,) = _issue(template(), duplicate)
    result = merge_members(actor="test", survivor_id=member_a.pk, duplicate_id=duplicate.pk, reason="same person")
    coupon.refresh_from_db()
    assert coupon.member_id == member_a.pk
    assert result.result["moved"]["coupons"] == 1


def test_the_reminders_job_tells_a_member_3_days_before_her_coupons_last_day(member_a, store_a):
    from loyalty.models import Message

    with time_machine.travel("2026-03-01 12:00:00+08:00", tick=False):
        offer = template(valid_days=10)  # issued 03-01, last day 03-10
        _issue(offer, member_a)
        _issue(offer, member_a)
        _issue(template(valid_days=11), member_a)
    with time_machine.travel("2026-03-07 09:00:00+08:00", tick=False):
        run = run_inline("reminders", date(2026, 3, 7), params={"sources": ["coupons_expiring"]})
    assert run.counts["coupons_expiring"] == 1
    inbox = Message.objects.get(member=member_a, kind="coupons_expiring", channel="inbox")
    assert inbox.body == f"{member_a.name}，您有 2 张优惠券将于 2026-03-10 到期，请及时使用。"


def test_a_birthday_template_gives_each_member_one_coupon_on_her_birthday_once_a_year(store_a):
    today_born = MemberFactory(home_store=store_a, birthday=date(1990, 3, 7))
    MemberFactory(home_store=store_a, birthday=date(1990, 3, 8))
    MemberFactory(home_store=store_a, birthday=date(1991, 3, 7), status="frozen")
    offer = template(issue_on="birthday", name="birthday treat", valid_days=7)
    with time_machine.travel("2026-03-07 09:00:00+08:00", tick=False):
        run_inline("reminders", date(2026, 3, 7), params={"sources": ["birthday_coupons"]})
        run_inline("reminders", date(2026, 3, 7), params={"sources": ["birthday_coupons"]}, force=True)
    coupon = Coupon.objects.get()
    assert (coupon.member, coupon.source, coupon.source_ref) == (today_born, "birthday", "birthday:2026")
    assert (coupon.valid_from, coupon.valid_until) == (date(2026, 3, 7), date(2026, 3, 13))
    offer.refresh_from_db()
    assert offer.issued_count == 1
