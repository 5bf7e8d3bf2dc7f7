"""Finding 6: no total cap on adjustments — one clerk made 12 × +500 in seconds (each within her limit per entry).

The points policy has daily totals of manual adjustments (the sum of |points| in one business day): per actor
(`clerk_daily_adjustment_total` 2,000, `marketer_daily_adjustment_total` 20,000: what she adjusts herself, to any
member, in the API and the admin alike) and per member (`member_daily_adjustment_total` 10,000: what all staff adjust
her by). A clerk's or a marketer's adjustment beyond either is 403 `adjustment_limit` (with `per`, `daily_total`,
`adjusted_today`, `left`) and writes nothing, unless it is sent with `request_approval` (202, a pending request). An
approved request is never refused by the totals and does not count in the requester's nor the approver's own
total; it counts in the member's. Admins have no totals (as they have no limit per entry), but what they adjust
counts in the member's. Only an admin changes the totals, never above the operator's ceilings (MAX_* settings).

Under concurrency: one advisory lock per actor (before any member's lock), then the member's account lock; the
totals are read after both, in one aggregate query."""

import threading
from collections import Counter
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from loyalty.errors import InvalidInput, PermissionDeniedError
from loyalty.models import AuditEntry
from points import services
from points.models import AdjustmentRequest, LedgerEntry, PointsAccount, PointsPolicy
from points.services.spending import adjusted_today
from tests.conftest import staff_client
from tests.factories import MemberFactory, StaffUserFactory
from tests.points.helpers import assert_ledger_consistent

SHANGHAI = ZoneInfo("Asia/Shanghai")
NOW = datetime(2026, 3, 10, 12, 0, tzinfo=SHANGHAI)
POLICIES = "/admin/points/pointspolicy/"
TOTALS = ["clerk_daily_adjustment_total", "marketer_daily_adjustment_total", "member_daily_adjustment_total"]


@pytest.fixture(autouse=True)
def fixed_clock():
    with time_machine.travel(NOW, tick=False):
        yield


def policy(**values):
    return PointsPolicy.objects.create(valid_from=NOW - timedelta(days=30), **values)


def adjust_by_api(client, member, points, key, **extra):
    return client.post(
        f"/api/v1/members/{member.pk}/points/adjustments/",
        {"points": points, "reason": "goodwill", **extra},
        format="json",
        HTTP_IDEMPOTENCY_KEY=key,
    )


def outcome(response):
    return response.status_code if response.status_code < 400 else response.json()["code"]


def refusal(response):
    """The numbers of a daily-total refusal (and that its detail says them)."""
    assert response.status_code == 403, response.content
    body = response.json()
    assert body["code"] == "adjustment_limit", body
    assert f"{body['daily_total']} points a day" in body["detail"]
    assert f"{body['left']} left" in body["detail"]
    assert "request_approval" in body["detail"]
    return body["per"], body["daily_total"], body["adjusted_today"], body["left"]


def available(member):
    account = PointsAccount.objects.filter(member=member).first()
    return account.available if account else 0


def adjusted_points():
    return sorted(LedgerEntry.objects.filter(kind="adjust").values_list("points", flat=True))


@pytest.fixture
def clerk_a2(store_a):
    return StaffUserFactory(username="clerk-a2", role="clerk", stores=[store_a])


@pytest.fixture
def members(store_a):
    return MemberFactory.create_batch(5, home_store=store_a)


# --- One clerk's total ---------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_clerk_stops_at_her_daily_total_across_members(clerk_api, members):
    policy(clerk_daily_adjustment_total=2000)
    assert [
        outcome(adjust_by_api(clerk_api, members[0], 500, "k0")),
        outcome(adjust_by_api(clerk_api, members[0], -200, "k1")),  # taking away counts too: |points|
        outcome(adjust_by_api(clerk_api, members[1], 500, "k2")),
        outcome(adjust_by_api(clerk_api, members[2], 500, "k3")),
    ] == [201] * 4
    before = (adjusted_points(), AuditEntry.objects.filter(action="points.adjusted").count())

    refused = adjust_by_api(clerk_api, members[3], 500, "k4")

    assert refusal(refused) == ("actor", 2000, 1700, 300)
    assert (adjusted_points(), AuditEntry.objects.filter(action="points.adjusted").count()) == before
    assert available(members[3]) == 0
    assert outcome(adjust_by_api(clerk_api, members[3], 300, "k5")) == 201
    assert refusal(adjust_by_api(clerk_api, members[4], -1, "k6")) == ("actor", 2000, 2000, 0)
    assert [available(member) for member in members] == [300, 500, 500, 300, 0]


