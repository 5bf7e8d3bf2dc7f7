"""Merging a duplicate member into a survivor (SPEC §1): lots move with their dates, balances add, both ledgers show
merge entries that sum to zero, growth and purchases move, the better tier stands, tags unite, and the duplicate is
closed but her phone, card number and external id lead to the survivor."""

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.contrib.messages import get_messages
from django.db.models import Sum

from loyalty.models import AuditEntry, Message
from members.models import Member, MemberMerge, MemberStatus, Purchase
from members.services import anonymise_member, freeze_member, merge_members, unfreeze_member
from members.services.membership import MemberAnonymised, MemberFrozen, MemberMerged
from members.services.merge import AlreadyMerged, MergeRequestConflict
from points import services as points_services
from points.models import EntryKind, LedgerEntry, LotMovement, PointsAccount, PointsLot, Redemption, Reward
from tests.conftest import member_client
from tests.factories import MemberFactory, StaffUserFactory, TagFactory
from tests.points.helpers import adjust, purchase, redeem, refund
from tiers.models import GrowthEntry, MemberTier, TierChange
from tiers.services import window_growth

pytestmark = pytest.mark.django_db

SHANGHAI = ZoneInfo("Asia/Shanghai")
T0 = datetime(2026, 3, 1, 10, 0, tzinfo=SHANGHAI)
EXPIRY = datetime(2027, 3, 2, 0, 0, tzinfo=SHANGHAI)  # points earned on 2026-03-01 last until 2027-03-01
MEMBERS_URL = "/api/v1/members/"


def at(*args):
    return datetime(*args, tzinfo=SHANGHAI)


def merge(survivor, duplicate, reason="same person, two cards", **kwargs):
    return merge_members(
        actor="staff:boss", survivor_id=survivor.pk, duplicate_id=duplicate.pk, reason=reason, **kwargs
    )


def account(member):
    return PointsAccount.objects.get(member=member)


def lots(member):
    return [
        (lot.status, lot.points, lot.remaining, lot.available_at, lot.expires_at)
        for lot in PointsLot.objects.filter(member=member).order_by("id")
    ]


def entries(member):
    return [
        (e.kind, e.points, e.available_delta, e.pending_delta, e.balance_after, e.pending_after)
        for e in LedgerEntry.objects.filter(member=member).order_by("id")
    ]


def tier_of(member):
    row = MemberTier.objects.filter(member=member).select_related("tier").first()
    return row.tier.code if row else "regular"


@pytest.fixture
def survivor(store_a):
    return MemberFactory(home_store=store_a, phone="+8613800000001")


@pytest.fixture
def duplicate(store_a):
    return MemberFactory(home_store=store_a, phone="+8613800000002")


# --- Points -----------------------------------------------------------------------------------------------------


def test_lots_move_with_their_own_dates_and_balances_add(survivor, duplicate):
    with time_machine.travel(T0, tick=False):
        purchase(survivor, "100.00")  # 100 pending until 03-08
        adjust(survivor, 50)
        adjust(duplicate, 200)
        order = purchase(duplicate, "30.00")  # 30 pending until 03-08
    with time_machine.travel(at(2026, 3, 3, 9), tick=False):
        outcome = merge(survivor, duplicate)

    assert outcome.status_code == 201 and not outcome.replayed
    assert outcome.result["moved"] == {
        "points": {
            "available": 200,
            "pending": 30,
            "lots": 2,
            "lifetime_earned": 230,
            "lifetime_spent": 0,
            "lifetime_expired": 0,
            "redemptions": 0,
            "deductions": 0,
            "adjustment_requests": 0,
        },
        "growth": {"entries": 1, "value": 40, "window_growth": 150},
        "tier": None,
        "purchases": 1,
        "tags": [],
        "referrals": 0,
        "identifiers": [],
        "profile": [],
        "household": None,
    }
    kept, closed = account(survivor), account(duplicate)
    assert (kept.available, kept.pending, kept.lifetime_earned, kept.closed) == (250, 130, 380, False)
    assert (closed.available, closed.pending, closed.lifetime_earned, closed.closed) == (0, 0, 0, True)
    week = T0 + timedelta(days=7)
    assert lots(survivor) == [
        ("pending", 100, 100, week, EXPIRY),
        ("available", 50, 50, T0, EXPIRY),
        ("available", 200, 200, T0, EXPIRY),
        ("pending", 30, 30, week, EXPIRY),
    ]
    assert lots(duplicate) == [("merged", 200, 0, T0, EXPIRY), ("merged", 30, 0, week, EXPIRY)]
    moved_lot = PointsLot.objects.filter(member=survivor).latest("id")
    assert (moved_lot.earned_at, moved_lot.purchase_id) == (T0, int(order["id"]))
    assert entries(duplicate)[-1] == ("merge", -230, -200, -30, 0, 0)
    assert entries(survivor)[-1] == ("merge", 230, 200, 30, 250, 130)
    merges = LedgerEntry.objects.filter(kind=EntryKind.MERGE)
    assert merges.aggregate(points=Sum("points"), available=Sum("available_delta"), pending=Sum("pending_delta")) == {
        "points": 0,
        "available": 0,
        "pending": 0,
    }
    assert set(merges.values_list("reference", flat=True)) == {f"merge:{outcome.result['id']}"}
    closing = merges.get(member=duplicate)
    assert sorted(LotMovement.objects.filter(entry=closing).values_list("points", flat=True)) == [-200, -30]
    assert list(Purchase.objects.values_list("member_id", flat=True)) == [survivor.pk, survivor.pk]

    # The moved pending points free on their own date, on the survivor; nothing is written on the duplicate again.
    with time_machine.travel(week, tick=False):
        assert points_services.release_pending().points == 130
    with time_machine.travel(at(2027, 3, 2, 0, 30), tick=False):
        assert points_services.expire_points(as_of=date(2027, 3, 1)).points == 380
    assert (account(survivor).available, account(survivor).lifetime_expired) == (0, 380)
    assert entries(duplicate)[-1][0] == "merge"


