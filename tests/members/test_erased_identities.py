"""Erased identities: anonymising a member keeps a keyed hash of her phone and external id, so that importing an
old file again does not bring her back (import_members, import_purchases --create-members; the COPY path on
PostgreSQL and the portable one), while she may still register again herself."""

import csv
import hashlib
from datetime import UTC, datetime
from io import StringIO

import pytest
import time_machine
from django.core.management import CommandError, call_command
from django.db import connection

from members import imports
from members.models import Member
from members.services import membership
from members.services.membership import anonymise_member
from tests.factories import MemberFactory

NOW = datetime(2024, 6, 1, 4, 0, tzinfo=UTC)
ERASED = "erased on the member's request"
MEMBER_HEADER = "external_id,phone,name"
PURCHASE_HEADER = "member_external_id,member_phone,order_no,occurred_at,amount,store,channel"
OLD_MEMBERS = f"""{MEMBER_HEADER}
OLD-1,138 0013 8000,王芳
OLD-2,13600136000,李四
OLD-3,13700137000,张三
"""


@pytest.fixture(autouse=True)
def frozen():
    with time_machine.travel(NOW, tick=False):
        yield


@pytest.fixture(params=["copy", "portable"])
def import_path(request, monkeypatch):
    """Both merges: COPY + set-based SQL (PostgreSQL only) and the portable ORM one (on either database)."""
    on_postgres = connection.vendor == "postgresql"
    if request.param == "copy" and not on_postgres:
        pytest.skip("the COPY path needs PostgreSQL (DATABASE_URL)")
    if request.param == "portable":
        monkeypatch.setattr(imports, "_on_postgres", lambda: False)
    return request.param


@pytest.fixture
def erased(db):
    """Fang, once imported as OLD-1 with her phone, asked to be erased."""
    member = MemberFactory(external_id="OLD-1", phone="+8613800138000", name="王芳")
    return anonymise_member(actor="admin", member=member, reason="her request", role="admin")


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def rejects_of(path):
    with open(path, encoding="utf-8-sig", newline="") as file:
        return list(csv.reader(file))[1:]


def run(command, *args):
    out = StringIO()
    call_command(command, *args, stdout=out, stderr=StringIO())
    return out.getvalue().strip()


@pytest.mark.parametrize("chunk_rows", [1, imports.CHUNK_ROWS])
def test_reimporting_a_members_file_does_not_bring_back_an_erased_member(tmp_path, import_path, chunk_rows, erased):
    path = write(tmp_path, "members.csv", OLD_MEMBERS)

    summary = run("import_members", path, "--chunk-rows", str(chunk_rows))

    assert summary.startswith("Read 3 rows: 2 members imported, 0 skipped (already imported), 1 rejected")
    assert rejects_of(tmp_path / "members.rejects.csv") == [["2", ERASED, "OLD-1", "138 0013 8000", "王芳"]]
    assert set(Member.objects.values_list("external_id", "phone", "status")) == {
        ("OLD-2", "+8613600136000", "active"),
        ("OLD-3", "+8613700137000", "active"),
        (None, None, "anonymised"),
    }
    erased.refresh_from_db()
    assert (erased.status, erased.phone, erased.external_id, erased.name) == ("anonymised", None, None, "")

    again = run("import_members", path, "--chunk-rows", str(chunk_rows))

    assert again.startswith("Read 3 rows: 0 members imported, 2 skipped (already imported), 1 rejected")
    assert rejects_of(tmp_path / "members.rejects.csv") == [["2", ERASED, "OLD-1", "138 0013 8000", "王芳"]]
    assert Member.objects.count() == 3


