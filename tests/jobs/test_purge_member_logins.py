"""The nightly purge of member logins: refresh tokens that expired before the end of the business date, and login
codes and their request locks older than a day before it, so neither table grows for ever (and old codes' phones
go). Chunked by refresh token id; once per business date."""

import json
import uuid
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django_celery_beat.models import PeriodicTask

from loyalty import scheduling
from members.models import MemberRefreshToken, OtpChallenge, OtpRequestLock

SHANGHAI = ZoneInfo("Asia/Shanghai")
pytestmark = pytest.mark.django_db


def local(*args):
    return datetime(*args, tzinfo=SHANGHAI)


# At 04:45 on 2 June the job runs for 1 June: the cutoff is 2 June 00:00 for refresh tokens, 1 June 00:00 for
# login codes and request locks.
@pytest.fixture
def rows(member_a):
    family = uuid.uuid4()
    for name, expires_at in {
        "expired-long-ago": local(2026, 4, 1),
        "last-deleted": local(2026, 6, 2) - timedelta(microseconds=1),
        "first-kept": local(2026, 6, 2),
        "valid": local(2026, 6, 30),
    }.items():
        MemberRefreshToken.objects.create(
            token_hash=name, family=family, member=member_a, token_version=0, expires_at=expires_at
        )
    for name, at in {"code-old": local(2026, 5, 31, 23, 59), "code-kept": local(2026, 6, 1)}.items():
        OtpChallenge.objects.create(phone=name, code_hash="h", created_at=at, expires_at=at + timedelta(minutes=5))
        OtpRequestLock.objects.create(key=name, seen_at=at)


def test_expired_refresh_tokens_and_day_old_codes_and_locks_are_deleted(rows):
    with time_machine.travel(local(2026, 6, 2, 4, 45), tick=False):
        run = scheduling.run_inline("purge_member_logins", triggered_by="test")

    assert (run.status, run.business_date, run.counts) == (
        "done",
        datetime(2026, 6, 1).date(),
        {"refresh_tokens": 2, "login_codes": 1, "request_locks": 1},
    )
    assert sorted(MemberRefreshToken.objects.values_list("token_hash", flat=True)) == ["first-kept", "valid"]
    assert list(OtpChallenge.objects.values_list("phone", flat=True)) == ["code-kept"]
    assert list(OtpRequestLock.objects.values_list("key", flat=True)) == ["code-kept"]


def test_the_purge_is_on_the_nightly_schedule_at_a_quarter_to_five(settings):
    task = PeriodicTask.objects.select_related("crontab").get(name="nightly: purge_member_logins")
    assert task.task == "loyalty.tasks.start_scheduled_job"
    assert json.loads(task.args) == ["purge_member_logins"]
    assert (task.crontab.minute, task.crontab.hour, str(task.crontab.timezone)) == ("45", "4", settings.TIME_ZONE)
