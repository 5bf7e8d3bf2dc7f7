"""The reminders job on PostgreSQL: win-back messages from real RFM runs (the rfm job needs PostgreSQL), and a
Celery worker killed with SIGKILL in the middle of the job: started again, it finishes with every member greeted
and given her birthday bonus exactly once."""

import dataclasses
import time
from datetime import date

import pytest
import time_machine
from django.db.models import Count
from django.utils import timezone

from loyalty import scheduling
from loyalty.models import JobChunk, JobStatus, Message
from loyalty.tasks import dispatch_job
from points.models import LedgerEntry
from tests.factories import MemberFactory
from tests.jobs.conftest import wait_for
from tests.jobs.test_worker import VISIBILITY_TIMEOUT, chunk_in_flight, open_transactions, wait_until_done
from tests.messages.conftest import at
from tests.points.helpers import purchase

pytestmark = pytest.mark.postgres


@pytest.mark.django_db
def test_a_member_who_became_dormant_in_the_nights_rfm_run_is_asked_back(store_a, django_capture_on_commit_callbacks):
    with time_machine.travel(at(2025, 1, 5, 12), tick=False):
        drifting = MemberFactory(home_store=store_a, phone="+8613800000001", name="Wang Fang", consent_sms=True)
        regular = MemberFactory(home_store=store_a, phone="+8613800000002", consent_sms=True)
    with time_machine.travel(at(2026, 3, 11, 12), tick=False):
        purchase(drifting, "100.00")  # 2026-03-11: 90 days before 2026-06-09, 91 before 2026-06-10
    with time_machine.travel(at(2026, 6, 1, 12), tick=False):
        purchase(regular, "100.00")
    for as_of in (date(2026, 6, 9), date(2026, 6, 10)):
        with time_machine.travel(at(2026, 6, as_of.day + 1, 2), tick=False):
            scheduling.run_inline("rfm", as_of)

    with time_machine.travel(at(2026, 6, 11, 9), tick=False), django_capture_on_commit_callbacks(execute=True):
        done = scheduling.run_inline("reminders", date(2026, 6, 11))

    assert done.counts["win_back"] == 1
    sms = Message.objects.filter(kind="win_back", channel="sms")
    assert list(sms.values_list("member_id", "status", "dedupe_key", "body")) == [
        (
            drifting.pk,
            "sent",
            "rfm:2026-06-10",
            "Wang Fang, we miss you! A welcome-back treat is waiting for you.",
        )
    ]


MEMBERS, CHUNK_SIZE = 40, 5


@pytest.mark.django_db(transaction=True)
def test_a_worker_killed_mid_reminders_and_started_again_greets_everyone_once(
    seeded_templates, store_a, start_worker, monkeypatch
):
    today = timezone.localdate()
    people = [
        MemberFactory(
            home_store=store_a, phone=f"+861380000{i:04d}", birthday=today.replace(year=1990), consent_sms=True
        )
        for i in range(MEMBERS)
    ]
    definition = scheduling.job("reminders")
    monkeypatch.setitem(scheduling._jobs, "reminders", dataclasses.replace(definition, chunk_size=CHUNK_SIZE))
    env = {"JOB_CHUNK_PAUSE_SECONDS": 1, "CELERY_VISIBILITY_TIMEOUT": VISIBILITY_TIMEOUT}
    first = start_worker(**env)
    run = dispatch_job("reminders", today, triggered_by="test")
    assert run.chunks_total == -(-(people[-1].pk - people[0].pk + 1) // CHUNK_SIZE) >= 5

    def two_done_and_one_taken():
        done = JobChunk.objects.filter(run=run, status=JobStatus.DONE).count()
        return done >= 2 and chunk_in_flight(max_age=0.5)

    wait_for(two_done_and_one_taken, 30, interval=0.02, message="two chunks done and a third taken")
    first.kill()
    killed_at = time.monotonic()
    wait_for(lambda: open_transactions() == 0, 10, message="the killed worker's transaction to end")
    done_chunks = JobChunk.objects.filter(run=run, status=JobStatus.DONE).count()
    assert 2 <= done_chunks < run.chunks_total
    greeted = Message.objects.filter(kind="birthday", channel="sms").count()
    assert greeted == LedgerEntry.objects.filter(reason="birthday").count() < MEMBERS  # the killed chunk: nothing

    time.sleep(max(0.0, killed_at + VISIBILITY_TIMEOUT + 0.5 - time.monotonic()))
    second = start_worker(**env)
    wait_until_done(run, 60, [first, second])

    assert set(run.chunks.values_list("status", "attempts")) == {(JobStatus.DONE, 1)}
    assert run.counts["birthday"] == MEMBERS
    for rows in (
        Message.objects.filter(kind="birthday", channel="sms"),
        Message.objects.filter(kind="birthday", channel="inbox"),
        LedgerEntry.objects.filter(reason="birthday"),
    ):
        per_member = rows.values("member_id").annotate(n=Count("id"))
        assert sorted((row["member_id"], row["n"]) for row in per_member) == [(p.pk, 1) for p in people]
