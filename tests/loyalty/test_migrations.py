"""The platform's tables moved from members to loyalty without losing a row: a database holding rows in the old
layout (members 0005) is migrated forward and every row is there, under the new models and table names."""

from datetime import date

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

from loyalty.models import ApiClient, AuditEntry, JobChunk, JobRun, Message, StaffToken
from members.models import Member, StaffUser, Store

BEFORE_THE_MOVE = [("members", "0005_default_schedule"), ("loyalty", None)]


def migrate_back_to_the_old_layout():
    """Unapply the move and return the historical models of that state."""
    executor = MigrationExecutor(connection)
    executor.migrate(BEFORE_THE_MOVE)
    return executor.loader.project_state([BEFORE_THE_MOVE[0]]).apps


def latest():
    executor = MigrationExecutor(connection)
    return executor.loader.graph.leaf_nodes()


@pytest.mark.django_db(transaction=True)
def test_platform_rows_survive_the_move_from_members_to_loyalty():
    old = migrate_back_to_the_old_layout()
    tables = connection.introspection.table_names()
    assert "members_apiclient" in tables and "loyalty_apiclient" not in tables

    store = old.get_model("members", "Store").objects.create(code="S1", name="Store 1")
    user = old.get_model("members", "StaffUser").objects.create(username="clerk")
    member = old.get_model("members", "Member").objects.create(
        member_no="100000000009", referral_code="ABCDEFGH", phone="+8613800138000"
    )
    client = old.get_model("members", "ApiClient").objects.create(
        name="POS", prefix="abcd1234", key_hash="h" * 64, scopes=["members:read"]
    )
    client.stores.add(store)
    old.get_model("members", "StaffToken").objects.create(user=user, token_hash="t" * 64, expires_at=timezone.now())
    old.get_model("members", "Message").objects.create(
        member=member, recipient="+8613800138000", channel="sms", kind="otp", body="code 123456"
    )
    old.get_model("members", "AuditEntry").objects.create(
        actor="staff:boss",
        action="member.updated",
        target_type="members.member",
        target_id=str(member.pk),
        old_values={"name": ""},
        new_values={"name": "Li"},
    )
    run = old.get_model("members", "JobRun").objects.create(
        job="rfm", business_date=date(2026, 11, 30), status="done", counts={"members": 1}
    )
    old.get_model("members", "JobChunk").objects.create(run=run, start_id=1, stop_id=100, status="done")

    MigrationExecutor(connection).migrate(latest())

    tables = connection.introspection.table_names()
    assert {
        "loyalty_apiclient",
        "loyalty_apiclient_stores",
        "loyalty_stafftoken",
        "loyalty_message",
        "loyalty_auditentry",
        "loyalty_jobrun",
        "loyalty_jobchunk",
    } <= set(tables)
    assert not {"members_apiclient", "members_message", "members_jobrun"} & set(tables)
    moved = ApiClient.objects.get(name="POS")
    assert (moved.prefix, moved.scopes) == ("abcd1234", ["members:read"])
    assert list(moved.stores.values_list("code", flat=True)) == ["S1"]
    assert StaffToken.objects.get().user == StaffUser.objects.get(username="clerk")
    message = Message.objects.get()
    assert (message.member, message.kind, message.body) == (Member.objects.get(pk=member.pk), "otp", "code 123456")
    entry = AuditEntry.objects.get()
    assert (entry.action, entry.old_values, entry.new_values) == ("member.updated", {"name": ""}, {"name": "Li"})
    job_run = JobRun.objects.get()
    assert (job_run.job, job_run.status, job_run.counts) == ("rfm", "done", {"members": 1})
    assert list(JobChunk.objects.values_list("run_id", "start_id", "stop_id")) == [(job_run.pk, 1, 100)]
    # New rows get fresh ids after the old ones (the sequences moved with the tables).
    assert ApiClient.objects.create(name="POS 2", prefix="ffff0000", key_hash="k" * 64).pk > moved.pk
    assert Store.objects.get(code="S1").api_clients.get() == moved
