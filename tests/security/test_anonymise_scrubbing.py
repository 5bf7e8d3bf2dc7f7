"""Finding 8: anonymising a member left her personal data behind. The first login code (sent before she was a
member, so the message has no member) kept her phone and the code; audit rows kept her old and new phone, name,
email and birthday; the audit row of the login that registered her named her phone as its actor
(`member-login:+86…`). Now anonymise scrubs the messages to any phone she had, redacts her values in the audit rows
about her and about the duplicates merged into her (which fields changed, by whom and when stay), erases those
duplicates' personal data, and no actor names a phone. Everything goes through the API and the admin, as staff
reading the message and audit logs afterwards would."""

import importlib
import json
import re
from datetime import timedelta

import pytest
from django.apps import apps
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from loyalty import events
from loyalty.audit import REDACTED
from loyalty.messaging import send_message
from loyalty.models import AuditEntry, Message
from members.models import Member, MemberStatus, OtpChallenge
from members.services import anonymise_member
from tests.factories import MemberFactory

pytestmark = pytest.mark.django_db

OTP_URL = "/api/v1/auth/otp"
TOKEN_URL = "/api/v1/auth/member-token"
MEMBERS_URL = "/api/v1/members/"
MESSAGES_URL = "/api/v1/messages/"
AUDIT_ADMIN = "/admin/loyalty/auditentry/"
CODE_RE = re.compile(r"\b(\d{6})\b")

FIRST_PHONE, FIRST_NATIONAL = "+8613800138000", "13800138000"
SECOND_PHONE, SECOND_NATIONAL = "+8613900139001", "13900139001"
DUPLICATE_PHONE, DUPLICATE_NATIONAL = "+8613700137002", "13700137002"
NAME, DUPLICATE_NAME = "王芳", "Fang Wang"
EMAIL, BIRTHDAY, EXTERNAL_ID = "fang.w@example.org", "1990-05-17", "CRM-7788"
BYSTANDER_PHONE = "+8613600136000"  # asks for a code and never logs in: not hers


def request_code(phone):
    """Ask for a login code as anyone can, and read it from the development outbox (the message log)."""
    response = APIClient().post(OTP_URL, {"phone": phone}, format="json")
    assert response.status_code == 202, response.content
    body = Message.objects.filter(recipient=phone, kind="otp").latest("id").body
    return CODE_RE.search(body).group(1)


def log_in(phone):
    """Log in by phone (registering her when the phone is new); an API client with her member token."""
    code = request_code(phone)
    response = APIClient().post(TOKEN_URL, {"phone": phone, "code": code}, format="json")
    assert response.status_code == 200, response.content
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {response.json()['access']}")
    return client, Member.objects.get(pk=response.json()["member"]["id"]), code


def everything_kept():
    """Every message and audit row as text: recipient, subject, body; actor, old and new values."""
    messages = [" ".join(row) for row in Message.objects.values_list("recipient", "subject", "body")]
    audits = [
        f"{actor} {json.dumps(old, ensure_ascii=False)} {json.dumps(new, ensure_ascii=False)}"
        for actor, old, new in AuditEntry.objects.values_list("actor", "old_values", "new_values")
    ]
    return "\n".join(messages + audits)


def audit_rows_of(member):
    return AuditEntry.objects.filter(target_type="members.member", target_id=str(member.pk)).order_by("id")