@pytest.mark.django_db
def test_another_clerk_and_the_next_business_day_have_their_own_totals(store_a, clerk_a, clerk_a2, members):
    policy(clerk_daily_adjustment_total=1000)
    # 23:50 in Shanghai is 15:50 UTC; 00:10 the next business day is 16:10 UTC, still the same UTC date.
    with time_machine.travel(datetime(2026, 3, 10, 23, 50, tzinfo=SHANGHAI), tick=False):
        api, other = staff_client(clerk_a), staff_client(clerk_a2)
        assert outcome(adjust_by_api(api, members[0], 500, "d1")) == 201
        assert outcome(adjust_by_api(api, members[1], 500, "d2")) == 201
        assert refusal(adjust_by_api(api, members[2], 500, "d3")) == ("actor", 1000, 1000, 0)
        assert outcome(adjust_by_api(other, members[2], 500, "d4")) == 201
    with time_machine.travel(datetime(2026, 3, 11, 0, 10, tzinfo=SHANGHAI), tick=False):
        api = staff_client(clerk_a)
        assert outcome(adjust_by_api(api, members[3], 500, "d5")) == 201
        assert outcome(adjust_by_api(api, members[4], 500, "d6")) == 201
        assert refusal(adjust_by_api(api, members[4], 1, "d7")) == ("actor", 1000, 1000, 0)
    assert [available(member) for member in members] == [500, 500, 500, 500, 500]


@pytest.mark.django_db
def test_a_marketer_has_the_marketers_daily_total(members):
    policy(marketer_daily_adjustment_total=12_000, member_daily_adjustment_total=10_000)
    api = staff_client(StaffUserFactory(username="marketing", role="marketer"))
    assert [outcome(adjust_by_api(api, members[i], 5000, f"m{i}")) for i in range(2)] == [201, 201]
    assert refusal(adjust_by_api(api, members[2], 5000, "m2")) == ("actor", 12_000, 10_000, 2000)
    assert outcome(adjust_by_api(api, members[2], 2000, "m3")) == 201


@pytest.mark.django_db
def test_admins_have_no_daily_total(admin_api, members):
    policy(member_daily_adjustment_total=1000, clerk_daily_adjustment_total=1000, marketer_daily_adjustment_total=1000)
    assert [outcome(adjust_by_api(admin_api, members[i % 2], 50_000, f"a{i}")) for i in range(4)] == [201] * 4
    assert available(members[0]) == available(members[1]) == 100_000


# --- One member's total --------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_all_staff_together_stop_at_the_members_daily_total(clerk_api, clerk_a2, admin_api, members):
    policy(member_daily_adjustment_total=1000)
    marketer_api = staff_client(StaffUserFactory(username="marketing", role="marketer"))
    assert outcome(adjust_by_api(clerk_api, members[0], 500, "s1")) == 201
    assert outcome(adjust_by_api(marketer_api, members[0], 500, "s2")) == 201

    assert refusal(adjust_by_api(staff_client(clerk_a2), members[0], 1, "s3")) == ("member", 1000, 1000, 0)
    assert refusal(adjust_by_api(marketer_api, members[0], -1, "s4")) == ("member", 1000, 1000, 0)
    assert outcome(adjust_by_api(staff_client(clerk_a2), members[1], 500, "s5")) == 201  # another member

    # An admin is not refused, and what she adjusts counts in the member's total.
    assert outcome(adjust_by_api(admin_api, members[0], 5000, "s6")) == 201
    assert outcome(adjust_by_api(admin_api, members[2], 800, "s7")) == 201
    assert refusal(adjust_by_api(clerk_api, members[2], 300, "s8")) == ("member", 1000, 800, 200)
    assert outcome(adjust_by_api(clerk_api, members[2], 200, "s9")) == 201
    assert [available(member) for member in members[:3]] == [6000, 500, 1000]