def test_either_identifier_of_an_erased_member_rejects_a_member_row(tmp_path, import_path, erased):
    path = write(
        tmp_path,
        "members.csv",
        f"""{MEMBER_HEADER}
OLD-1,,王芳
OLD-9,+86 138 0013 8000,王芳
OLD-2,13600136000,李四
""",
    )

    assert run("import_members", path).startswith(
        "Read 3 rows: 1 members imported, 0 skipped (already imported), 2 rejected"
    )
    assert rejects_of(tmp_path / "members.rejects.csv") == [
        ["2", ERASED, "OLD-1", "", "王芳"],
        ["3", ERASED, "OLD-9", "'+86 138 0013 8000", "王芳"],  # her phone under another id is hers (+ neutralised)
    ]
    assert set(Member.objects.values_list("external_id", flat=True)) == {None, "OLD-2"}


@pytest.mark.parametrize("chunk_rows", [1, imports.CHUNK_ROWS])
def test_create_members_does_not_bring_back_an_erased_member(tmp_path, import_path, chunk_rows, erased):
    path = write(
        tmp_path,
        "orders.csv",
        f"""{PURCHASE_HEADER}
OLD-1,,A-1,2024-03-01,10,,
OLD-1,13800138000,A-2,2024-03-02,20,,
NEW-1,138 0013 8000,A-3,2024-03-03,30,,
NEW-2,13600136000,A-4,2024-03-04,40,,
""",
    )

    summary = run("import_purchases", path, "--create-members", "--chunk-rows", str(chunk_rows))

    assert summary.startswith(
        "Read 4 rows: 2 purchases imported, 2 members created, 0 skipped (already imported), 2 rejected"
    )
    assert rejects_of(tmp_path / "orders.rejects.csv") == [
        ["2", ERASED, "OLD-1", "", "A-1", "2024-03-01", "10", "", ""],
        ["3", ERASED, "OLD-1", "13800138000", "A-2", "2024-03-02", "20", "", ""],
    ]
    # NEW-1 is another customer of the old system; the erased phone is not given to her (as a taken one is not)
    assert set(Member.objects.values_list("external_id", "phone", "status")) == {
        ("NEW-1", None, "active"),
        ("NEW-2", "+8613600136000", "active"),
        (None, None, "anonymised"),
    }
    assert not erased.purchases.exists()

    again = run("import_purchases", path, "--create-members", "--chunk-rows", str(chunk_rows))

    assert again.startswith("Read 4 rows: 0 purchases imported, 2 skipped (already imported), 2 rejected")
    assert Member.objects.count() == 3


def test_without_create_members_an_erased_members_purchase_stays_an_unknown_member(tmp_path, import_path, erased):
    path = write(tmp_path, "orders.csv", f"{PURCHASE_HEADER}\nOLD-1,,A-1,2024-03-01,10,,\n")

    assert "0 purchases imported, 0 skipped (already imported), 1 rejected" in run("import_purchases", path)
    assert rejects_of(tmp_path / "orders.rejects.csv")[0][:2] == ["2", "unknown member"]


def test_the_erased_identities_hold_no_plain_phone_or_external_id(erased):
    from members.models import ErasedIdentity

    rows = list(ErasedIdentity.objects.values())
    assert sorted(row["kind"] for row in rows) == ["external_id", "phone"]
    plain = ["+8613800138000", "8613800138000", "13800138000", "OLD-1", "old-1"]
    unkeyed = {
        hashlib.sha256(f"{prefix}{value}".encode()).hexdigest()
        for value in plain
        for prefix in ("", "phone:", "external_id:")
    }
    for row in rows:
        for value in row.values():
            assert not any(text in str(value) for text in plain)
        assert len(row["digest"]) == 64 and set(row["digest"]) <= set("0123456789abcdef")
        assert row["digest"] not in unkeyed  # a plain SHA-256 of a phone is found by trying every phone
    with connection.cursor() as cursor:  # nor anywhere in the table as the database stores it
        cursor.execute(f"SELECT * FROM {ErasedIdentity._meta.db_table}")  # noqa: S608
        assert not any(text in str(cursor.fetchall()) for text in plain)