def test_the_nightly_jobs_never_come_back_to_the_closed_duplicate(survivor, duplicate):
    mug = Reward.objects.create(code="mug", name="Mug", kind="gift", cost_points=50)
    with time_machine.travel(T0, tick=False):
        order = purchase(duplicate, "100.00")
        refund(order["id"], "100.00")  # her pending lot is clawed back to 0 and stays due for release
        adjust(duplicate, 50)
        redeem(duplicate, mug)  # her available lot is spent to 0 and stays due for expiry
    with time_machine.travel(at(2026, 3, 3, 9), tick=False):
        merge(survivor, duplicate)
    with time_machine.travel(T0 + timedelta(days=8), tick=False):
        assert points_services.release_pending().members == 0
    with time_machine.travel(at(2027, 3, 2, 0, 30), tick=False):
        assert points_services.expire_points(as_of=date(2027, 3, 1)).points == 0
    assert entries(duplicate)[-1][0] == "merge"
    assert {lot[0] for lot in lots(duplicate)} == {"merged"}


def test_a_negative_balance_moves_as_debt_and_the_survivors_points_pay_it(survivor, duplicate):
    mug = Reward.objects.create(code="mug", name="Mug", kind="gift", cost_points=100)
    with time_machine.travel(T0, tick=False):
        order = purchase(duplicate, "100.00")
    with time_machine.travel(T0 + timedelta(days=8), tick=False):
        points_services.release_pending()
        redeem(duplicate, mug)
        refund(order["id"], "100.00")  # claws back 100 she has spent: -100
        adjust(survivor, 300)
    assert (account(duplicate).available, lots(duplicate)[-1][0]) == (-100, "debt")
    with time_machine.travel(T0 + timedelta(days=9), tick=False):
        outcome = merge(survivor, duplicate)

    assert outcome.result["moved"]["points"] == {
        "available": -100,
        "pending": 0,
        "lots": 1,
        "lifetime_earned": 0,
        "lifetime_spent": 100,
        "lifetime_expired": 0,
        "redemptions": 1,
        "deductions": 0,
        "adjustment_requests": 0,
    }
    assert entries(duplicate)[-1] == ("merge", 100, 100, 0, 0, 0)
    assert entries(survivor) == [("adjust", 300, 300, 0, 300, 0), ("merge", -100, -100, 0, 200, 0)]
    kept = account(survivor)
    assert (kept.available, kept.lifetime_earned, kept.lifetime_spent) == (200, 300, 100)
    # The debt lot opened on the survivor and was paid at once from her available lot, as an earn would.
    assert [(s, p, r) for s, p, r, _, _ in lots(survivor)] == [("available", 300, 200), ("debt", -100, 0)]
    # Her spent-out purchase lot is closed too (the nightly jobs never come back to her), the debt lot is paid.
    assert [(s, p, r) for s, p, r, _, _ in lots(duplicate)] == [("merged", 100, 0), ("debt", -100, 0)]
    assert Redemption.objects.get().member == survivor


def test_a_duplicates_redemption_cancelled_after_the_merge_returns_to_the_survivor_with_its_expiry(survivor, duplicate):
    mug = Reward.objects.create(code="mug", name="Mug", kind="gift", cost_points=200, stock=5)
    with time_machine.travel(T0, tick=False):
        adjust(duplicate, 500)
        redemption = redeem(duplicate, mug)
    with time_machine.travel(at(2026, 3, 3, 9), tick=False):
        merge(survivor, duplicate)
    with time_machine.travel(at(2026, 3, 4, 9), tick=False):
        result = points_services.cancel_redemption(actor="test", redemption_id=int(redemption["id"]))

    assert result["balance"] == 500
    assert (account(survivor).available, account(survivor).lifetime_spent) == (500, 0)
    assert [(s, p, r, e) for s, p, r, _, e in lots(survivor)] == [
        ("available", 300, 300, EXPIRY),
        ("available", 200, 200, EXPIRY),
    ]
    assert entries(survivor)[-1] == ("cancel", 200, 200, 0, 500, 0)
    assert Reward.objects.get().stock == 5
    assert account(duplicate).available == 0


