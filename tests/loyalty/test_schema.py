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
