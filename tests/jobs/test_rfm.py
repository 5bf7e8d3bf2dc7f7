"""RFM against hand-computed expectations (SPEC §4): ties, refunds, the window, members with no purchase,
lifecycle stages, and the business time zone."""

from datetime import date, datetime
from zoneinfo import ZoneInfo

import pytest
import time_machine

from loyalty.scheduling import run_inline
from members.models import RfmSnapshot
from tests.factories import MemberFactory
from tests.points.helpers import purchase, refund

SHANGHAI, UTC = ZoneInfo("Asia/Shanghai"), ZoneInfo("UTC")
AS_OF = date(2026, 6, 30)
pytestmark = [pytest.mark.postgres, pytest.mark.django_db]


def local(*args):
    return datetime(*args, tzinfo=SHANGHAI)


@pytest.fixture
def members(store_a):
    long_ago = local(2024, 1, 1, 10)
    people = {name: MemberFactory(home_store=store_a, joined_at=long_ago, name=name) for name in "ABCDEG"}
    people["F"] = MemberFactory(home_store=store_a, joined_at=local(2026, 6, 20, 10), name="F")
    with time_machine.travel(local(2026, 6, 30, 12), tick=False):
        purchase(people["A"], "100.00", occurred_at=local(2026, 6, 29, 10))
        purchase(people["A"], "200.00", occurred_at=local(2026, 5, 1, 10))
        purchase(people["B"], "50.00", occurred_at=local(2026, 6, 29, 20))
        purchase(people["C"], "1000.00", occurred_at=local(2026, 1, 10, 10))
        refunded = purchase(people["C"], "80.00", occurred_at=local(2026, 3, 1, 10))
        refund(refunded["id"], "80.00")  # fully refunded: does not count
        purchase(people["D"], "70.00", occurred_at=local(2025, 6, 30, 10))  # the day before the window
        partly = purchase(people["F"], "40.00", occurred_at=local(2026, 6, 25, 10))
        refund(partly["id"], "10.00")  # net 30
        # 23:30 UTC on 29 June is 07:30 on 30 June in Shanghai: recency 0.
        purchase(people["G"], "500.00", occurred_at=datetime(2026, 6, 29, 23, 30, tzinfo=UTC))
        # 23:30 UTC on 30 June is already 1 July in Shanghai: after the as-of date, it does not count.
        purchase(people["G"], "999.00", occurred_at=datetime(2026, 6, 30, 23, 30, tzinfo=UTC))
    return people


def snapshot(members):
    rows = {row.member_id: row for row in RfmSnapshot.objects.filter(as_of=AS_OF)}
    return {
        name: (
            rows[m.pk].recency_days,
            rows[m.pk].frequency,
            str(rows[m.pk].monetary),
            rows[m.pk].r_score,
            rows[m.pk].f_score,
            rows[m.pk].m_score,
            rows[m.pk].segment,
            rows[m.pk].lifecycle,
        )
        for name, m in members.items()
    }


EXPECTED = {
    # recency, frequency, monetary, r, f, m, segment, lifecycle
    "A": (1, 2, "300.00", 4, 5, 3, "general_value", "active"),
    "B": (1, 1, "50.00", 4, 4, 2, "general_develop", "active"),
    "C": (171, 1, "1000.00", 1, 4, 5, "important_winback", "dormant"),
    "D": (None, 0, "0.00", None, None, None, "inactive", "lost"),
    "E": (None, 0, "0.00", None, None, None, "inactive", "never_purchased"),
    "F": (5, 1, "30.00", 2, 4, 1, "general_develop", "new"),
    "G": (0, 1, "500.00", 5, 4, 4, "important_develop", "active"),
}


def test_rfm_matches_the_hand_computed_expectations(members):
    run = run_inline("rfm", AS_OF, params={"window_days": 365})
    assert run.status == "done"
    assert run.counts == {"members": 7, "buyers": 5}
    assert snapshot(members) == EXPECTED


def test_running_twice_for_the_same_date_gives_identical_rows_and_no_duplicates(members):
    run_inline("rfm", AS_OF)
    first = snapshot(members)
    again = run_inline("rfm", AS_OF)  # already done: nothing happens
    assert again.counts == {"members": 7, "buyers": 5}
    forced = run_inline("rfm", AS_OF, force=True)
    assert forced.status == "done"
    assert snapshot(members) == first == EXPECTED
    assert RfmSnapshot.objects.filter(as_of=AS_OF).count() == 7


def test_a_shorter_window_and_the_member_representation(members, admin_api):
    run_inline("rfm", AS_OF, params={"window_days": 30})
    rows = snapshot(members)
    assert rows["C"][:3] == (None, 0, "0.00")  # January is outside a 30-day window
    assert rows["A"][:3] == (1, 1, "100.00")
    body = admin_api.get(f"/api/v1/members/{members['G'].pk}/").json()
    assert body["rfm"] == {
        "as_of": "2026-06-30",
        "recency_days": 0,
        "frequency": 1,
        "monetary": "500.00",
        "r_score": rows["G"][3],
        "f_score": rows["G"][4],
        "m_score": rows["G"][5],
        "segment": rows["G"][6],
        "lifecycle": "active",
    }
    listed = admin_api.get("/api/v1/members/", {"lifecycle": "new"}).json()["results"]
    assert [m["id"] for m in listed] == [str(members["F"].pk)]


def test_rfm_report_json_csv_and_per_member_csv(members, admin_api, marketer_api, clerk_api):
    run_inline("rfm", AS_OF)
    report = marketer_api.get("/api/v1/reports/rfm/")
    assert report.status_code == 200
    body = report.json()
    assert (body["as_of"], body["members"]) == ("2026-06-30", 7)
    segments = {row["key"]: row["members"] for row in body["segments"]}
    assert segments == {
        "important_value": 0,
        "important_develop": 1,
        "important_retain": 0,
        "important_winback": 1,
        "general_value": 1,
        "general_develop": 2,
        "general_retain": 0,
        "general_winback": 0,
        "inactive": 2,
    }
    assert {row["key"]: row["members"] for row in body["lifecycle"]} == {
        "new": 1,
        "active": 3,
        "dormant": 1,
        "lost": 1,
        "never_purchased": 1,
    }
    assert clerk_api.get("/api/v1/reports/rfm/").status_code == 403
    counts_csv = admin_api.get("/api/v1/reports/rfm/", {"format": "csv"})
    assert counts_csv["Content-Type"].startswith("text/csv")
    assert "segment,general_develop,2,0.2857" in b"".join(counts_csv.streaming_content).decode()
    detail = admin_api.get("/api/v1/reports/rfm/", {"format": "csv", "detail": "members"})
    lines = b"".join(detail.streaming_content).decode("utf-8-sig").splitlines()
    assert lines[0] == "member_no,external_id,recency_days,frequency,monetary,r_score,f_score,m_score,segment,lifecycle"
    g = members["G"]
    assert f"{g.member_no},,0,1,500.00,5,4,4,important_develop,active" in lines
    assert len(lines) == 8
    assert admin_api.get("/api/v1/reports/rfm/", {"as_of": "June"}).json()["code"] == "invalid"


def test_job_runs_are_listed(members, admin_api):
    run_inline("rfm", AS_OF)
    runs = admin_api.get("/api/v1/jobs/", {"job": "rfm"}).json()["results"]
    assert [(r["job"], r["business_date"], r["status"], r["counts"]) for r in runs] == [
        ("rfm", "2026-06-30", "done", {"members": 7, "buyers": 5})
    ]