def test_refunding_a_moved_purchase_reverses_its_points_and_growth_on_the_survivor(survivor, duplicate):
    with time_machine.travel(T0, tick=False):
        order = purchase(duplicate, "100.00")  # 100 pending, growth 110
    with time_machine.travel(at(2026, 3, 3, 9), tick=False):
        merge(survivor, duplicate)
        result = refund(order["id"], "50.00")

    assert (result["points_reversed"], result["growth_reversed"]) == (50, 55)
    assert (account(survivor).available, account(survivor).pending) == (0, 50)
    assert window_growth(survivor.pk, at=at(2026, 3, 3, 9), window_days=365) == 55
    assert window_growth(duplicate.pk, at=at(2026, 3, 3, 9), window_days=365) == 0
    assert entries(duplicate)[-1][0] == "merge"


def test_the_closed_duplicate_takes_no_further_points(survivor, duplicate, admin_api):
    with time_machine.travel(T0, tick=False):
        adjust(duplicate, 100)
        merge(survivor, duplicate)
        with pytest.raises(MemberMerged) as refused:
            adjust(duplicate, 10)  # no status check of its own: the closed account refuses it under its lock
        assert refused.value.extra == {"member": str(duplicate.pk), "merged_into": str(survivor.pk)}
        response = admin_api.post(
            f"{MEMBERS_URL}{duplicate.pk}/points/adjustments/",
            {"points": 5, "reason": "x"},
            format="json",
            HTTP_IDEMPOTENCY_KEY="a1",
        )
    assert (response.status_code, response.json()["code"]) == (409, "member_merged")
    assert response.json()["merged_into"] == str(survivor.pk)
    assert entries(duplicate)[-1][0] == "merge"


# --- Growth and tiers -------------------------------------------------------------------------------------------


def test_growth_is_mirrored_with_its_dates_and_the_combined_growth_can_upgrade(survivor, duplicate):
    with time_machine.travel(at(2025, 3, 1, 10), tick=False):
        purchase(duplicate, "500.00")  # growth 510
    with time_machine.travel(at(2025, 12, 26, 10), tick=False):
        purchase(survivor, "600.00")  # growth 610
    with time_machine.travel(at(2025, 12, 27, 10), tick=False):
        outcome = merge(survivor, duplicate)

    assert outcome.result["moved"]["growth"] == {"entries": 1, "value": 510, "window_growth": 1120}
    assert outcome.result["moved"]["tier"] == {"from": "regular", "to": "silver", "reason": "merge"}
    record = MemberMerge.objects.get()
    rows = GrowthEntry.objects.order_by("id")
    assert [(g.member_id, g.kind, g.value, g.occurred_at, g.merge_id) for g in rows] == [
        (duplicate.pk, "purchase", 510, at(2025, 3, 1, 10), None),
        (survivor.pk, "purchase", 610, at(2025, 12, 26, 10), None),
        (duplicate.pk, "purchase", -510, at(2025, 3, 1, 10), record.pk),
        (survivor.pk, "purchase", 510, at(2025, 3, 1, 10), record.pk),
    ]
    change = TierChange.objects.get(member=survivor)
    assert (change.reason, change.from_tier.code, change.to_tier.code, change.growth_value) == (
        "merge",
        "regular",
        "silver",
        1120,
    )
    row = MemberTier.objects.get(member=survivor)
    assert (row.hold_until, row.window_growth) == (date(2026, 12, 27), 1120)
    # The duplicate's growth leaves the survivor's window when it would have left hers.
    assert window_growth(survivor.pk, at=at(2026, 3, 2, 10), window_days=365) == 610
    assert window_growth(duplicate.pk, at=at(2025, 12, 27, 10), window_days=365) == 0


def test_the_survivor_keeps_the_better_tier_of_the_two_with_its_hold(survivor, duplicate):
    with time_machine.travel(T0, tick=False):
        order = purchase(duplicate, "4990.00")  # growth 5000: gold, held until 2027-03-01
        purchase(survivor, "10.00")  # growth 20
    with time_machine.travel(at(2026, 9, 1, 10), tick=False):
        refund(order["id"], "4000.00")  # growth -4008: 992 left, still gold until the hold ends
        outcome = merge(survivor, duplicate)

    assert outcome.result["moved"]["tier"] == {"from": "regular", "to": "gold", "reason": "merge"}
    assert outcome.result["moved"]["growth"]["window_growth"] == 1012
    row = MemberTier.objects.get(member=survivor)
    assert (row.tier.code, row.hold_until, row.since) == ("gold", date(2027, 3, 1), at(2026, 9, 1, 10))
    assert [
        (c.member_id, c.from_tier.code, c.to_tier.code, c.reason)
        for c in TierChange.objects.filter(reason="merge").order_by("id")
    ] == [(survivor.pk, "regular", "gold", "merge"), (duplicate.pk, "gold", "regular", "merge")]
    dropped = MemberTier.objects.get(member=duplicate)
    assert (dropped.tier.code, dropped.hold_until, dropped.window_growth) == ("regular", None, 0)


