"""The read that iterates (QuerySet.iterator() in a streamed response, outside any transaction: the RFM report's
member CSV) and the ledger list, through PgBouncer in transaction mode while purchases run on the same two server
sessions: every download complete and exact, every list exact at the end."""

import csv
import io
from datetime import date
from decimal import Decimal

import pytest

from loyalty.credentials import create_api_client, issue_staff_token
from members.models import RfmSnapshot
from tests.conftest import ALL_SCOPES
from tests.factories import MemberFactory, StaffUserFactory
from tests.faults.conftest import call
from tests.pooling.conftest import together

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.pgbouncer,
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
]

AS_OF = date(2026, 11, 30)
MEMBERS = 40
READERS = 6
DOWNLOADS = 3
BUYERS = 2
PURCHASES = 8


def test_member_csv_and_ledger_list_through_the_pooler(pooled_server, migration_defaults, store_a):
    members = sorted(MemberFactory.create_batch(MEMBERS, home_store=store_a), key=lambda m: m.pk)
    RfmSnapshot.objects.bulk_create(
        RfmSnapshot(
            member=member,
            as_of=AS_OF,
            recency_days=index,
            frequency=index % 7,
            monetary=Decimal(index * 10),
            r_score=1 + index % 5,
            f_score=1 + index % 3,
            m_score=1 + index % 4,
            segment="important_value",
            lifecycle="active",
        )
        for index, member in enumerate(members)
    )
    marketer = {"Authorization": f"Bearer {issue_staff_token(user=StaffUserFactory(role='marketer'))[0]}"}
    pos = {"Authorization": f"Api-Key {create_api_client(name='POS', all_stores=True, scopes=ALL_SCOPES)[1]}"}
    server = pooled_server(workers=1, threads=READERS + BUYERS)
    path = f"/api/v1/reports/rfm/?format=csv&detail=members&as_of={AS_OF.isoformat()}"
    expected = [[m.member_no, str(index)] for index, m in enumerate(members)]
    buyer = members[0]

    def work(index):
        if index < BUYERS:
            return [
                call(
                    server.port,
                    "POST",
                    "/api/v1/purchases/",
                    {"member": str(buyer.pk), "order_no": f"B{index}-{n}", "amount": "20.00", "store": "A001"},
                    pos,
                ).status
                for n in range(PURCHASES)
            ]
        return [call(server.port, "GET", path, headers=marketer) for _ in range(DOWNLOADS)]

    results = together(READERS + BUYERS, work)
    assert results[:BUYERS] == [[201] * PURCHASES] * BUYERS
    downloads = [answer for answers in results[BUYERS:] for answer in answers]
    assert len(downloads) == READERS * DOWNLOADS
    for answer in downloads:
        assert answer.status == 200, (answer.status, answer.body)
        rows = list(csv.reader(io.StringIO(answer.body.lstrip("\ufeff"))))
        assert rows[0][:3] == ["member_no", "external_id", "recency_days"]
        assert [[row[0], row[2]] for row in rows[1:]] == expected

    ledger = call(server.port, "GET", f"/api/v1/members/{buyer.pk}/points/ledger/?page_size=500", headers=pos)
    assert ledger.status == 200
    assert [(entry["kind"], entry["points"]) for entry in ledger.body["results"]] == [("earn", 20)] * (
        BUYERS * PURCHASES
    )
    assert ledger.body["next"] is None