@pytest.fixture
def her_story(admin_api, member_b):
    """She registers by logging in, fills in her profile, a clerk changes her phone, she logs in on the new one;
    a second card of hers (registered the same way, with her email and a CRM id) is merged into her. A bystander
    asks for a code, and member_b gets a message: neither is hers."""
    me, her, first_code = log_in(FIRST_PHONE)
    assert me.patch("/api/v1/me/", {"name": NAME, "birthday": BIRTHDAY}, format="json").status_code == 200
    response = admin_api.patch(f"{MEMBERS_URL}{her.pk}/", {"phone": "139 0013 9001"}, format="json")
    assert response.status_code == 200, response.content
    _, _, second_code = log_in(SECOND_PHONE)

    second_card, duplicate, duplicate_code = log_in(DUPLICATE_PHONE)
    body = {"name": DUPLICATE_NAME, "email": EMAIL, "birthday": BIRTHDAY}
    assert second_card.patch("/api/v1/me/", body, format="json").status_code == 200
    response = admin_api.patch(f"{MEMBERS_URL}{duplicate.pk}/", {"external_id": EXTERNAL_ID}, format="json")
    assert response.status_code == 200, response.content
    response = admin_api.post(
        f"{MEMBERS_URL}{her.pk}/merge/", {"duplicate": str(duplicate.pk), "reason": "one person"}, format="json"
    )
    assert response.status_code == 201, response.content

    request_code(BYSTANDER_PHONE)
    send_message(channel="sms", kind="notice", recipient=member_b.phone, member=member_b, body="Hello member B")
    her.refresh_from_db()
    assert (her.phone, her.email, her.external_id) == (SECOND_PHONE, EMAIL, EXTERNAL_ID)  # handed by the merge
    return her, duplicate, [first_code, second_code, duplicate_code]


def anonymise(admin_api, member):
    response = admin_api.post(f"{MEMBERS_URL}{member.pk}/anonymise/", {"reason": "her request"}, format="json")
    assert response.status_code == 200, response.content
    return response


def test_no_message_or_audit_row_keeps_her_phone_name_email_birthday_or_code(admin_api, her_story):
    her, _, codes = her_story
    kept = everything_kept()
    personal = [FIRST_PHONE, FIRST_NATIONAL, SECOND_PHONE, SECOND_NATIONAL, DUPLICATE_PHONE, DUPLICATE_NATIONAL]
    personal += [NAME, DUPLICATE_NAME, EMAIL, BIRTHDAY, EXTERNAL_ID, *codes]
    assert [value for value in personal if value in kept] == personal  # all there before: the test sees them

    anonymise(admin_api, her)

    kept = everything_kept()
    assert [value for value in personal if value in kept] == []
    assert not re.search(r"member-login|\+86", "\n".join(AuditEntry.objects.values_list("actor", flat=True)))


def test_her_messages_are_scrubbed_and_the_others_stay(admin_api, her_story, member_b):
    her, _, _ = her_story

    anonymise(admin_api, her)

    rows = list(Message.objects.order_by("id").values_list("recipient", "subject", "body"))
    # three login codes of hers at three phones, the first of each sent before a member had the phone
    assert rows[:3] == [("anonymised", "", "")] * 3
    assert rows[3][0] == BYSTANDER_PHONE and "Your login code is" in rows[3][2]
    assert rows[4] == (member_b.phone, "", "Hello member B")
    assert len(rows) == 5
    for phone in (FIRST_NATIONAL, SECOND_NATIONAL, DUPLICATE_NATIONAL):
        listed = admin_api.get(MESSAGES_URL, {"recipient": phone})
        assert (listed.status_code, listed.json()["results"]) == (200, [])
    assert not OtpChallenge.objects.filter(phone__in=[FIRST_PHONE, SECOND_PHONE, DUPLICATE_PHONE]).exists()
    assert OtpChallenge.objects.filter(phone=BYSTANDER_PHONE).count() == 1