def test_a_survivor_of_a_higher_tier_keeps_it_and_no_change_is_recorded(survivor, duplicate):
    with time_machine.travel(T0, tick=False):
        purchase(survivor, "990.00")  # silver
        purchase(duplicate, "90.00")  # 100
        outcome = merge(survivor, duplicate)
    assert outcome.result["moved"]["tier"] is None
    assert tier_of(survivor) == "silver"
    assert MemberTier.objects.get(member=survivor).window_growth == 1100
    assert not TierChange.objects.filter(reason="merge").exists()


# --- Member rows: tags, identifiers, profile, referrals, closing ----------------------------------------------


def test_tags_unite_and_the_survivor_takes_the_identifiers_and_profile_she_lacks(store_a, store_b):
    vip, student = TagFactory(code="vip"), TagFactory(code="student")
    survivor = MemberFactory(home_store=store_a, phone="+8613800000001", name="", email="")
    duplicate = MemberFactory(
        home_store=store_b,
        phone="+8613800000002",
        external_id="EXT-9",
        name="王芳",
        email="wf@example.com",
        birthday=date(1990, 5, 1),
        gender="female",
    )
    survivor.member_tags.create(tag=vip)
    duplicate.member_tags.create(tag=vip)
    duplicate.member_tags.create(tag=student, added_by="staff:clerk")
    referred = MemberFactory(referrer=duplicate)

    moved = merge(survivor, duplicate).result["moved"]

    assert {key: moved[key] for key in ("tags", "referrals", "identifiers", "profile")} == {
        "tags": ["student"],
        "referrals": 1,
        "identifiers": ["external_id"],
        "profile": ["name", "email", "birthday", "gender"],
    }
    survivor.refresh_from_db()
    duplicate.refresh_from_db()
    assert (
        survivor.phone,
        survivor.external_id,
        survivor.name,
        survivor.email,
        survivor.birthday,
        survivor.gender,
        survivor.home_store,
    ) == ("+8613800000001", "EXT-9", "王芳", "wf@example.com", date(1990, 5, 1), "female", store_a)
    assert sorted(survivor.tags.values_list("code", flat=True)) == ["student", "vip"]
    assert survivor.member_tags.get(tag=student).added_by == "staff:clerk"
    assert (duplicate.status, duplicate.merged_into, duplicate.phone, duplicate.external_id) == (
        MemberStatus.MERGED,
        survivor,
        "+8613800000002",
        None,
    )
    assert not duplicate.member_tags.exists()
    referred.refresh_from_db()
    assert referred.referrer == survivor


def test_the_survivor_joins_the_duplicates_household_and_decides_her_pending_adjustments(survivor, duplicate, store_a):
    from members.services import link_household
    from points.services.approvals import approve_adjustment, request_adjustment

    clerk = StaffUserFactory(username="clerk-h", role="clerk", stores=[store_a])
    manager = StaffUserFactory(username="manager-h", role="admin")
    sister = MemberFactory(home_store=store_a)
    family = link_household(actor="t", member=duplicate, other=sister)
    waiting = request_adjustment(
        requester=clerk,
        scope="t",
        key="r1",
        fingerprint="f1",
        member_id=duplicate.pk,
        points=800,
        reason="lost receipt",
    ).result

    moved = merge(survivor, duplicate).result["moved"]

    assert (moved["household"], moved["points"]["adjustment_requests"]) == (str(family.pk), 1)
    survivor.refresh_from_db()
    duplicate.refresh_from_db()
    assert (survivor.household_id, duplicate.household_id) == (family.pk, None)
    approved = approve_adjustment(approver=manager, request_id=int(waiting["id"]))
    assert (approved["member"], account(survivor).available) == (str(survivor.pk), 800)


def test_the_merge_is_audited_with_who_why_both_ids_and_what_moved(survivor, duplicate):
    with time_machine.travel(T0, tick=False):
        adjust(duplicate, 70)
        outcome = merge(survivor, duplicate, reason="customer asked, ID checked")
    record = MemberMerge.objects.get()
    assert (record.survivor, record.duplicate, record.actor, record.reason, record.answer) == (
        survivor,
        duplicate,
        "staff:boss",
        "customer asked, ID checked",
        outcome.result,
    )
    on_survivor = AuditEntry.objects.get(action="member.merged")
    assert (on_survivor.actor, on_survivor.target_id) == ("staff:boss", str(survivor.pk))
    assert on_survivor.new_values["duplicate"] == str(duplicate.pk)
    assert on_survivor.new_values["duplicate_member_no"] == duplicate.member_no
    assert on_survivor.new_values["reason"] == "customer asked, ID checked"
    assert on_survivor.new_values["merge"] == record.pk
    assert on_survivor.new_values["moved"]["points"]["available"] == 70
    on_duplicate = AuditEntry.objects.get(action="member.merged_into")
    assert on_duplicate.target_id == str(duplicate.pk)
    assert on_duplicate.old_values == {"status": "active", "household": None}
    assert on_duplicate.new_values["merged_into"] == str(survivor.pk)
    assert on_duplicate.new_values["status"] == "merged"


