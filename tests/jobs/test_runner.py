"""The job runner: once per (job, date), chunks done exactly once, a failed run resumed from its undone chunks."""

from datetime import date, datetime
from zoneinfo import ZoneInfo

import pytest
import time_machine

from loyalty import scheduling
from loyalty.models import JobChunk, JobRun
from loyalty.tasks import start_scheduled_job
from tests.factories import MemberFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def counting_job(monkeypatch, store_a):
    """A job over members that counts the members of each chunk, and fails once on the chunk holding `fail_on`."""
    calls, state = [], {"fail_on": None}

    def run_chunk(as_of, start, stop, params):
        if state["fail_on"] is not None and start <= state["fail_on"] < stop:
            state["fail_on"] = None
            raise RuntimeError("database went away")
        calls.append((start, stop))
        return {"members": sum(1 for m in members if start <= m.pk < stop)}

    members = MemberFactory.create_batch(7, home_store=store_a)
    definition = scheduling.JobDefinition(
        name="counting",
        description="test",
        chunk_size=3,
        bounds=lambda as_of, params: (members[0].pk, members[-1].pk),
        run_chunk=run_chunk,
    )
    monkeypatch.setitem(scheduling._jobs, "counting", definition)
    return members, calls, state


def test_a_job_runs_once_per_date_in_chunks(counting_job):
    members, calls, _ = counting_job
    run = scheduling.run_inline("counting", date(2026, 5, 1))
    assert (run.status, run.chunks_total, run.chunks_done, run.counts) == ("done", 3, 3, {"members": 7})
    again = scheduling.run_inline("counting", date(2026, 5, 1))
    assert again.pk == run.pk and len(calls) == 3  # done for the date: nothing runs twice
    forced = scheduling.run_inline("counting", date(2026, 5, 1), force=True)
    assert forced.counts == {"members": 7} and len(calls) == 6
    assert JobRun.objects.count() == 1


def test_a_failed_run_resumes_from_its_undone_chunks(counting_job, django_capture_on_commit_callbacks):
    members, calls, state = counting_job
    state["fail_on"] = members[4].pk
    with pytest.raises(RuntimeError):
        scheduling.run_inline("counting", date(2026, 5, 1))
    run = JobRun.objects.get()
    assert run.status == "failed" and "database went away" in run.error
    assert sorted(JobChunk.objects.values_list("status", flat=True)) == ["done", "failed", "running"]
    next_night = datetime(2026, 5, 3, 2, 0, tzinfo=ZoneInfo("Asia/Shanghai"))
    with time_machine.travel(next_night, tick=False), django_capture_on_commit_callbacks(execute=True):
        start_scheduled_job("counting", as_of="2026-05-02")  # the next night resumes the failed run too
    run.refresh_from_db()
    assert (run.status, run.counts) == ("done", {"members": 7})
    assert len(calls) == 3 + 3  # 1 before the failure + the other 2 of 1 May, then the 3 chunks of 2 May
    assert JobChunk.objects.filter(run=run, attempts=1).count() == 3


def test_job_runs_are_listed_in_the_admin(counting_job, client, admin_user):
    run = scheduling.run_inline("counting", date(2026, 5, 1))
    client.force_login(admin_user)
    listing = client.get("/admin/loyalty/jobrun/")
    assert listing.status_code == 200
    assert "counting" in listing.content.decode()
    detail = client.get(f"/admin/loyalty/jobrun/{run.pk}/change/")
    assert detail.status_code == 200
    assert detail.content.decode().count('<td class="field-status">') == 3  # its three chunks