def test_her_audit_rows_keep_what_changed_by_whom_and_when_with_the_values_redacted(admin_api, her_story):
    her, duplicate, _ = her_story
    before = {
        member.pk: list(audit_rows_of(member).values_list("id", "action", "created_at")) for member in (her, duplicate)
    }

    anonymise(admin_api, her)

    after = {
        member.pk: list(audit_rows_of(member).values_list("id", "action", "created_at")) for member in (her, duplicate)
    }
    assert after[duplicate.pk] == before[duplicate.pk]
    assert after[her.pk][:-1] == before[her.pk]
    rows = list(audit_rows_of(her).values_list("actor", "action", "old_values", "new_values"))
    assert rows[0] == (
        f"member:{her.pk}",
        "member.registered",
        None,
        {"phone": REDACTED, "external_id": None, "store": None, "channel": "mini_program"},
    )
    assert rows[1] == (
        f"member:{her.pk}",
        "member.updated",
        {"name": "", "birthday": None},
        {"name": REDACTED, "birthday": REDACTED},
    )
    assert rows[2] == ("staff:boss", "member.updated", {"phone": REDACTED}, {"phone": REDACTED})
    merged = rows[3]
    assert (merged[0], merged[1]) == ("staff:boss", "member.merged")
    assert (merged[3]["handed"], merged[3]["profile"]) == ({"external_id": REDACTED}, {"email": REDACTED})
    assert merged[3]["duplicate"] == str(duplicate.pk)
    assert rows[4] == (
        "staff:boss",
        "member.anonymised",
        None,
        {"reason": "her request", "merged_members": [str(duplicate.pk)]},
    )
    duplicate_rows = list(audit_rows_of(duplicate).values_list("actor", "action", "old_values", "new_values"))
    assert duplicate_rows[0][:2] == (f"member:{duplicate.pk}", "member.registered")
    assert duplicate_rows[1][2:] == (
        {"name": "", "email": "", "birthday": None},
        {"name": REDACTED, "email": REDACTED, "birthday": REDACTED},
    )
    assert duplicate_rows[2][2:] == ({"external_id": None}, {"external_id": REDACTED})
    assert duplicate_rows[3][1] == "member.merged_into"
    assert duplicate_rows[3][2] == {"status": "active", "household": None, "external_id": REDACTED}


def test_the_audit_log_in_the_admin_finds_nothing_by_her_phone_or_name(admin_api, client, admin_user, her_story):
    her, _, _ = her_story
    client.force_login(admin_user)
    phone_change = audit_rows_of(her).filter(actor="staff:boss", action="member.updated").get()
    assert SECOND_NATIONAL in client.get(f"{AUDIT_ADMIN}{phone_change.pk}/change/").content.decode()

    anonymise(admin_api, her)

    for needle in (FIRST_PHONE, SECOND_PHONE, DUPLICATE_PHONE, FIRST_NATIONAL, NAME):
        response = client.get(AUDIT_ADMIN, {"q": needle})
        assert (response.status_code, response.context["cl"].result_count) == (200, 0), needle
    for entry in audit_rows_of(her):
        page = client.get(f"{AUDIT_ADMIN}{entry.pk}/change/").content.decode()
        assert FIRST_NATIONAL not in page and SECOND_NATIONAL not in page and NAME not in page


def test_a_merged_duplicates_personal_data_is_erased_with_hers(admin_api, her_story):
    her, duplicate, _ = her_story

    anonymise(admin_api, her)

    duplicate.refresh_from_db()
    assert (
        duplicate.phone,
        duplicate.external_id,
        duplicate.name,
        duplicate.email,
        duplicate.birthday,
        duplicate.gender,
        duplicate.status,
        duplicate.merged_into_id,
    ) == (None, None, "", "", None, "unknown", MemberStatus.MERGED, her.pk)
    # her second card's phone no longer leads to her: logging in with it is a new registration
    _, someone, _ = log_in(DUPLICATE_PHONE)
    assert someone.pk not in (her.pk, duplicate.pk)


def test_a_login_that_registers_a_member_audits_her_by_id_not_by_phone(db):
    _, member, _ = log_in(FIRST_PHONE)

    row = AuditEntry.objects.get(action="member.registered")
    assert (row.actor, row.target_id) == (f"member:{member.pk}", str(member.pk))