def test_a_member_merged_into_a_duplicate_earlier_follows_her_to_the_new_survivor(store_a):
    first, second, third = (MemberFactory(home_store=store_a) for _ in range(3))
    merge(second, first)
    merge(third, second)
    first.refresh_from_db()
    assert first.merged_into == third
    assert first.surviving_member() == third


# --- Refusals and idempotency -----------------------------------------------------------------------------------


def test_refusals_write_nothing(survivor, duplicate, store_a):
    adjust(duplicate, 10)
    before = LedgerEntry.objects.count()
    with pytest.raises(Exception) as into_herself:
        merge(survivor, survivor)
    assert into_herself.value.code == "invalid" and "duplicate" in into_herself.value.errors
    with pytest.raises(Exception) as no_reason:
        merge(survivor, duplicate, reason="  ")
    assert no_reason.value.errors == {"reason": ["Say why these members are merged."]}
    freeze_member(actor="t", member=duplicate, reason="fraud check", role="admin")
    with pytest.raises(MemberFrozen):
        merge(survivor, duplicate)
    unfreeze_member(actor="t", member=duplicate, role="admin")
    gone = MemberFactory(home_store=store_a)
    anonymise_member(actor="t", member=gone, reason="asked", role="admin")
    with pytest.raises(MemberAnonymised):
        merge(survivor, gone)
    with pytest.raises(MemberAnonymised):
        merge(gone, duplicate)
    assert LedgerEntry.objects.count() == before
    assert not MemberMerge.objects.exists()
    assert Member.objects.get(pk=duplicate.pk).status == MemberStatus.ACTIVE


def test_merging_again_answers_the_original_and_other_merges_of_the_closed_members_are_refused(
    survivor, duplicate, store_a
):
    other = MemberFactory(home_store=store_a)
    first = merge(survivor, duplicate)
    again = merge(survivor, duplicate, reason="clicked twice")
    assert (again.status_code, again.replayed, again.result) == (200, True, first.result)
    with pytest.raises(AlreadyMerged) as elsewhere:
        merge(other, duplicate)
    assert elsewhere.value.extra == {"merged_into": str(survivor.pk)}
    with pytest.raises(MemberMerged) as chain:
        merge(duplicate, other)  # into a closed duplicate: merge into her survivor instead
    assert chain.value.extra == {"merged_into": str(survivor.pk)}
    assert MemberMerge.objects.count() == 1
    assert LedgerEntry.objects.filter(kind=EntryKind.MERGE).count() == 2


def test_a_retry_with_the_same_idempotency_key_answers_the_original_and_another_body_conflicts(
    survivor, duplicate, store_a
):
    first = merge(survivor, duplicate, idempotency_scope="staff:1", idempotency_key="k1")
    retry = merge(survivor, duplicate, idempotency_scope="staff:1", idempotency_key="k1")
    assert (retry.status_code, retry.replayed, retry.result) == (201, True, first.result)
    with pytest.raises(MergeRequestConflict):
        merge(survivor, MemberFactory(home_store=store_a), idempotency_scope="staff:1", idempotency_key="k1")
    assert MemberMerge.objects.count() == 1


def test_a_merged_duplicate_stays_closed(survivor, duplicate):
    merge(survivor, duplicate)
    for service in (freeze_member, unfreeze_member):
        with pytest.raises(MemberMerged):
            service(actor="t", member=duplicate, reason="x", role="admin")
    assert Member.objects.get(pk=duplicate.pk).status == MemberStatus.MERGED


# --- The API ------------------------------------------------------------------------------------------------------


def merge_url(member):
    return f"{MEMBERS_URL}{member.pk}/merge/"


def test_api_merge_answers_201_then_the_original_with_200(admin_api, survivor, duplicate):
    with time_machine.travel(T0, tick=False):
        adjust(duplicate, 40)
        response = admin_api.post(
            merge_url(survivor), {"duplicate": str(duplicate.pk), "reason": "two cards"}, format="json"
        )
    assert response.status_code == 201, response.content
    body = response.json()
    assert body == {
        "id": body["id"],
        "survivor": str(survivor.pk),
        "duplicate": str(duplicate.pk),
        "reason": "two cards",
        "actor": "staff:boss",
        "created_at": "2026-03-01T10:00:00+08:00",
        "moved": body["moved"],
    }
    assert body["moved"]["points"]["available"] == 40
    again = admin_api.post(merge_url(survivor), {"duplicate": str(duplicate.pk), "reason": "two cards"}, format="json")
    assert (again.status_code, again.json(), again["Idempotent-Replayed"]) == (200, body, "true")
    keyed = admin_api.post(
        merge_url(survivor),
        {"duplicate": str(duplicate.pk), "reason": "other words"},
        format="json",
        HTTP_IDEMPOTENCY_KEY="m-1",
    )
    assert keyed.status_code == 200  # the natural key (the duplicate) answers first


