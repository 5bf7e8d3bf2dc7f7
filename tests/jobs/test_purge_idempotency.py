"""The nightly purge of idempotency records (SPEC §2: kept at least 30 days): records older than
IDEMPOTENCY_RETENTION_DAYS before the end of the business date are deleted, set-based, in id-range chunks, once
per business date."""

import dataclasses
import json
import os
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django_celery_beat.models import PeriodicTask

from loyalty import scheduling
from loyalty.models import JobRun
from points.models import IdempotencyRecord

SHANGHAI = ZoneInfo("Asia/Shanghai")
ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.django_db


def local(*args):
    return datetime(*args, tzinfo=SHANGHAI)


# At 04:30 on 2 June the job runs for 1 June: with 30 days kept, what was created before the end of 1 June minus
# 30 days (2026-05-03 00:00 in Shanghai) goes; from that instant on, it stays.
AGES = {
    "old-1": local(2026, 4, 1, 12),
    "old-2": local(2026, 4, 1, 12),
    "old-3": local(2026, 4, 20, 8),
    "last-deleted": local(2026, 5, 3) - timedelta(microseconds=1),
    "first-kept": local(2026, 5, 3),
    "kept-1": local(2026, 5, 20, 9),
    "kept-2": local(2026, 5, 31, 23, 59),
    "today": local(2026, 6, 2, 4),
}


@pytest.fixture
def records(db):
    rows = [
        IdempotencyRecord(
            scope="test", key=key, request_hash="h", status_code=201, response="{}", created_at=created_at
        )
        for key, created_at in AGES.items()
    ]
    return IdempotencyRecord.objects.bulk_create(rows)


def kept():
    return sorted(IdempotencyRecord.objects.values_list("key", flat=True))


def test_records_older_than_thirty_days_before_the_end_of_the_business_date_are_deleted(records):
    with time_machine.travel(local(2026, 6, 2, 4, 30), tick=False):
        run = scheduling.run_inline("purge_idempotency", triggered_by="test")

    assert (run.job, run.business_date, run.status, run.counts) == (
        "purge_idempotency",
        datetime(2026, 6, 1).date(),
        "done",
        {"deleted": 4},
    )
    assert kept() == ["first-kept", "kept-1", "kept-2", "today"]

    # The same date again (forced): nothing more goes. The next night moves the boundary by one day.
    with time_machine.travel(local(2026, 6, 2, 10), tick=False):
        again = scheduling.run_inline("purge_idempotency", triggered_by="test", force=True)
    assert (again.pk, again.status, again.chunks_total, again.counts) == (run.pk, "done", 0, {})  # nothing to do
    assert kept() == ["first-kept", "kept-1", "kept-2", "today"]
    with time_machine.travel(local(2026, 6, 3, 4, 30), tick=False):
        next_night = scheduling.run_inline("purge_idempotency", triggered_by="test")
    assert next_night.counts == {"deleted": 1}
    assert kept() == ["kept-1", "kept-2", "today"]
    assert JobRun.objects.filter(job="purge_idempotency").count() == 2


def test_a_longer_retention_keeps_more(records, settings):
    settings.IDEMPOTENCY_RETENTION_DAYS = 45  # before 2026-04-18 00:00
    with time_machine.travel(local(2026, 6, 2, 4, 30), tick=False):
        run = scheduling.run_inline("purge_idempotency", triggered_by="test")
    assert run.counts == {"deleted": 2}
    assert kept() == ["first-kept", "kept-1", "kept-2", "last-deleted", "old-3", "today"]


def test_the_purge_is_chunked_by_id_and_never_reads_the_rows(records, monkeypatch):
    definition = scheduling.job("purge_idempotency")
    monkeypatch.setitem(scheduling._jobs, "purge_idempotency", dataclasses.replace(definition, chunk_size=3))
    with time_machine.travel(local(2026, 6, 2, 4, 30), tick=False), CaptureQueriesContext(connection) as queries:
        run = scheduling.run_inline("purge_idempotency", triggered_by="test")

    assert (run.status, run.chunks_total, run.counts) == ("done", 2, {"deleted": 4})  # ids 1-4 of 8: 2 chunks
    assert sorted(run.chunks.values_list("counts", flat=True), key=json.dumps) == [{"deleted": 1}, {"deleted": 3}]
    touching = [query["sql"] for query in queries.captured_queries if "points_idempotencyrecord" in query["sql"]]
    assert [sql.split()[0] for sql in touching] == ["SELECT", "DELETE", "DELETE"]
    assert "MIN(" in touching[0].upper() and "MAX(" in touching[0].upper()  # the bounds, not the rows
    assert kept() == ["first-kept", "kept-1", "kept-2", "today"]


def test_the_purge_refuses_a_date_that_has_not_ended(records):
    with (
        time_machine.travel(local(2026, 6, 2, 4, 30), tick=False),
        pytest.raises(scheduling.BusinessDateNotEnded, match="latest date allowed is 2026-06-01"),
    ):
        scheduling.run_inline("purge_idempotency", datetime(2026, 7, 20).date(), triggered_by="test")
    assert len(kept()) == len(AGES)
    assert JobRun.objects.count() == 0


def test_the_purge_is_on_the_nightly_schedule_at_half_past_four(settings):
    task = PeriodicTask.objects.select_related("crontab").get(name="nightly: purge_idempotency")
    assert task.task == "loyalty.tasks.start_scheduled_job"
    assert json.loads(task.args) == ["purge_idempotency"]
    assert (task.crontab.minute, task.crontab.hour, str(task.crontab.timezone)) == ("30", "4", settings.TIME_ZONE)


def manage_check(retention_days):
    env = {**os.environ, "ENVIRONMENT": "test", "IDEMPOTENCY_RETENTION_DAYS": retention_days}
    return subprocess.run(  # noqa: S603 - our own manage.py with fixed arguments
        [sys.executable, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize("value", ["29", "0"])
def test_a_retention_below_thirty_days_is_refused_at_start(value):
    result = manage_check(value)
    assert result.returncode != 0
    assert "IDEMPOTENCY_RETENTION_DAYS must be at least 30 days (SPEC §2)" in result.stderr


def test_a_retention_of_thirty_days_starts():
    result = manage_check("30")
    assert result.returncode == 0, result.stderr
