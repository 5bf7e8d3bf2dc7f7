"""The import's row checks: a member's stored phone read without libphonenumber gives what libphonenumber gives
(the same member, the same rejects), and rows checked in a pool of processes give the same rejects file and the
same purchases as rows checked in one thread."""

import csv
import io
from collections import Counter
from datetime import UTC, datetime
from types import SimpleNamespace

import pytest
import time_machine
from django.test import override_settings

from members import imports
from members.imports import rows
from members.models import Member, Purchase
from members.phone_numbers import InvalidPhoneNumber, normalise_phone
from tests.factories import MemberFactory

NOW = datetime(2024, 6, 1, 4, 0, tzinfo=UTC)
HEADER = "member_external_id,member_phone,order_no,occurred_at,amount,store,channel"
# Mobile numbers in every prefix 130-199, valid or not, in the forms a file holds them, and texts that only look
# like them (a carrier prefix, full-width digits, too long, a 12th digit, a fixed line).
NUMBERS = [f"{prefix}{suffix}" for prefix in range(130, 200) for suffix in ("00138000", "12345678", "99999999")]
FORMS = [
    form
    for number in NUMBERS
    for form in (
        number,
        f"+86{number}",
        f"86{number}",
        f"+86 {number[:3]} {number[3:7]} {number[7:]}",
        f"{number[:3]}-{number[3:7]}-{number[7:]}",
    )
] + [
    "17951 13800138000",
    "１３８００１３８０００",
    "+86" + " " * 30 + "13800138000",
    "138001380001",
    "+861380013800",
    "+86 10 6552 9988",
    "010 6552 9988",
    "0086 13800138000",
    "+44 7911 123456",
    "12345",
]


def parsed(text):
    try:
        return normalise_phone(text)
    except InvalidPhoneNumber:
        return "invalid"


def checked(checks, text):
    try:
        return checks._phone(text, "member_phone")
    except rows.Rejected as rejected:
        assert rejected.reason == "invalid member_phone"
        return "invalid"


@pytest.fixture
def checks(db):
    return rows._Checks(rows._ErasureCheck(enabled=False))


def test_every_form_gives_what_libphonenumber_gives_when_all_valid_numbers_are_stored(checks):
    stored = {parsed(text) for text in FORMS} - {"invalid"}
    checks.known_phones = frozenset(stored)

    assert {text: checked(checks, text) for text in FORMS} == {text: parsed(text) for text in FORMS}
    # the fast path was taken: every mobile form of a stored number, and only those (179 is a carrier prefix)
    fast = {text for text in FORMS if checks._mobile_form(text) in stored}
    assert len(fast) == 5 * len([number for number in NUMBERS if f"+86{number}" in stored and number[:3] != "179"])
    assert "17912345678" not in {text for text in fast}


def test_a_stored_phone_is_not_parsed_and_anything_else_is(checks, monkeypatch):
    checks.known_phones = frozenset({"+8613800138000"})
    calls = []

    def counted(text):
        calls.append(text)
        return normalise_phone(text)

    checks.normalise_phone = counted
    assert [checked(checks, text) for text in ("+8613800138000", "138 0013 8000", "8613800138000")] == [
        "+8613800138000"
    ] * 3
    assert calls == []
    # a valid number that is nobody's, an invalid one in the same shape, and one with a carrier prefix: parsed
    assert [checked(checks, text) for text in ("13900139000", "13999999999", "12345")] == [
        "+8613900139000",
        "+8613999999999" if parsed("13999999999") != "invalid" else "invalid",
        "invalid",
    ]
    assert calls == ["13900139000", "13999999999", "12345"]


@override_settings(PHONE_DEFAULT_REGION="US")
def test_outside_china_only_the_plus_86_form_skips_the_parse(db):
    checks = rows._Checks(rows._ErasureCheck(enabled=False))
    assert checks._mobile_form("+86 138 0013 8000") == "+8613800138000"
    assert checks._mobile_form("13800138000") is None
    assert checks._mobile_form("8613800138000") is None


def test_stored_phones_are_looked_up_among_the_members(checks):
    MemberFactory(phone="+8613800138000")
    MemberFactory(phone="+8613900139000")
    texts = ["138 0013 8000", "+8613700137000", "", "12345", "8613900139000"] + [f"135{n:08}" for n in range(1200)]
    assert checks.stored_phones(texts) == {"+8613800138000", "+8613900139000"}


def purchases_file(tmp_path, phones):
    lines = [HEADER]
    for number, phone in enumerate(phones):
        amount = '"12,50"' if number % 10 == 9 else f"{number % 90 + 1}.50"
        lines.append(f",{phone},O-{number % 126},2024-03-{number % 28 + 1:02} 10:00,{amount},A001,online")
    path = tmp_path / "purchases.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