def test_api_retry_with_the_idempotency_key(admin_api, survivor, duplicate, store_a):
    body = {"duplicate": str(duplicate.pk), "reason": "two cards"}
    first = admin_api.post(merge_url(survivor), body, format="json", HTTP_IDEMPOTENCY_KEY="m-1")
    retry = admin_api.post(merge_url(survivor), body, format="json", HTTP_IDEMPOTENCY_KEY="m-1")
    assert (first.status_code, retry.status_code, retry.json()) == (201, 201, first.json())
    other = MemberFactory(home_store=store_a)
    clash = admin_api.post(
        merge_url(survivor),
        {"duplicate": str(other.pk), "reason": "two cards"},
        format="json",
        HTTP_IDEMPOTENCY_KEY="m-1",
    )
    assert (clash.status_code, clash.json()["code"]) == (409, "idempotency_conflict")
    assert Member.objects.get(pk=other.pk).status == MemberStatus.ACTIVE


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"reason": "x"}, "duplicate"),
        ({"duplicate": "abc", "reason": "x"}, "duplicate"),
        ({"duplicate": "1" * 19, "reason": "x"}, "duplicate"),
        ({"duplicate": "SELF"}, "reason"),
        ({"duplicate": "SELF", "reason": "x"}, "duplicate"),
        ({"duplicate": "999999", "reason": "x"}, "duplicate"),
    ],
)
def test_api_bad_input_is_400_invalid(admin_api, survivor, body, field):
    body = {key: str(survivor.pk) if value == "SELF" else value for key, value in body.items()}
    response = admin_api.post(merge_url(survivor), body, format="json")
    assert (response.status_code, response.json()["code"]) == (400, "invalid")
    assert field in response.json()["errors"]
    assert not MemberMerge.objects.exists()


def test_api_conflicts_and_not_found(admin_api, survivor, duplicate, store_a):
    other = MemberFactory(home_store=store_a)
    admin_api.post(merge_url(survivor), {"duplicate": str(duplicate.pk), "reason": "x"}, format="json")
    elsewhere = admin_api.post(merge_url(other), {"duplicate": str(duplicate.pk), "reason": "x"}, format="json")
    assert (elsewhere.status_code, elsewhere.json()["code"], elsewhere.json()["merged_into"]) == (
        409,
        "already_merged",
        str(survivor.pk),
    )
    chain = admin_api.post(merge_url(duplicate), {"duplicate": str(other.pk), "reason": "x"}, format="json")
    assert (chain.status_code, chain.json()["code"], chain.json()["merged_into"]) == (
        409,
        "member_merged",
        str(survivor.pk),
    )
    freeze_member(actor="t", member=other, reason="check", role="admin")
    frozen = admin_api.post(merge_url(survivor), {"duplicate": str(other.pk), "reason": "x"}, format="json")
    assert (frozen.status_code, frozen.json()["code"]) == (409, "member_frozen")
    missing = admin_api.post(f"{MEMBERS_URL}999999/merge/", {"duplicate": str(other.pk), "reason": "x"}, format="json")
    assert (missing.status_code, missing.json()["code"]) == (404, "not_found")


def test_only_admins_merge(clerk_api, marketer_api, pos_a, survivor, duplicate):
    body = {"duplicate": str(duplicate.pk), "reason": "two cards"}
    for client in (clerk_api, marketer_api, pos_a):
        response = client.post(merge_url(survivor), body, format="json")
        assert (response.status_code, response.json()["code"]) == (403, "permission_denied")
    assert member_client(survivor).post(merge_url(survivor), body, format="json").status_code == 403
    assert Member.objects.get(pk=duplicate.pk).status == MemberStatus.ACTIVE