# --- Asking a manager ----------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_over_her_total_a_clerk_asks_and_the_approval_counts_in_no_staff_total(
    clerk_api, clerk_a, clerk_a2, store_a, members
):
    policy(clerk_daily_adjustment_total=2000)
    extra = MemberFactory(home_store=store_a)
    approver_api = staff_client(clerk_a2)
    for i, member in enumerate(members[:4]):
        assert outcome(adjust_by_api(clerk_api, member, 500, f"c{i}")) == 201
        assert outcome(adjust_by_api(approver_api, member, -500 if i else 500, f"o{i}")) == 201  # clerk-a2: 2000 too
    assert refusal(adjust_by_api(clerk_api, members[4], 500, "over")) == ("actor", 2000, 2000, 0)

    asked = adjust_by_api(clerk_api, members[4], 500, "ask", request_approval=True)

    assert asked.status_code == 202, asked.content
    assert (asked.json()["status"], available(members[4])) == ("pending", 0)
    # The approver is over her own daily total too: an approval is not an adjustment of hers, it is not refused.
    approved = approver_api.post(f"/api/v1/adjustment-requests/{asked.json()['id']}/approve/", {}, format="json")
    assert approved.status_code == 200, approved.content
    assert available(members[4]) == 500
    entry = LedgerEntry.objects.get(member=members[4])
    assert (entry.actor, entry.reference) == ("staff:clerk-a2", f"adjustment-request:{asked.json()['id']}")
    # ... and it counts in neither clerk's total: each still has exactly 2,000 adjusted today, not 2,500.
    assert refusal(adjust_by_api(clerk_api, extra, 1, "after-a")) == ("actor", 2000, 2000, 0)
    assert refusal(adjust_by_api(approver_api, extra, 1, "after-a2")) == ("actor", 2000, 2000, 0)


@pytest.mark.django_db
def test_an_approved_request_is_not_refused_by_the_members_total_and_counts_in_it(
    clerk_api, clerk_a2, admin_api, members
):
    policy(member_daily_adjustment_total=1000)
    member = members[0]
    assert outcome(adjust_by_api(clerk_api, member, 500, "t1")) == 201
    assert outcome(adjust_by_api(staff_client(clerk_a2), member, 500, "t2")) == 201
    assert refusal(adjust_by_api(clerk_api, member, 500, "t3")) == ("member", 1000, 1000, 0)

    asked = adjust_by_api(clerk_api, member, 500, "t4", request_approval=True)
    assert asked.status_code == 202
    approved = admin_api.post(f"/api/v1/adjustment-requests/{asked.json()['id']}/approve/", {}, format="json")

    assert approved.status_code == 200, approved.content
    assert available(member) == 1500
    assert AdjustmentRequest.objects.get().status == "approved"
    assert refusal(adjust_by_api(staff_client(clerk_a2), member, -1, "t5")) == ("member", 1000, 1500, 0)


# --- The admin -----------------------------------------------------------------------------------------------------


def admin_adjust(client, member, points, **extra):
    url = f"/admin/members/member/{member.pk}/adjust/"
    key = str(client.get(url).context["form"]["key"].value())
    return client.post(url, {"points": str(points), "reason": "goodwill", "key": key, **extra})


@pytest.mark.django_db
def test_the_api_and_the_admin_share_one_daily_total_and_the_admin_form_may_ask(client, clerk_api, clerk_a, members):
    policy(clerk_daily_adjustment_total=2000)
    for i in range(3):
        assert outcome(adjust_by_api(clerk_api, members[i], 500, f"h{i}")) == 201
    client.force_login(clerk_a)
    assert admin_adjust(client, members[3], 500).status_code == 302

    refused = admin_adjust(client, members[4], 500)

    assert refused.status_code == 200
    text = refused.content.decode()
    assert "adjustment_limit" in text and "per: actor" in text and "left: 0" in text
    assert available(members[4]) == 0
    assert admin_adjust(client, members[4], 500, request_approval="on").status_code == 302
    assert (AdjustmentRequest.objects.get().points, available(members[4])) == (500, 0)


def policy_form(**overrides):
    date, time = NOW.strftime("%Y-%m-%d"), NOW.strftime("%H:%M:%S")
    form = {
        "valid_from_0": date,
        "valid_from_1": time,
        "expiry_mode": "rolling",
        "expiry_months": "12",
        "daily_cap": "5000",
        "cash_points_per_unit": "100",
        "cash_max_share": "0.50",
        "clerk_adjustment_limit": "500",
        "marketer_adjustment_limit": "5000",
        "clerk_daily_adjustment_total": "2000",
        "marketer_daily_adjustment_total": "20000",
        "member_daily_adjustment_total": "10000",
        "transfer_daily_limit": "1000",
    }
    return {**form, **{name: str(value) for name, value in overrides.items()}}


