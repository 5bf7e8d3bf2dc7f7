"""The OpenAPI schema builds without warnings and describes every route of API.md that exists so far."""

import yaml
from django.core.management import call_command

# Routes of API.md that the members foundation serves: (path, method).
FOUNDATION_ROUTES = [
    ("/api/v1/members/", "post"),
    ("/api/v1/members/", "get"),
    ("/api/v1/members/{id}/", "get"),
    ("/api/v1/members/{id}/", "patch"),
    ("/api/v1/members/{id}/tags/", "post"),
    ("/api/v1/members/{id}/tags/{tag_code}/", "delete"),
    ("/api/v1/auth/staff-token", "post"),
    ("/api/v1/auth/otp", "post"),
    ("/api/v1/auth/member-token", "post"),
    ("/api/v1/me/", "get"),
    ("/api/v1/me/", "patch"),
    ("/api/v1/me/messages/", "get"),
    ("/api/v1/messages/", "get"),
    ("/api/v1/tags/", "get"),
    ("/api/v1/tags/", "post"),
]


def test_schema_builds_without_warnings_and_has_the_routes(tmp_path, db):
    target = tmp_path / "schema.yml"
    # --fail-on-warn turns any warning into an error; --validate checks it against the OpenAPI 3 meta-schema.
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(target))
    schema = yaml.safe_load(target.read_text())
    missing = [(p, m) for p, m in FOUNDATION_ROUTES if m not in schema["paths"].get(p, {})]
    assert missing == []
    member = schema["components"]["schemas"]["Member"]["properties"]
    for field in (
        "id",
        "member_no",
        "phone",
        "external_id",
        "name",
        "gender",
        "birthday",
        "status",
        "store",
        "joined_at",
        "referral_code",
        "tier",
        "points",
        "growth_value",
        "tags",
        "rfm",
    ):
        assert field in member, field
    assert {"ApiKey", "Bearer"} <= set(schema["components"]["securitySchemes"])
    # Every operation says it may answer 503 temporarily_unavailable with Retry-After (database outage, timeouts).
    operations = [
        op
        for path in schema["paths"].values()
        for method, op in path.items()
        if method in {"get", "post", "put", "patch", "delete"}
    ]
    without_503 = [op["operationId"] for op in operations if "503" not in op["responses"]]
    assert without_503 == []
    unavailable = schema["paths"]["/api/v1/purchases/"]["post"]["responses"]["503"]
    assert unavailable["headers"]["Retry-After"]["schema"] == {"type": "integer"}
    assert unavailable["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Error"}


def test_schema_and_docs_are_served(client, db):
    assert client.get("/api/schema/").status_code == 200
    assert client.get("/api/docs/").status_code == 200


def _operations(schema):
    return [
        (path, method, op)
        for path, item in schema["paths"].items()
        for method, op in item.items()
        if method in {"get", "post", "put", "patch", "delete"}
    ]


def test_every_operation_declares_the_errors_the_shared_plumbing_gives(tmp_path, db):
    target = tmp_path / "schema.yml"
    call_command("spectacular", "--file", str(target))
    schema = yaml.safe_load(target.read_text())
    lacking = []
    for path, method, op in _operations(schema):
        wanted = {"401", "403", "429", "503"}
        if "{" in path:
            wanted.add("404")
        if "requestBody" in op:
            wanted |= {"400", "413", "415"}
        lacking += [f"{method} {path} {status}" for status in sorted(wanted - set(op["responses"]))]
    assert lacking == []
    error = schema["components"]["schemas"]["Error"]
    assert error["additionalProperties"] is False
    assert error["required"] == ["code", "detail"]
    throttled = schema["paths"]["/api/v1/members/"]["get"]["responses"]["429"]
    assert throttled["headers"]["Retry-After"]["schema"] == {"type": "integer"}
    assert throttled["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Error"}


def test_the_schema_tells_the_truth_about_shapes_clients_trip_on(tmp_path, db):
    target = tmp_path / "schema.yml"
    call_command("spectacular", "--file", str(target))
    schema = yaml.safe_load(target.read_text())
    components = schema["components"]["schemas"]
    member = components["Member"]["properties"]
    assert member["store"]["nullable"] is True  # a member may have no home store
    assert "format" not in member["email"]  # "" when she gave none
    purchase = components["PurchaseResult"]["properties"]
    assert purchase["points_used"] == {
        "allOf": [{"$ref": "#/components/schemas/PointsUsed"}],
        "nullable": True,
        "description": "null when no points paid for the order",
    }
    assert purchase["tier_change"]["allOf"] == [{"$ref": "#/components/schemas/TierChangeBrief"}]
    assert components["TierChangeBrief"]["required"] == ["from", "reason", "to"]  # no `at`: the payload has none
    assert components["PurchasePoints"]["properties"]["breakdown"]["items"] == {
        "$ref": "#/components/schemas/BreakdownLine"
    }
    assert components["BreakdownLine"]["required"] == ["points", "source"]
    assert components["EventResult"]["properties"]["points"] == {"$ref": "#/components/schemas/EventPoints"}
    # A registration needs a phone or an external_id, so its body is required though no one field is.
    assert schema["paths"]["/api/v1/members/"]["post"]["requestBody"]["required"] is True