def test_lookups_by_the_duplicates_identifiers_find_the_survivor(admin_api, store_a):
    survivor = MemberFactory(home_store=store_a, phone="+8613800000001")
    duplicate = MemberFactory(home_store=store_a, phone="+8613800000002", external_id="EXT-9")
    bystander = MemberFactory(home_store=store_a)
    merge(survivor, duplicate)

    def ids(**params):
        response = admin_api.get(MEMBERS_URL, params)
        assert response.status_code == 200, response.content
        return [row["id"] for row in response.json()["results"]]

    assert ids(phone="138 0000 0002") == [str(survivor.pk)]
    assert ids(member_no=duplicate.member_no) == [str(survivor.pk)]
    assert ids(external_id="EXT-9") == [str(survivor.pk)]  # handed over: the survivor had none
    assert ids(q=duplicate.member_no) == [str(survivor.pk)]
    assert ids(phone="13800000001") == [str(survivor.pk)]
    assert sorted(ids()) == sorted([str(survivor.pk), str(bystander.pk)])  # not listed as herself
    assert ids(status="merged") == [str(duplicate.pk)]
    closed = admin_api.get(f"{MEMBERS_URL}{duplicate.pk}/").json()
    assert (closed["status"], closed["merged_into"], closed["external_id"]) == ("merged", str(survivor.pk), None)
    assert admin_api.get(f"{MEMBERS_URL}{survivor.pk}/").json()["merged_into"] is None
    taken = admin_api.post(MEMBERS_URL, {"phone": "13800000002"}, format="json")
    assert (taken.status_code, taken.json()["code"], taken.json()["id"]) == (409, "member_exists", str(survivor.pk))


def test_the_duplicate_can_no_longer_log_in_earn_or_be_changed(admin_api, pos_a, survivor, duplicate):
    TagFactory(code="vip")
    old_token = member_client(duplicate)
    merge(survivor, duplicate)
    assert old_token.get("/api/v1/me/").status_code == 401
    bought = pos_a.post(
        "/api/v1/purchases/", {"member": str(duplicate.pk), "order_no": "A1", "amount": "10.00"}, format="json"
    )
    assert (bought.status_code, bought.json()["code"], bought.json()["merged_into"]) == (
        409,
        "member_merged",
        str(survivor.pk),
    )
    for response in (
        admin_api.patch(f"{MEMBERS_URL}{duplicate.pk}/", {"name": "x"}, format="json"),
        admin_api.post(f"{MEMBERS_URL}{duplicate.pk}/tags/", {"tag": "vip"}, format="json"),
        admin_api.post(f"{MEMBERS_URL}{duplicate.pk}/freeze/", {"reason": "x"}, format="json"),
    ):
        assert (response.status_code, response.json()["code"]) == (409, "member_merged")
    assert not Purchase.objects.exists()
    assert Member.objects.get(pk=duplicate.pk).status == MemberStatus.MERGED


def test_otp_login_with_the_duplicates_phone_logs_the_survivor_in(anonymous, survivor, duplicate):
    merge(survivor, duplicate)
    assert anonymous.post("/api/v1/auth/otp", {"phone": duplicate.phone}, format="json").status_code == 202
    sms = Message.objects.get(kind="otp")
    assert sms.member == survivor
    code = sms.body.split("code is ")[1][:6]
    response = anonymous.post("/api/v1/auth/member-token", {"phone": duplicate.phone, "code": code}, format="json")
    assert response.status_code == 200, response.content
    assert (response.json()["created"], response.json()["member"]["id"]) == (False, str(survivor.pk))


def test_imported_purchases_by_the_duplicates_phone_land_on_the_survivor(tmp_path, survivor, duplicate):
    from django.core.management import call_command

    merge(survivor, duplicate)
    path = tmp_path / "orders.csv"
    path.write_text(
        "member_external_id,member_phone,order_no,occurred_at,amount,store,channel\n"
        f",{duplicate.phone},IMP-1,2026-03-01 10:00,88.00,,\n",
        encoding="utf-8",
    )
    call_command("import_purchases", str(path), stdout=open(tmp_path / "out.txt", "w"))  # noqa: SIM115
    assert Purchase.objects.get(order_no="IMP-1").member == survivor


def test_schema_documents_the_merge(admin_api):
    schema = admin_api.get("/api/schema/", {"format": "json"}).json()
    operation = schema["paths"]["/api/v1/members/{id}/merge/"]["post"]
    assert set(operation["responses"]) == {"200", "201", "400", "401", "403", "404", "409", "413", "415", "429", "503"}
    assert [p["name"] for p in operation["parameters"] if p["in"] == "header"] == ["Idempotency-Key"]
    assert "already_merged" in operation["responses"]["409"]["description"]
    assert "merged_into" in schema["components"]["schemas"]["Member"]["properties"]


# --- The admin ----------------------------------------------------------------------------------------------------


@pytest.fixture
def admin_client(client, admin_user):
    client.force_login(admin_user)
    return client