@pytest.mark.django_db
def test_the_totals_are_fixed_fields_on_a_marketers_policy_form(client):
    policy(clerk_daily_adjustment_total=1500)
    marketer = StaffUserFactory(username="marketing", role="marketer")
    client.force_login(marketer)
    form = client.get(f"{POLICIES}add/").context["adminform"].form
    assert all(form.fields[name].disabled for name in TOTALS)
    assert form.initial["clerk_daily_adjustment_total"] == 1500

    response = client.post(
        f"{POLICIES}add/",
        policy_form(
            clerk_daily_adjustment_total=20_000,
            marketer_daily_adjustment_total=200_000,
            member_daily_adjustment_total=200_000,
            daily_cap=6000,
        ),
    )

    assert response.status_code == 302
    new = PointsPolicy.objects.get(created_by="staff:marketing")
    assert (new.daily_cap, *(getattr(new, name) for name in TOTALS)) == (6000, 1500, 20_000, 10_000)


@pytest.mark.django_db
def test_an_admin_changes_the_totals_in_the_admin_up_to_the_ceilings(client, admin_user):
    client.force_login(admin_user)
    form = client.get(f"{POLICIES}add/").context["adminform"].form
    assert not any(form.fields[name].disabled for name in TOTALS)

    over = client.post(f"{POLICIES}add/", policy_form(clerk_daily_adjustment_total=20_001))
    assert over.status_code == 200
    assert list(over.context["adminform"].form.errors) == ["clerk_daily_adjustment_total"]
    assert not PointsPolicy.objects.filter(created_by="staff:boss").exists()

    response = client.post(f"{POLICIES}add/", policy_form(clerk_daily_adjustment_total=20_000))
    assert response.status_code == 302
    assert PointsPolicy.objects.get(created_by="staff:boss").clerk_daily_adjustment_total == 20_000


@pytest.mark.django_db
@pytest.mark.parametrize("role", ["marketer", "clerk", None])
@pytest.mark.parametrize("field", TOTALS)
def test_the_service_refuses_a_total_change_by_anyone_but_an_admin(role, field):
    before = PointsPolicy.objects.count()
    with pytest.raises(PermissionDeniedError) as refused:
        services.add_points_policy(actor="staff:marketing", role=role, values={field: 1})
    assert (refused.value.status, refused.value.code, list(refused.value.extra["errors"])) == (
        403,
        "permission_denied",
        [field],
    )
    assert PointsPolicy.objects.count() == before


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("field", "ceiling"),
    [
        ("clerk_daily_adjustment_total", 20_000),
        ("marketer_daily_adjustment_total", 200_000),
        ("member_daily_adjustment_total", 200_000),
    ],
)
def test_a_total_above_the_ceiling_is_refused_even_for_an_admin(field, ceiling):
    with pytest.raises(InvalidInput) as refused:
        services.add_points_policy(actor="staff:boss", role="admin", values={field: ceiling + 1})
    assert list(refused.value.errors) == [field]
    assert getattr(services.add_points_policy(actor="staff:boss", role="admin", values={field: ceiling}), field) == (
        ceiling
    )


@pytest.mark.django_db
def test_the_total_in_force_is_never_above_the_ceiling(clerk_api, members, settings):
    policy(clerk_daily_adjustment_total=10_000_000, member_daily_adjustment_total=10_000_000)
    settings.MAX_CLERK_DAILY_ADJUSTMENT_TOTAL = 600
    assert outcome(adjust_by_api(clerk_api, members[0], 500, "c1")) == 201
    assert refusal(adjust_by_api(clerk_api, members[1], 500, "c2")) == ("actor", 600, 500, 100)
    settings.MAX_CLERK_DAILY_ADJUSTMENT_TOTAL = 20_000
    settings.MAX_MEMBER_DAILY_ADJUSTMENT_TOTAL = 700
    assert refusal(adjust_by_api(clerk_api, members[0], 500, "c3")) == ("member", 700, 500, 200)


