"""The check every API test's responses go through (tests/schema_check.py) refuses what the schema does not
declare: it must be able to fail, or it proves nothing."""

import pytest
from django.http import JsonResponse

from tests.schema_check import SchemaMismatch, check_response


def test_a_declared_answer_passes(db):
    check_response(
        "GET", "/api/v1/members/123/", JsonResponse({"code": "not_found", "detail": "Not found."}, status=404)
    )


def test_an_undeclared_status_fails(db):
    with pytest.raises(SchemaMismatch, match=r"answered 418; the schema declares only"):
        check_response("GET", "/api/v1/members/123/", JsonResponse({"code": "teapot", "detail": "no"}, status=418))


def test_an_error_field_the_schema_does_not_declare_fails(db):
    body = {"code": "not_found", "detail": "Not found.", "hint": "try another id"}
    with pytest.raises(SchemaMismatch, match=r"Additional properties are not allowed \('hint' was unexpected\)"):
        check_response("GET", "/api/v1/members/123/", JsonResponse(body, status=404))


def test_a_wrong_type_and_a_wrong_format_fail(db):
    body = {"member": "1", "principal": 5, "bonus": "0.00", "total": "5.00"}
    with pytest.raises(SchemaMismatch, match=r"at principal: 5 is not of type 'string'"):
        check_response("GET", "/api/v1/members/1/stored-value/", JsonResponse(body))


def test_a_nullable_reference_takes_null_and_the_reference(db):
    standing = {
        "tier": None,
        "growth_value": 0,
        "next_tier": None,
        "to_next": None,
        "hold_until": None,
        "history": [],
    }
    check_response("GET", "/api/v1/members/1/tier/", JsonResponse(standing))
    standing["next_tier"] = {"code": "gold"}  # a tier lacks most of its required fields
    with pytest.raises(SchemaMismatch, match=r"next_tier"):
        check_response("GET", "/api/v1/members/1/tier/", JsonResponse(standing))


def test_an_operation_the_schema_lacks_fails_unless_it_is_a_routing_404(db):
    with pytest.raises(SchemaMismatch, match=r"the schema has no such operation"):
        check_response("GET", "/api/v1/nowhere/", JsonResponse({"ok": True}))
    check_response("GET", "/api/v1/nowhere/", JsonResponse({"code": "not_found", "detail": "Not found."}, status=404))