def test_an_audit_actor_written_before_the_fix_loses_her_phone(admin_api, member_a):
    AuditEntry.objects.create(
        actor=f"member-login:{FIRST_PHONE}",
        action="member.registered",
        target_type="members.member",
        target_id=str(member_a.pk),
        new_values={"phone": FIRST_PHONE},
    )
    AuditEntry.objects.create(
        actor=f"import:members-{FIRST_PHONE}.csv",
        action="member.tag_added",
        target_type="members.member",
        target_id=str(member_a.pk),
        new_values={"tag": "vip"},
    )

    anonymise(admin_api, member_a)

    row = AuditEntry.objects.get(action="member.registered")
    assert (row.actor, row.new_values) == (f"member:{member_a.pk}", {"phone": REDACTED})
    row = AuditEntry.objects.get(action="member.tag_added")
    assert (row.actor, row.new_values) == ("import:members-+86138****8000.csv", {"tag": "vip"})


def test_the_migration_renames_the_login_actors_written_before_it(member_a, member_b):
    legacy = AuditEntry.objects.create(
        actor=f"member-login:{FIRST_PHONE}",
        action="member.registered",
        target_type="members.member",
        target_id=str(member_a.pk),
    )
    staff = AuditEntry.objects.create(
        actor="staff:boss", action="member.updated", target_type="members.member", target_id=str(member_b.pk)
    )
    migration = importlib.import_module("loyalty.migrations.0006_audit_actor_without_phone")

    migration.name_the_member_not_her_phone(apps, None)

    legacy.refresh_from_db()
    staff.refresh_from_db()
    assert (legacy.actor, staff.actor) == (f"member:{member_a.pk}", "staff:boss")


def test_another_member_who_took_her_old_number_keeps_his_messages_and_login(admin_api, store_a, settings):
    settings.OTP_RESEND_INTERVAL = timedelta(0)
    _, her, _ = log_in(FIRST_PHONE)
    response = admin_api.patch(f"{MEMBERS_URL}{her.pk}/", {"phone": SECOND_NATIONAL}, format="json")
    assert response.status_code == 200, response.content
    him = MemberFactory(phone=FIRST_PHONE, home_store=store_a)  # the recycled number
    send_message(channel="sms", kind="notice", recipient=FIRST_PHONE, member=him, body="Hello him")
    request_code(FIRST_PHONE)  # he is logging in

    anonymise(admin_api, her)

    his = list(Message.objects.filter(member=him).order_by("id").values_list("recipient", "body"))
    assert his[0] == (FIRST_PHONE, "Hello him")
    assert his[1][0] == FIRST_PHONE and "Your login code is" in his[1][1]
    assert OtpChallenge.objects.filter(phone=FIRST_PHONE, used_at__isnull=True).count() == 1
    him.refresh_from_db()
    assert him.phone == FIRST_PHONE


def test_anonymise_scrubs_with_set_based_updates_whatever_the_number_of_rows(admin_api):
    """The same number of queries for 2 messages and audit rows as for 40: no save per row."""

    def queries_to_anonymise(count, phone):
        member = MemberFactory(phone=phone)
        for number in range(count):
            send_message(channel="sms", kind="notice", recipient=phone, member=member, body=f"note {number}")
            AuditEntry.objects.create(
                actor="staff:boss",
                action="member.updated",
                target_type="members.member",
                target_id=str(member.pk),
                old_values={"name": f"Name {number}"},
                new_values={"name": f"Name {number + 1}"},
            )
        with CaptureQueriesContext(connection) as queries:
            anonymise_member(actor="staff:boss", member=member, reason="her request", role="admin")
        assert set(Message.objects.filter(member=member).values_list("body", flat=True)) == {""}
        assert {
            row["name"]
            for row in AuditEntry.objects.filter(target_id=str(member.pk)).values_list("new_values", flat=True)
            if row and "name" in row
        } == {REDACTED}
        return len(queries)

    events.wanted("member.updated")  # the webhooks' wanted event types: read once per process, not per member
    assert queries_to_anonymise(2, "+8613500135000") == queries_to_anonymise(40, "+8613500135001")