def test_the_served_schema_does_not_change_with_the_callers_language(client, db):
    english = client.get("/api/schema/", {"format": "json"}).content
    chinese_browser = client.get("/api/schema/", {"format": "json"}, HTTP_ACCEPT_LANGUAGE="zh-hans").content
    assert chinese_browser == english
    asked_for_chinese = client.get("/api/schema/", {"format": "json", "lang": "zh-hans"}).content
    assert asked_for_chinese != english  # the texts that are translated, on purpose


def test_make_schema_writes_the_served_english_schema_whatever_the_default_language(client, db, settings, tmp_path):
    """`make schema` (the Makefile's recipe: spectacular --lang en) writes the text /api/schema/ serves, also
    under the project's default language zh-hans; a bare `spectacular` would follow LANGUAGE_CODE."""
    import json
    from pathlib import Path

    from django.utils import translation

    recipe = (Path(settings.BASE_DIR) / "Makefile").read_text().split("\nschema:", 1)[1].split("\n\n", 1)[0]
    assert "manage.py spectacular --lang en " in recipe
    served = json.loads(client.get("/api/schema/", {"format": "json"}).content)
    settings.LANGUAGE_CODE = "zh-hans"
    target = tmp_path / "schema.json"
    with translation.override("zh-hans"):
        call_command("spectacular", "--lang", "en", "--format", "openapi-json", "--file", str(target))
    assert json.loads(target.read_text()) == served
    components = served["components"]["schemas"]
    assert components["Member"]["properties"]["store"]["description"] == "home store, or null"


def test_the_coupon_issue_body_is_required(tmp_path, db):
    """No single field of it is required, but one of members, tag, segment or file must come."""
    target = tmp_path / "schema.yml"
    call_command("spectacular", "--file", str(target))
    schema = yaml.safe_load(target.read_text())

    assert schema["paths"]["/api/v1/coupon-templates/{id}/issue/"]["post"]["requestBody"]["required"] is True


def test_the_docs_page_works_without_internet(client, db):
    from django.contrib.staticfiles import finders

    page = client.get("/api/docs/").content.decode()
    assert "cdn.jsdelivr.net" not in page and "unpkg.com" not in page
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js" in page
    assert finders.find("drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js") is not None


def test_the_admin_has_no_view_site_link_to_a_missing_site(admin_client):
    page = admin_client.get("/admin/").content.decode()
    assert "/admin/" in page and "View site" not in page and "查看站点" not in page


def _domain_error_names():
    from loyalty.errors import DomainError

    names, todo = set(), [DomainError]
    while todo:
        klass = todo.pop()
        names.add(klass.__name__)
        todo.extend(klass.__subclasses__())
    return names


def test_every_field_an_error_carries_is_declared_in_the_error_shape(tmp_path, db):
    """The Error component is closed (additionalProperties false): each keyword a DomainError is made with in the
    project's code (besides code, status, detail, errors and retry_after, which goes in a header) must be one of
    its properties, or clients meet fields their types do not have."""
    import ast
    from pathlib import Path

    from django.conf import settings

    errors = _domain_error_names()
    carried = {}
    for source in Path(settings.BASE_DIR).glob("*/**/*.py"):
        if {".venv", "tests", "migrations", "bench"} & set(source.parts):
            continue
        for node in ast.walk(ast.parse(source.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", None)) in errors:
                for keyword in node.keywords:
                    if keyword.arg not in {None, "code", "status", "detail", "errors", "retry_after"}:
                        carried.setdefault(keyword.arg, f"{source.relative_to(settings.BASE_DIR)}:{node.lineno}")
    assert "available" in carried and "merged_into" in carried  # the scan finds them
    target = tmp_path / "schema.yml"
    call_command("spectacular", "--file", str(target))
    declared = set(yaml.safe_load(target.read_text())["components"]["schemas"]["Error"]["properties"])
    assert {field: where for field, where in carried.items() if field not in declared} == {}
