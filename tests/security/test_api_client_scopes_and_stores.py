"""Low finding: a client app (API key) bound to no store acted for every store, and a new key got every scope.
Now a key gets exactly the scopes and stores it is created with: `create_api_client NAME` takes `--store CODE`
(repeatable) or `--all-stores`, and `--scopes ...` or `--all-scopes`, and refuses to guess; "all stores" is an
explicit flag (`ApiClient.all_stores`), and a key bound to no store without it acts for nobody (403). Deployed keys
bound to no store got the flag in the migration, so they keep working."""

import hashlib
from io import StringIO

import pytest
from django.core.management import CommandError, call_command, execute_from_command_line
from django.db import connection, connections
from django.db.migrations.executor import MigrationExecutor
from rest_framework.test import APIClient

from loyalty.access import CLIENT_SCOPES
from loyalty.credentials import authenticate_api_key, create_api_client
from loyalty.errors import InvalidInput
from loyalty.models import ApiClient, AuditEntry
from members.models import Member, Purchase
from points.models import Deduction, LedgerEntry, PointsAccount, Redemption, Reward
from tests.conftest import ALL_SCOPES, staff_client
from tests.factories import StaffUserFactory

pytestmark = pytest.mark.django_db

MEMBERS = "/api/v1/members/"
KEY_LINE = -1  # the command prints the key on its last line


def api_for(key):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {key}")
    return client


def command(*args):
    out = StringIO()
    call_command("create_api_client", *args, stdout=out)
    return out.getvalue().strip().splitlines()[KEY_LINE]


def listed(api):
    response = api.get(MEMBERS)
    assert response.status_code == 200, response.content
    return {row["id"] for row in response.json()["results"]}


# --- the command refuses to guess ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--all-scopes"], "one of the arguments --store --all-stores is required"),
        (["--store", "A001"], "one of the arguments --scopes --all-scopes is required"),
        ([], "one of the arguments --store --all-stores is required"),
        (
            ["--store", "A001", "--all-stores", "--all-scopes"],
            "argument --all-stores: not allowed with argument --store",
        ),
        (["--store", "A001", "--scopes", "members:read", "--all-scopes"], "not allowed with argument --scopes"),
        (["--store", "NOPE", "--all-scopes"], "Unknown store code(s): NOPE"),
        (["--store", "A001", "--store", "NOPE", "--all-scopes"], "Unknown store code(s): NOPE"),
        (["--all-stores", "--scopes", "members:read", "points:steal"], "Unknown scope(s): points:steal"),
    ],
)
def test_create_api_client_refuses_to_guess_stores_or_scopes(store_a, args, message):
    with pytest.raises(CommandError) as refused:
        call_command("create_api_client", "POS", *args, stdout=StringIO())

    assert message in str(refused.value)
    assert ApiClient.objects.count() == 0


@pytest.mark.parametrize(
    ("args", "exit_code"),
    [(["--all-scopes"], 2), (["--store", "A001"], 2), (["--store", "NOPE", "--all-scopes"], 1)],
)
def test_create_api_client_exits_non_zero_from_the_command_line(store_a, capsys, monkeypatch, args, exit_code):
    # run_from_argv closes every connection when the command ends, the test's own one with its transaction too.
    monkeypatch.setattr(connections, "close_all", lambda: None)
    with pytest.raises(SystemExit) as exited:
        execute_from_command_line(["manage.py", "create_api_client", "POS", *args])

    assert exited.value.code == exit_code
    assert "Traceback" not in capsys.readouterr().err
    assert ApiClient.objects.count() == 0


def test_a_key_gets_exactly_the_scopes_and_stores_it_is_created_with(store_a, store_b, member_a, member_b):
    key = command("POS A", "--store", "A001", "--scopes", "members:read")

    client = ApiClient.objects.get(name="POS A")
    assert (client.scopes, client.all_stores) == (["members:read"], False)
    assert list(client.stores.values_list("code", flat=True)) == ["A001"]
    assert client.key_hash == hashlib.sha256(key.encode()).hexdigest()
    api = api_for(key)
    assert listed(api) == {str(member_a.pk)}
    assert api.get(f"{MEMBERS}{member_b.pk}/").status_code == 404
    refused = api.post("/api/v1/purchases/", {"member": str(member_a.pk), "order_no": "P1", "amount": "10.00"})
    assert (refused.status_code, refused.json()["code"]) == (403, "permission_denied")
    assert refused.json()["detail"] == "This API key lacks the scope purchases:write."
    assert Purchase.objects.count() == 0


