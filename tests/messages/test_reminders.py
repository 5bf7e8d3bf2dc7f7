"""The reminders job (09:00): points expiring in 30 and in 7 days, birthday greetings with the birthday bonus
awarded in the same run, tier downgrade warnings, win-back messages after the last RFM run. Selected set-based per
chunk of member ids, written in bulk; a date run again sends nothing twice, and a run that failed mid-way resumes
without doubles."""

import dataclasses
from datetime import date, timedelta

import pytest
import time_machine
from django.core.management import CommandError, call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext

from loyalty import scheduling
from loyalty.models import JobRun, JobStatus, Message
from members.models import MemberStatus, RfmSnapshot
from members.reminders import reminder_sources
from points.models import EntryKind, Event, LedgerEntry
from tests.factories import MemberFactory
from tests.messages.conftest import at
from tests.points.helpers import adjust, purchase

pytestmark = pytest.mark.django_db

TODAY = date(2026, 6, 10)
NINE = at(2026, 6, 10, 9, 0)


@pytest.fixture
def run(django_capture_on_commit_callbacks):
    """Run the reminders job for a date at 09:00 that day, with what it sends after commit."""

    def run_reminders(as_of=TODAY, **options):
        clock = at(as_of.year, as_of.month, as_of.day, 9, 0)
        with time_machine.travel(clock, tick=False), django_capture_on_commit_callbacks(execute=True):
            return scheduling.run_inline("reminders", as_of, **options)

    return run_reminders


def member(phone, **values):
    return MemberFactory(phone=phone, name=values.pop("name", "Wang Fang"), **values)


def earn_on(person, day, points):
    with time_machine.travel(at(day.year, day.month, day.day, 15), tick=False):
        adjust(person, points)


def messages(kind, channel="sms"):
    rows = Message.objects.filter(kind=kind, channel=channel).order_by("member_id", "id")
    return list(rows.values_list("member__phone", "status", "status_reason", "body"))


# --- points expiring ---------------------------------------------------------------------------------------------


def test_points_expiring_in_30_and_in_7_days_are_announced_with_their_amount_and_date(run):
    wang = member("+8613800000001")
    li = member("+8613800000002", name="Li Lei")
    # rolling 12 months: earned on 2025-07-10, the points last until 2026-07-10 (30 days after 2026-06-10)
    earn_on(wang, date(2025, 7, 10), 120)
    earn_on(wang, date(2025, 6, 17), 30)  # last day 2026-06-17: 7 days
    earn_on(wang, date(2025, 6, 18), 999)  # last day 2026-06-18: 8 days, not today
    earn_on(li, date(2025, 6, 17), 40)
    earn_on(li, date(2025, 6, 17), 2)  # two lots on one date: one reminder of their sum

    done = run()

    assert (done.status, done.counts["points_expiring"]) == ("done", 3)
    assert messages("points_expiring") == [
        (
            "+8613800000001",
            "sent",
            "",
            "Wang Fang, 120 of your points expire on 2026-07-10. You have 1149 points available: use them before then.",
        ),
        (
            "+8613800000001",
            "sent",
            "",
            "Wang Fang, 30 of your points expire on 2026-06-17. You have 1149 points available: use them before then.",
        ),
        (
            "+8613800000002",
            "sent",
            "",
            "Li Lei, 42 of your points expire on 2026-06-17. You have 42 points available: use them before then.",
        ),
    ]
    assert sorted(
        Message.objects.filter(kind="points_expiring", channel="sms").values_list("dedupe_key", flat=True)
    ) == [
        "2026-06-17:7",
        "2026-06-17:7",
        "2026-07-10:30",
    ]


def test_running_a_date_again_sends_nothing_twice(run, provider):
    wang = member("+8613800000001", birthday=date(1990, 6, 10), consent_sms=True)
    earn_on(wang, date(2025, 7, 10), 120)
    first = run()
    written = Message.objects.count()
    assert (first.counts["points_expiring"], first.counts["birthday"], written) == (1, 1, 4)
    again = run(force=True)
    assert again.counts == {
        "win_back": 0,
        "points_expiring": 1,
        "birthday": 1,
        "tier_downgrade_warning": 0,
        "coupons_expiring": 0,
        "birthday_coupons": 0,
    }  # found again, written no more
    assert Message.objects.count() == written
    assert LedgerEntry.objects.filter(member=wang, reason="birthday").count() == 1
    assert len(provider.calls) == 2


# --- birthdays -----------------------------------------------------------------------------------------------------