def test_admin_merges_after_comparing_both_members(admin_client, survivor, duplicate):
    adjust(duplicate, 30)
    page = admin_client.get(f"/admin/members/member/{survivor.pk}/change/")
    assert f"/admin/members/member/{survivor.pk}/merge/".encode() in page.content
    url = f"/admin/members/member/{survivor.pk}/merge/"
    assert admin_client.get(url).status_code == 200
    compare = admin_client.post(url, {"duplicate": duplicate.member_no, "reason": "two cards"})
    assert compare.status_code == 200
    assert compare.context["duplicate"] == duplicate
    assert ("points", "0 available, 0 pending", "30 available, 0 pending") in [
        (str(a[0]), str(a[1]), str(b[1])) for a, b in compare.context["comparison"]
    ]
    assert Member.objects.get(pk=duplicate.pk).status == MemberStatus.ACTIVE  # nothing yet
    done = admin_client.post(url, {"duplicate": duplicate.member_no, "reason": "two cards", "confirmed": "1"})
    assert done.status_code == 302
    assert done["Location"] == f"/admin/members/member/{survivor.pk}/change/"
    assert [str(m) for m in get_messages(done.wsgi_request)] == [
        f"Merged {duplicate.member_no} into {survivor.member_no}: 30 available and 0 pending points, "
        "0 purchases, tags —."
    ]
    assert account(survivor).available == 30
    assert MemberMerge.objects.get().actor == "staff:boss"
    # Searching for the duplicate's card number opens the survivor.
    found = admin_client.get("/admin/members/member/", {"q": duplicate.member_no})
    assert found.status_code == 302
    assert found["Location"] == f"/admin/members/member/{survivor.pk}/change/"


def test_admin_merge_by_phone_shows_refusals_on_the_form(admin_client, survivor, duplicate):
    url = f"/admin/members/member/{survivor.pk}/merge/"
    unknown = admin_client.post(url, {"duplicate": "13900000000", "reason": "x"})
    assert "duplicate" in unknown.context["form"].errors
    freeze_member(actor="t", member=duplicate, reason="check", role="admin")
    refused = admin_client.post(url, {"duplicate": "138 0000 0002", "reason": "x", "confirmed": "1"})
    assert refused.status_code == 200
    assert refused.context["form"].non_field_errors()[0].startswith("member_frozen:")


def test_clerks_do_not_merge_in_the_admin(client, store_a, survivor, duplicate):
    clerk = StaffUserFactory(username="clerk-m", role="clerk", stores=[store_a])
    client.force_login(clerk)
    page = client.get(f"/admin/members/member/{survivor.pk}/change/")
    assert page.status_code == 200
    assert b"/merge/" not in page.content
    url = f"/admin/members/member/{survivor.pk}/merge/"
    assert client.get(url).status_code == 403
    assert client.post(url, {"duplicate": duplicate.member_no, "reason": "x", "confirmed": "1"}).status_code == 403
    assert Member.objects.get(pk=duplicate.pk).status == MemberStatus.ACTIVE


def test_admin_status_actions_leave_merged_and_anonymised_members_as_they_are(
    admin_client, survivor, duplicate, store_a
):
    gone = MemberFactory(home_store=store_a)
    anonymise_member(actor="t", member=gone, reason="asked", role="admin")
    merge(survivor, duplicate)
    response = admin_client.post(
        "/admin/members/member/",
        {"action": "freeze_members", "_selected_action": [str(m.pk) for m in (survivor, duplicate, gone)]},
        follow=True,
    )
    assert response.status_code == 200
    assert Member.objects.get(pk=survivor.pk).status == MemberStatus.FROZEN
    assert Member.objects.get(pk=duplicate.pk).status == MemberStatus.MERGED
    assert Member.objects.get(pk=gone.pk).status == MemberStatus.ANONYMISED
    left = [str(m) for m in get_messages(response.wsgi_request) if str(m).startswith("Left unchanged")]
    assert len(left) == 1
    assert f"{duplicate.member_no} (member_merged)" in left[0]
    assert f"{gone.member_no} (member_anonymised)" in left[0]


def test_rule_tags_are_not_given_to_a_merged_duplicate(survivor, duplicate):
    from loyalty.scheduling import run_inline
    from members.models import MemberTag, Tag

    Tag.objects.create(code="everyone", name="everyone", kind="rule", rule={"store": ["A001"]})
    merge(survivor, duplicate)
    MemberTag.objects.create(member=duplicate, tag=Tag.objects.get(code="everyone"), added_by="rule")  # stale
    run_inline("rule_tags", date(2026, 5, 15))
    assert set(MemberTag.objects.values_list("member_id", flat=True)) == {survivor.pk}


@pytest.mark.tampers_ledger
def test_check_ledger_reports_a_merge_entry_that_is_not_one_side_of_a_merge(survivor, duplicate):
    from points.audit import ledger_mismatches
    from points.services import ledger

    with time_machine.travel(T0, tick=False):
        adjust(duplicate, 70)
        merge(survivor, duplicate)
        assert list(ledger_mismatches()) == []  # both sides of the real merge: opposite, one each
        account = ledger.lock_account(survivor.pk)  # a credit that balances, but says it came from a merge
        entry = ledger.append_entry(account, kind="merge", actor="forger", available_delta=30, reference="merge:0")
        PointsLot.objects.create(
            member=survivor, entry=entry, status="available", points=30, remaining=30, earned_at=T0, available_at=T0
        )
        account.save()

    assert list(ledger_mismatches()) == [
        f"member {survivor.pk}: merge entry {entry.pk} (available +30, pending +0) is not one side of a merge of "
        "hers, or its other side differs"
    ]