def test_the_hashes_are_written_in_the_anonymisation_s_transaction(db, monkeypatch):
    from members.models import ErasedIdentity

    member = MemberFactory(external_id="OLD-1", phone="+8613800138000")

    def audit_fails(**kwargs):
        raise RuntimeError("the audit row could not be written")

    monkeypatch.setattr(membership, "record_audit", audit_fails)
    with pytest.raises(RuntimeError):
        anonymise_member(actor="admin", member=member, reason="her request", role="admin")

    member.refresh_from_db()
    assert (member.status, member.phone, member.external_id) == ("active", "+8613800138000", "OLD-1")
    assert ErasedIdentity.objects.count() == 0


def test_an_erased_member_may_register_again_herself(tmp_path, admin_api, erased):
    """A person who comes back and signs up again gives her data anew; the erasure list is not a blacklist."""
    from members.models import ErasedIdentity

    response = admin_api.post(
        "/api/v1/members/", {"phone": "13800138000", "external_id": "OLD-1", "channel": "mini_program"}, format="json"
    )

    assert response.status_code == 201, response.json()
    again = Member.objects.get(pk=response.json()["id"])
    assert (again.phone, again.external_id, again.status) == ("+8613800138000", "OLD-1", "active")
    assert again.member_no != erased.member_no
    erased.refresh_from_db()
    assert (erased.status, erased.phone, erased.external_id) == ("anonymised", None, None)

    # the old file finds her new self and leaves her as she is; it creates nobody
    path = write(tmp_path, "members.csv", f"{MEMBER_HEADER}\nOLD-1,138 0013 8000,Old Name\n")
    assert run("import_members", path).startswith("Read 1 rows: 0 members imported, 1 skipped (already imported)")
    again.refresh_from_db()
    assert (again.name, again.status) == ("", "active")

    # erased a second time: the same hashes again, kept once
    anonymise_member(actor="admin", member=again, reason="her request, again", role="admin")
    assert ErasedIdentity.objects.count() == 2


def test_an_erasure_list_from_another_key_refuses_the_import_until_the_old_key_is_a_fallback(
    tmp_path, settings, erased
):
    old_key = settings.SECRET_KEY
    path = write(tmp_path, "members.csv", OLD_MEMBERS)
    settings.SECRET_KEY = "a-new-secret-key-" + "x" * 50

    with pytest.raises(CommandError, match="SECRET_KEY_FALLBACKS"):
        run("import_members", path)
    with pytest.raises(CommandError, match="SECRET_KEY_FALLBACKS"):
        run(
            "import_purchases",
            write(tmp_path, "orders.csv", f"{PURCHASE_HEADER}\nOLD-1,,A-1,2024-03-01,10,,\n"),
            "--create-members",
        )
    assert Member.objects.count() == 1

    settings.SECRET_KEY_FALLBACKS = [old_key]

    assert run("import_members", path).startswith(
        "Read 3 rows: 2 members imported, 0 skipped (already imported), 1 rejected"
    )
    assert [row[:2] for row in rejects_of(tmp_path / "members.rejects.csv")] == [["2", ERASED]]


def test_the_erasure_check_is_one_statement_per_chunk_not_a_query_per_row(
    tmp_path, import_path, django_assert_max_num_queries, db
):
    for n in range(300):
        member = MemberFactory(external_id=f"GONE-{n}", phone=f"+86136{n:08d}")
        anonymise_member(actor="admin", member=member, reason="her request", role="admin")
    path = write(
        tmp_path, "members.csv", MEMBER_HEADER + "\n" + "".join(f"GONE-{n},,\nNEW-{n},,\n" for n in range(300))
    )

    with django_assert_max_num_queries(60):
        summary = run("import_members", path, "--chunk-rows", "200")

    assert summary.startswith("Read 600 rows: 300 members imported, 0 skipped (already imported), 300 rejected")