def test_all_stores_and_all_scopes_are_said_explicitly(store_a, store_b, member_a, member_b):
    key = command("Mini-program", "--all-stores", "--all-scopes")

    client = ApiClient.objects.get(name="Mini-program")
    assert (client.scopes, client.all_stores, client.stores.count()) == (sorted(CLIENT_SCOPES), True, 0)
    assert authenticate_api_key(key) == (client, None)
    assert listed(api_for(key)) == {str(member_a.pk), str(member_b.pk)}


def test_two_stores(store_a, store_b, member_a, member_b):
    key = command("Two", "--store", "A001", "--store", "B001", "--scopes", "members:read", "points:read")

    client = ApiClient.objects.get(name="Two")
    assert client.scopes == ["members:read", "points:read"]
    assert authenticate_api_key(key) == (client, frozenset({store_a.pk, store_b.pk}))
    assert listed(api_for(key)) == {str(member_a.pk), str(member_b.pk)}


# --- the service ----------------------------------------------------------------------------------------------


def test_the_service_assumes_neither_stores_nor_scopes(store_a):
    with pytest.raises(TypeError):
        create_api_client(name="POS", stores=[store_a])  # no scopes: no default to fall back on
    for kwargs, field in [
        ({"scopes": ["members:read"]}, "stores"),
        ({"scopes": ["members:read"], "stores": [store_a], "all_stores": True}, "stores"),
        ({"scopes": ["members:read", "nope"], "all_stores": True}, "scopes"),
        ({"scopes": "members:read", "all_stores": True}, "scopes"),
    ]:
        with pytest.raises(InvalidInput) as refused:
            create_api_client(name="POS", **kwargs)
        assert list(refused.value.errors) == [field]
    assert ApiClient.objects.count() == 0

    client, _ = create_api_client(name="POS", stores=[store_a], scopes=[])
    assert (client.scopes, client.all_stores) == ([], False)


# --- a key bound to no store acts for nobody ------------------------------------------------------------------


@pytest.fixture
def reward(db):
    return Reward.objects.create(code="mug", name="Mug", kind="coupon", cost_points=100)


@pytest.fixture
def unbound_key(store_a, member_a, member_b, reward):
    """A key whose only store was taken off it (as an admin may do): bound to no store, not to all stores."""
    admin = staff_client(StaffUserFactory(username="boss-x", role="admin"))
    for member in (member_a, member_b):
        response = admin.post(
            f"/api/v1/members/{member.pk}/points/adjustments/",
            {"points": 500, "reason": "setup"},
            format="json",
            HTTP_IDEMPOTENCY_KEY=f"setup-{member.pk}",
        )
        assert response.status_code == 201
    client, key = create_api_client(name="Orphan", stores=[store_a], scopes=ALL_SCOPES)
    client.stores.clear()
    assert authenticate_api_key(key) == (ApiClient.objects.get(pk=client.pk), frozenset())
    return key


def writes():
    return (
        Member.objects.count(),
        Purchase.objects.count(),
        LedgerEntry.objects.count(),
        Deduction.objects.count(),
        Redemption.objects.count(),
        sorted(PointsAccount.objects.values_list("member_id", "available")),
    )


def test_a_key_bound_to_no_store_reaches_no_member(unbound_key, member_a, member_b, reward):
    api = api_for(unbound_key)
    before, audits = writes(), AuditEntry.objects.count()
    for member in (member_a, member_b):
        requests = [
            api.get(MEMBERS),
            api.get(f"{MEMBERS}{member.pk}/"),
            api.get(f"{MEMBERS}{member.pk}/points/"),
            api.get(f"{MEMBERS}{member.pk}/points/ledger/"),
            api.patch(f"{MEMBERS}{member.pk}/", {"name": "Eve"}, format="json"),
            api.post(
                f"{MEMBERS}{member.pk}/points/deductions/",
                {"order_no": "D1", "points": 100, "member_no": member.member_no},
                format="json",
                HTTP_IDEMPOTENCY_KEY=f"d-{member.pk}",
            ),
            api.post(
                "/api/v1/redemptions/",
                {"member": str(member.pk), "reward": str(reward.pk), "member_no": member.member_no},
                format="json",
                HTTP_IDEMPOTENCY_KEY=f"r-{member.pk}",
            ),
            api.post(
                "/api/v1/purchases/",
                {"member": str(member.pk), "order_no": f"P-{member.pk}", "amount": "100.00", "store": "A001"},
                format="json",
            ),
            api.post(
                "/api/v1/events/",
                {"member": str(member.pk), "type": "share"},
                format="json",
                HTTP_IDEMPOTENCY_KEY=f"e-{member.pk}",
            ),
            api.post(MEMBERS, {"phone": "13800138077", "store": "A001"}, format="json"),
            api.get("/api/v1/rewards/"),
        ]
        assert [(r.status_code, r.json()["code"]) for r in requests] == [(403, "permission_denied")] * len(requests)
        assert requests[0].json()["detail"] == (
            "This API key is bound to no store: an admin binds it to stores, or to all stores."
        )
    assert writes() == before
    assert AuditEntry.objects.count() == audits