# --- The query -----------------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_both_totals_come_from_one_aggregate_query(clerk_api, admin_api, members):
    policy()
    assert outcome(adjust_by_api(clerk_api, members[0], 500, "q1")) == 201
    assert outcome(adjust_by_api(clerk_api, members[1], 300, "q2")) == 201
    assert outcome(adjust_by_api(clerk_api, members[1], -300, "q3")) == 201
    assert outcome(adjust_by_api(admin_api, members[0], 700, "q4")) == 201
    with time_machine.travel(NOW - timedelta(days=1), tick=False):  # yesterday's: in no total of today
        assert outcome(adjust_by_api(clerk_api, members[0], 100, "q5")) == 201

    with CaptureQueriesContext(connection) as queries:
        totals = adjusted_today(actor="staff:clerk-a", member_id=members[0].pk, now=NOW)

    assert totals == (1100, 1200)
    assert len(queries) == 1


@pytest.mark.postgres
@pytest.mark.django_db
def test_the_totals_query_uses_the_adjustment_indexes(members):
    """With a day of other staff's adjustments and other entries in the table, the query reads the two partial
    indexes (actor, created_at) and (member, created_at) of adjustments, not the day's entries of everyone."""
    with CaptureQueriesContext(connection) as queries:
        adjusted_today(actor="staff:clerk-a", member_id=members[0].pk, now=NOW)
    with transaction.atomic(), connection.cursor() as cursor:
        # Rows for the planner's statistics only, rolled back (their member ids are never checked: the foreign
        # key is deferred to a commit that does not come).
        LedgerEntry.objects.bulk_create(
            LedgerEntry(
                member_id=10**9 + i % 3000,
                kind="adjust" if i % 4 == 0 else "earn",
                points=10,
                balance_after=10,
                reference="adjustment",
                actor=f"staff:clerk-{i % 500}",
                created_at=NOW - timedelta(minutes=i % 1440),
            )
            for i in range(12_000)
        )
        cursor.execute("ANALYZE points_ledgerentry")
        cursor.execute("EXPLAIN " + queries[0]["sql"])
        plan = "\n".join(row[0] for row in cursor.fetchall())
        transaction.set_rollback(True)
    assert "ledger_adjust_actor_idx" in plan and "ledger_adjust_member_idx" in plan, plan


# --- Concurrency (PostgreSQL, real threads) ------------------------------------------------------------------------


def run_together(clients, members, points=500):
    """clients[i] adjusts members[i] by `points`, all released at once; the responses in order."""
    barrier, responses = threading.Barrier(len(clients)), [None] * len(clients)

    def worker(index):
        try:
            barrier.wait()
            responses[index] = adjust_by_api(clients[index], members[index], points, f"par{index}")
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(clients))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return responses


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_twelve_parallel_500s_by_one_clerk_to_twelve_members_stop_at_her_total(store_a):
    policy(clerk_daily_adjustment_total=2000)
    clerk = StaffUserFactory(username="fast-clerk", role="clerk", stores=[store_a])
    members = MemberFactory.create_batch(12, home_store=store_a)

    responses = run_together([staff_client(clerk) for _ in members], members)

    assert Counter(map(outcome, responses)) == {201: 4, "adjustment_limit": 8}
    assert {r.json()["per"] for r in responses if r.status_code == 403} == {"actor"}
    assert adjusted_points() == [500] * 4
    assert sorted(available(member) for member in members) == [0] * 8 + [500] * 4
    assert_ledger_consistent()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_twelve_parallel_500s_by_one_clerk_to_one_member_stop_at_her_total(store_a):
    policy(clerk_daily_adjustment_total=2000)
    clerk = StaffUserFactory(username="fast-clerk", role="clerk", stores=[store_a])
    member = MemberFactory(home_store=store_a)

    responses = run_together([staff_client(clerk) for _ in range(12)], [member] * 12)

    assert Counter(map(outcome, responses)) == {201: 4, "adjustment_limit": 8}
    assert adjusted_points() == [500] * 4
    assert available(member) == 2000
    assert_ledger_consistent()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_twelve_clerks_in_parallel_to_one_member_stop_at_her_total(store_a):
    policy(member_daily_adjustment_total=2000)
    clerks = [StaffUserFactory(username=f"clerk-{i}", role="clerk", stores=[store_a]) for i in range(12)]
    member = MemberFactory(home_store=store_a)

    responses = run_together([staff_client(clerk) for clerk in clerks], [member] * 12)

    assert Counter(map(outcome, responses)) == {201: 4, "adjustment_limit": 8}
    assert {r.json()["per"] for r in responses if r.status_code == 403} == {"member"}
    assert available(member) == 2000
    assert_ledger_consistent()