def imported(source):
    return list(
        Purchase.objects.filter(source=source)
        .order_by("order_no")
        .values_list("member_id", "order_no", "occurred_at", "amount", "store_id", "channel")
    )


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("chunk_rows", [7, 1000])
def test_rows_checked_in_processes_and_by_libphonenumber_give_the_same_rejects_and_purchases(
    tmp_path, monkeypatch, chunk_rows, store_a
):
    members = [MemberFactory(phone=f"+86138{n:08}") for n in range(12)]
    merged = MemberFactory(phone="+8613900139000")
    Member.objects.filter(pk=merged.pk).update(merged_into=members[0])
    # row n: kinds 0-2 a member's phone in three forms, 3 a merged member's, 4 nobody's, 5 and 6 invalid; every
    # tenth row a bad amount; rows 126-139 repeat the order numbers of rows 0-13
    kinds = [lambda n: f"138{n % 12:08}", lambda n: f"+86138{n % 12:08}", lambda n: f"86 138 {n % 12:08}"]
    kinds += [lambda n: "13900139000", lambda n: "13700137000", lambda n: "12345", lambda n: "179 1234 5678"]
    path = purchases_file(tmp_path, [kinds[n % 7](n) for n in range(140)])
    outcomes = {}
    with time_machine.travel(NOW, tick=False):
        for name, processes, fast in (("serial", 0, True), ("pool", 2, True), ("libphonenumber", 2, False)):
            if not fast:  # no stored phone known: every phone goes through libphonenumber
                monkeypatch.setattr(rows._Checks, "stored_phones", lambda self, texts: frozenset())
            report = imports.import_purchases(
                path, source=name, chunk_rows=chunk_rows, check_processes=processes, rejects_path=f"{path}.{name}"
            )
            with open(f"{path}.{name}", "rb") as rejects:
                outcomes[name] = (report.imported, report.rejected, rejects.read(), imported(name))

    assert outcomes["pool"] == outcomes["serial"] == outcomes["libphonenumber"]
    good, rejected, rejects, purchases = outcomes["serial"]
    reasons = Counter(row[1].split(" of line")[0] for row in csv.reader(io.StringIO(rejects.decode("utf-8-sig"))))
    assert (good, rejected) == (66, 74)
    assert reasons == {
        "reason": 1,  # the header
        "invalid member_phone": 40,  # kinds 5 and 6
        "invalid amount": 10,  # 14 tenth rows, 4 of them with an invalid phone
        "duplicate": 8,  # rows 126-139 that pass the checks and whose first row did too
        "unknown member": 16,  # 20 rows of kind 4, 2 with a bad amount, 2 duplicates (rows 130 and 137)
    }
    members_of = {f"O-{n % 126}": (members[0] if n % 7 == 3 else members[n % 12]).pk for n in range(139, -1, -1)}
    members_of["O-9"] = members[135 % 12].pk  # row 9 had a bad amount: row 135 took its order number
    assert {order_no: member_id for member_id, order_no, *_rest in purchases} == {
        order_no: members_of[order_no] for order_no, *_rest in ((p[1],) for p in purchases)
    }
    assert len(purchases) == 66


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("processes", [0, 2])
def test_text_with_copy_s_special_characters_is_stored_as_written(tmp_path, processes):
    # On PostgreSQL the checking processes write the rows as COPY text: tabs, newlines, backslashes and quotes
    # must arrive as they were in the file (on SQLite the rows go through the ORM: the same outcome).
    name = 'Tab\there, new\nline, back\\slash \\N "quoted" {braces}, 张三'
    path = tmp_path / "members.csv"
    path.write_text('external_id,name,email\nE\\1,"' + name.replace('"', '""') + '",a@example.com\n', "utf-8")
    with time_machine.travel(NOW, tick=False):
        report = imports.import_members(str(path), check_processes=processes)

    assert (report.imported, report.rejected) == (1, 0)
    member = Member.objects.get()
    assert (member.external_id, member.name, member.email, member.phone, member.birthday) == (
        "E\\1",
        name,
        "a@example.com",
        None,
        None,
    )


def test_a_process_that_may_not_have_children_checks_in_a_thread(monkeypatch):
    """A daemonic process (a Celery prefork worker's child) may not fork a pool: the checks run in one thread."""
    with imports._checker(None, 2) as checker:
        assert type(checker).__name__ == "ProcessPoolExecutor"
    monkeypatch.setattr(imports.multiprocessing, "current_process", lambda: SimpleNamespace(daemon=True))
    with imports._checker(None, 2) as checker:
        assert type(checker).__name__ == "ThreadPoolExecutor"