def test_binding_the_key_to_all_stores_opens_every_store_again(unbound_key, member_a, member_b):
    assert api_for(unbound_key).get(MEMBERS).status_code == 403

    client = ApiClient.objects.get(name="Orphan")
    client.all_stores = True
    client.save()

    assert listed(api_for(unbound_key)) == {str(member_a.pk), str(member_b.pk)}


def test_a_clerk_bound_to_no_store_cannot_spend_with_a_card_number(member_b):
    # The same rule as for keys, in may_act_for_member: a caller bound to no store serves no counter.
    clerk = staff_client(StaffUserFactory(username="clerk-none", role="clerk"))
    response = clerk.post(
        f"{MEMBERS}{member_b.pk}/points/adjustments/",
        {"points": 10, "reason": "x", "member_no": member_b.member_no},
        format="json",
        HTTP_IDEMPOTENCY_KEY="a1",
    )

    assert (response.status_code, response.json()["code"]) == (404, "not_found")
    assert LedgerEntry.objects.count() == 0


# --- the admin: "all stores" is on the form, and chosen --------------------------------------------------------


@pytest.fixture
def admin_site(client):
    client.force_login(StaffUserFactory(username="boss-admin", role="admin"))
    return client


def test_admin_form_refuses_a_key_with_neither_stores_nor_all_stores(admin_site):
    response = admin_site.post(
        "/admin/loyalty/apiclient/add/", {"name": "E-shop", "scopes": ["members:read"], "is_active": "on"}
    )

    assert response.status_code == 200
    assert response.context["adminform"].form.errors == {
        "stores": ["Choose the stores the client acts for, or tick “all stores”."]
    }
    assert ApiClient.objects.count() == 0


def test_admin_form_refuses_stores_and_all_stores_together(admin_site, store_a):
    data = {"name": "E-shop", "scopes": ["members:read"], "stores": [str(store_a.pk)], "all_stores": "on"}

    response = admin_site.post("/admin/loyalty/apiclient/add/", data)

    assert list(response.context["adminform"].form.errors) == ["stores"]
    assert ApiClient.objects.count() == 0


def test_admin_form_ticks_no_scope_in_advance_and_needs_one(admin_site, store_a):
    form = admin_site.get("/admin/loyalty/apiclient/add/").context["adminform"].form
    assert "all_stores" in form.fields
    assert form["scopes"].value() in (None, [])

    response = admin_site.post("/admin/loyalty/apiclient/add/", {"name": "E-shop", "stores": [str(store_a.pk)]})

    assert list(response.context["adminform"].form.errors) == ["scopes"]
    assert ApiClient.objects.count() == 0


def test_admin_change_form_edits_all_stores(admin_site, store_a, member_a, member_b):
    client, key = create_api_client(name="E-shop", all_stores=True, scopes=["members:read"])
    assert listed(api_for(key)) == {str(member_a.pk), str(member_b.pk)}

    response = admin_site.post(
        f"/admin/loyalty/apiclient/{client.pk}/change/",
        {"name": "E-shop", "scopes": ["members:read"], "stores": [str(store_a.pk)], "is_active": "on"},
    )

    assert response.status_code == 302, response.context["adminform"].form.errors
    client.refresh_from_db()
    assert (client.all_stores, list(client.stores.all())) == (False, [store_a])
    assert listed(api_for(key)) == {str(member_a.pk)}


# --- deployed keys keep working -------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_the_migration_sets_all_stores_on_deployed_keys_bound_to_no_store():
    executor = MigrationExecutor(connection)
    executor.migrate([("loyalty", "0003_staff_login_lock")])
    old = executor.loader.project_state([("loyalty", "0003_staff_login_lock")]).apps
    store = old.get_model("members", "Store").objects.create(code="S1", name="Store 1")
    old_client = old.get_model("loyalty", "ApiClient")
    old_client.objects.create(name="Mini-program", prefix="aaaa0000", key_hash="a" * 64, scopes=["members:read"])
    old_client.objects.create(name="POS", prefix="bbbb0000", key_hash="b" * 64, scopes=["members:read"]).stores.add(
        store
    )

    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())

    assert dict(ApiClient.objects.values_list("name", "all_stores")) == {"Mini-program": True, "POS": False}
