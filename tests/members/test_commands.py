import hashlib
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from loyalty.credentials import authenticate_api_key
from loyalty.models import ApiClient
from members.extensions import demo_data_steps
from members.models import Member, StaffUser, Store


def test_create_api_client_prints_the_key_once_and_stores_its_hash(store_a):
    out = StringIO()
    call_command(
        "create_api_client", "POS 1", "--store", "A001", "--scopes", "members:read", "purchases:write", stdout=out
    )
    key = out.getvalue().strip().splitlines()[-1]
    client = ApiClient.objects.get(name="POS 1")
    assert key.startswith("lk_")
    assert client.key_hash == hashlib.sha256(key.encode()).hexdigest()
    assert key not in str(ApiClient.objects.values().get())
    assert client.scopes == ["members:read", "purchases:write"]
    assert list(client.stores.values_list("code", flat=True)) == ["A001"]
    assert authenticate_api_key(key) == (client, frozenset({store_a.pk}))
    assert authenticate_api_key(key[:-1] + ("x" if key[-1] != "x" else "y")) is None


def test_create_api_client_refuses_unknown_store_scope_and_duplicates(store_a):
    with pytest.raises(CommandError, match="Unknown store"):
        call_command("create_api_client", "POS 2", "--store", "NOPE", "--all-scopes", stdout=StringIO())
    with pytest.raises(CommandError, match="Unknown scope"):
        call_command("create_api_client", "POS 2", "--all-stores", "--scopes", "points:steal", stdout=StringIO())
    call_command("create_api_client", "POS 2", "--store", "A001", "--all-scopes", stdout=StringIO())
    with pytest.raises(CommandError, match="already exists"):
        call_command("create_api_client", "POS 2", "--store", "A001", "--all-scopes", stdout=StringIO())
    assert ApiClient.objects.count() == 1


@pytest.fixture
def without_demo_history():
    """The members and staff only: the steps other apps add (the reports' demo history, minutes of purchases;
    tests/reports/dashboard/test_demo_data.py) are left out."""
    steps = list(demo_data_steps)
    for step in steps:
        demo_data_steps.unregister(step)
    yield
    for step in steps:
        demo_data_steps.register(step)


def test_load_demo_data_is_idempotent_and_its_login_works(client, db, without_demo_history):
    out = StringIO()
    call_command("load_demo_data", stdout=out)
    call_command("load_demo_data", stdout=(second := StringIO()))
    assert Member.objects.filter(external_id__startswith="DEMO-").count() == 200
    assert Store.objects.count() == 4
    assert "(0 new)" in second.getvalue()
    password = second.getvalue().split("password: ")[1].split()[0]
    assert StaffUser.objects.get(username="admin").check_password(password)
    assert client.login(username="admin", password=password)
    assert client.get("/admin/members/member/").status_code == 200


def test_load_demo_data_prints_the_address_it_is_given(db, without_demo_history):
    out = StringIO()
    call_command("load_demo_data", "--site", "http://127.0.0.1:8123/", stdout=out)
    assert "Logins for http://127.0.0.1:8123/admin/ (password set anew on every run):" in out.getvalue()
    assert "The dashboard (admin and marketer): http://127.0.0.1:8123/admin/reports/dashboard/" in out.getvalue()
    assert "8000" not in out.getvalue()


def test_load_demo_data_refuses_production(settings, db):
    settings.PRODUCTION = True
    with pytest.raises(CommandError, match="production"):
        call_command("load_demo_data", stdout=StringIO())