def test_a_birthday_greeting_comes_with_the_years_bonus_given_in_the_same_run_once(run):
    wang = member("+8613800000001", birthday=date(1990, 6, 10), consent_sms=True)
    quiet = member("+8613800000002", birthday=date(1985, 6, 10), consent_sms=False, name="Zhou")
    frozen = member("+8613800000003", birthday=date(1980, 6, 10), consent_sms=True, status=MemberStatus.FROZEN)
    member("+8613800000004", birthday=date(1990, 6, 11), consent_sms=True)  # tomorrow

    done = run()

    assert done.counts["birthday"] == 3
    assert messages("birthday") == [
        ("+8613800000001", "sent", "", "Happy birthday, Wang Fang! We have added 50 birthday points to your account."),
        (
            "+8613800000002",
            "skipped",
            "no consent for sms",
            "Happy birthday, Zhou! We have added 50 birthday points to your account.",
        ),
        (
            "+8613800000003",
            "skipped",
            "member is frozen",
            "Happy birthday, Wang Fang! We have added 0 birthday points to your account.",
        ),
    ]
    assert messages("birthday", channel="inbox")[0][1:3] == ("sent", "")
    bonus = LedgerEntry.objects.filter(kind=EntryKind.EARN, reason="birthday")
    assert sorted(bonus.values_list("member_id", "points")) == [(wang.pk, 50), (quiet.pk, 50)]
    assert not Event.objects.filter(member=frozen).exists()
    run(force=True)
    assert bonus.count() == 2 and Message.objects.filter(kind="birthday").count() == 6


@pytest.mark.parametrize(("as_of", "greeted"), [(date(2027, 2, 28), True), (date(2028, 2, 28), False)])
def test_a_member_born_on_29_february_is_greeted_on_the_28th_when_the_year_has_no_29th(run, as_of, greeted):
    member("+8613800000001", birthday=date(2000, 2, 29), consent_sms=True)
    with time_machine.travel(at(as_of.year, as_of.month, as_of.day, 9), tick=False):
        done = run(as_of)
    assert done.counts["birthday"] == (1 if greeted else 0)


# --- tier downgrade warnings ---------------------------------------------------------------------------------------


def test_a_downgrade_warning_goes_30_days_before_the_hold_ends_when_her_growth_would_not_keep_the_tier(run):
    slipping = member("+8613800000001", consent_sms=False)
    keeping = member("+8613800000002")
    later = member("+8613800000003")
    with time_machine.travel(at(2025, 7, 10, 12), tick=False):
        purchase(slipping, "4990.00")  # gold (5000), held until 2026-07-10
        purchase(keeping, "4990.00")
    with time_machine.travel(at(2025, 7, 11, 12), tick=False):
        purchase(later, "4990.00")  # held until 2026-07-11: 31 days away
    with time_machine.travel(at(2026, 3, 1, 12), tick=False):
        purchase(keeping, "3990.00")  # 4000 still counts on 2026-07-10: gold kept
        purchase(slipping, "500.00")  # 510 counts: silver's 800 is not met either

    done = run()

    assert done.counts["tier_downgrade_warning"] == 1
    assert messages("tier_downgrade_warning") == [
        (
            "+8613800000001",
            "sent",
            "",
            "Wang Fang, your 金卡 tier is reviewed on 2026-07-10: 3490 more growth keeps "
            "it, otherwise it becomes 普通会员.",
        ),
    ]
    assert Message.objects.get(kind="tier_downgrade_warning", channel="sms").dedupe_key == "hold:2026-07-10"
    with time_machine.travel(at(2026, 6, 11, 9), tick=False):
        assert run(date(2026, 6, 11)).counts["tier_downgrade_warning"] == 2  # she again (no doubles) and `later`
    assert [row[0] for row in messages("tier_downgrade_warning")] == ["+8613800000001", "+8613800000003"]


# --- win-back ------------------------------------------------------------------------------------------------------


def rfm_row(person, as_of, lifecycle):
    RfmSnapshot.objects.create(member=person, as_of=as_of, lifecycle=lifecycle)


def completed_rfm(*days):
    for day in days:
        JobRun.objects.create(job="rfm", business_date=day, status=JobStatus.DONE)


