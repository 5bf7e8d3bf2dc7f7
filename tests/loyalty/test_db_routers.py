"""The read-replica router: report requests read from the `replica` alias when it is configured, writes and
everything else stay on `default`. The replica here is a second alias on the same test database (what a
streaming replica shows, without the lag); committed rows (transactional tests) are visible on both."""

from datetime import date

import pytest
from django.db import connections
from django.test.utils import CaptureQueriesContext

from loyalty.db_routers import REPLICA_ALIAS, ReportReplicaRouter, report_connection, report_reads
from members.models import RfmSnapshot, Store
from tests.factories import MemberFactory

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", REPLICA_ALIAS])

# The alias exists for Django's connections from collection on, so the test database setup mirrors it onto the
# default test database; the router only uses it where settings.DATABASES lists it (the fixture below), so other
# tests in the same session never read from it.
if REPLICA_ALIAS not in connections.settings:  # a copy: settings.DATABASES itself stays without the alias
    connections.settings = {
        **connections.settings,
        REPLICA_ALIAS: {
            **connections.settings["default"],
            "TEST": {**connections.settings["default"]["TEST"], "MIRROR": "default"},
        },
    }


@pytest.fixture
def replica(settings):
    """REPLICA_DATABASE_URL configured: the router's `replica` alias, here the same test database."""
    settings.DATABASES = {**settings.DATABASES, REPLICA_ALIAS: connections[REPLICA_ALIAS].settings_dict}
    yield connections[REPLICA_ALIAS]


def test_reads_inside_report_reads_go_to_the_replica_and_writes_to_default(replica):
    store = Store.objects.create(code="S1", name="One")
    with CaptureQueriesContext(replica) as on_replica, CaptureQueriesContext(connections["default"]) as on_default:
        with report_reads():
            assert Store.objects.filter(code="S1").count() == 1  # read: replica
            Store.objects.filter(pk=store.pk).update(name="Uno")  # write: default
            with report_connection().cursor() as cursor:
                cursor.execute("SELECT name FROM members_store WHERE code = 'S1'")
                assert cursor.fetchone() == ("Uno",)
        assert Store.objects.get(code="S1").name == "Uno"  # outside: default
    replica_sql = [q["sql"] for q in on_replica.captured_queries]
    default_sql = [q["sql"] for q in on_default.captured_queries]
    assert len(replica_sql) == 2
    assert replica_sql[0].startswith("SELECT COUNT(*)")
    assert replica_sql[1] == "SELECT name FROM members_store WHERE code = 'S1'"
    assert [sql.split()[0] for sql in default_sql] == ["UPDATE", "SELECT"]


def test_report_request_reads_from_the_replica(replica, marketer_api):
    member = MemberFactory()
    RfmSnapshot.objects.create(member=member, as_of=date(2026, 6, 30), frequency=0, lifecycle="never_purchased")
    with CaptureQueriesContext(replica) as on_replica:
        answer = marketer_api.get("/api/v1/reports/rfm/", {"as_of": "2026-06-30"})
    assert answer.status_code == 200
    assert answer.json()["members"] == 1
    assert any("members_rfmsnapshot" in q["sql"] for q in on_replica.captured_queries)


def test_without_a_replica_everything_uses_default():
    router = ReportReplicaRouter()
    with report_reads():
        assert router.db_for_read(Store) is None  # Django's default
        assert report_connection().alias == "default"
    assert router.db_for_write(Store) == "default"
    assert router.allow_migrate(REPLICA_ALIAS, "members") is False
    assert router.allow_migrate("default", "members") is True