def test_members_who_became_dormant_or_lost_in_the_last_rfm_run_are_asked_back_once(run):
    dormant = member("+8613800000001", consent_sms=True)
    lost = member("+8613800000002", consent_sms=True)
    still = member("+8613800000003", consent_sms=True)
    active = member("+8613800000004", consent_sms=True)
    previous, latest = date(2026, 6, 8), date(2026, 6, 9)
    for person, before, now in [
        (dormant, "active", "dormant"),
        (lost, "dormant", "lost"),
        (still, "dormant", "dormant"),
        (active, "active", "active"),
    ]:
        rfm_row(person, previous, before)
        rfm_row(person, latest, now)
    completed_rfm(previous, latest)

    assert run().counts["win_back"] == 2
    assert messages("win_back") == [
        ("+8613800000001", "sent", "", "Wang Fang, we miss you! A welcome-back treat is waiting for you."),
        ("+8613800000002", "sent", "", "Wang Fang, we miss you! A welcome-back treat is waiting for you."),
    ]
    assert set(Message.objects.filter(kind="win_back").values_list("dedupe_key", flat=True)) == {"rfm:2026-06-09"}
    with time_machine.travel(at(2026, 6, 11, 9), tick=False):
        run(date(2026, 6, 11))  # the same RFM run is still the last: nobody is asked twice
    assert Message.objects.filter(kind="win_back").count() == 4


def test_there_is_no_win_back_before_two_rfm_runs(run):
    person = member("+8613800000001", consent_sms=True)
    rfm_row(person, date(2026, 6, 9), "dormant")
    completed_rfm(date(2026, 6, 9))
    assert run().counts["win_back"] == 0


# --- the job -------------------------------------------------------------------------------------------------------


def test_the_selection_is_set_based_its_queries_do_not_grow_with_the_members_due(django_capture_on_commit_callbacks):
    def queries_for(members, as_of):
        people = [member(f"+86138{as_of.day:02d}0000{i:02d}") for i in range(members)]
        for person in people:
            earn_on(person, as_of - timedelta(days=365) + timedelta(days=30), 10)
        clock = at(as_of.year, as_of.month, as_of.day, 9)
        with (
            time_machine.travel(clock, tick=False),
            django_capture_on_commit_callbacks(execute=False),
            CaptureQueriesContext(connection) as captured,  # the run: selection and writes, not delivery
        ):
            done = scheduling.run_inline("reminders", as_of)
        assert (done.counts["points_expiring"], done.counts["messages_queued"]) == (members, members)
        return len(captured)

    few = queries_for(3, date(2026, 6, 10))  # (the first run also reads the templates into the cache)
    assert queries_for(30, date(2026, 6, 20)) <= few


def test_a_run_that_failed_mid_way_resumes_from_its_undone_chunks_without_doubles(run, monkeypatch):
    people = [member(f"+861380000{i:04d}", birthday=date(1990, 6, 10), consent_sms=True) for i in range(6)]
    definition = scheduling.job("reminders")
    monkeypatch.setitem(scheduling._jobs, "reminders", dataclasses.replace(definition, chunk_size=2))
    source = reminder_sources["birthday"]
    failing = {"on": people[3].pk}

    def flaky(as_of, start, stop, now):
        if failing["on"] is not None and start <= failing["on"] < stop:
            failing["on"] = None
            raise RuntimeError("worker lost")
        return source.requests(as_of, start, stop, now)

    monkeypatch.setitem(reminder_sources, "birthday", dataclasses.replace(source, requests=flaky))
    with pytest.raises(RuntimeError):
        run()
    first = JobRun.objects.get(job="reminders")
    assert first.status == "failed"
    greeted = set(Message.objects.filter(kind="birthday", channel="sms").values_list("member_id", flat=True))
    assert greeted == {people[0].pk, people[1].pk}  # the chunk that failed wrote nothing: no bonus, no message
    assert LedgerEntry.objects.filter(reason="birthday").count() == 2

    resumed = run()

    assert (resumed.pk, resumed.status, resumed.counts["birthday"]) == (first.pk, "done", 6)
    per_member = Message.objects.filter(kind="birthday", channel="sms").values_list("member_id", flat=True)
    assert sorted(per_member) == sorted(person.pk for person in people)
    assert LedgerEntry.objects.filter(reason="birthday").count() == 6


def test_the_job_runs_for_today_by_hand_and_refuses_tomorrow(run):
    with time_machine.travel(NINE, tick=False):
        with pytest.raises(CommandError, match="The latest date allowed is 2026-06-10"):
            call_command("run_job", "reminders", "--as-of", "2026-06-11")
        call_command("run_job", "reminders")
    assert JobRun.objects.get(job="reminders").business_date == TODAY
