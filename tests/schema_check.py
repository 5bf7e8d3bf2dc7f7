"""Every API response a test receives is checked against the OpenAPI description the project publishes: the
status must be one the operation declares, and a JSON body must match the declared schema for that status. A
client generated from /api/schema/ trusts exactly these declarations, so a drift between the code and the schema
fails the test that exposed it.

The schema is generated once per test session (as /api/schema/ serves it, in English). OpenAPI 3.0's schema
dialect (`nullable`, `readOnly`, `writeOnly`, formats such as `email` and `date`) is checked by
openapi-schema-validator's OAS30 validator, with formats enforced.
"""

import json
import re
import threading
from functools import cache

from django.utils import translation
from openapi_schema_validator import OAS30Validator, oas30_format_checker

API_PREFIX = "/api/v1/"
METHODS = {"get", "post", "put", "patch", "delete"}


class SchemaMismatch(AssertionError):
    pass


# drf-spectacular's generator is not thread-safe: the first responses of a concurrency test (threads released at
# once) would otherwise build the schema together (an AttributeError in its plumbing, now and then).
_generating = threading.Lock()


@cache
def _document():
    from drf_spectacular.generators import SchemaGenerator

    with _generating, translation.override("en"):
        document = SchemaGenerator().get_schema(request=None, public=True)
    # The generator's output holds lazy strings and other Python objects: round-trip to plain JSON.
    return _nullable_references(json.loads(json.dumps(document, default=str)))


def _nullable_references(node):
    """drf-spectacular writes a nullable reference as {"allOf": [{"$ref": ...}], "nullable": true}, meaning "the
    referenced object, or null"; that is how generated clients read it (openapi-python-client makes it optional).
    OpenAPI 3.0.3's strict wording applies `nullable` only next to `type`, so the validator is given the meaning
    spelled out: oneOf the reference or null."""
    if isinstance(node, list):
        return [_nullable_references(item) for item in node]
    if not isinstance(node, dict):
        return node
    node = {key: _nullable_references(value) for key, value in node.items()}
    if node.get("nullable") and "type" not in node and any(key in node for key in ("allOf", "oneOf", "anyOf", "$ref")):
        composed = {key: value for key, value in node.items() if key != "nullable"}
        return {"oneOf": [composed, {"enum": [None]}]}
    return node


@cache
def _operations():
    """[(regex, {method: operation})] from the document's paths, most literal paths first so that
    /members/lookup/ is not taken for /members/{id}/."""
    compiled = []
    for template, item in _document()["paths"].items():
        pattern = re.sub(r"\{[^}/]+\}", "[^/]+", re.escape(template).replace(r"\{", "{").replace(r"\}", "}"))
        literal_length = len(re.sub(r"\{[^}/]+\}", "", template))
        compiled.append((literal_length, re.compile(f"^{pattern}$"), item))
    compiled.sort(key=lambda entry: -entry[0])
    return [(regex, item) for _, regex, item in compiled]


def find_operation(path, method):
    for regex, item in _operations():
        if regex.match(path):
            return item.get(method)
    return None


def _validator(schema):
    root = {**schema, "components": _document()["components"]}
    return OAS30Validator(root, format_checker=oas30_format_checker)


def check_response(method, path, response):
    """Raise SchemaMismatch when the response is not one the schema declares for this operation."""
    method = method.lower()
    if not path.startswith(API_PREFIX) or method not in METHODS:
        return
    operation = find_operation(path, method)
    status = response.status_code
    if operation is None:
        if status in (404, 405):  # no such route or method: Django's and DRF's answers, not an operation's
            return
        raise SchemaMismatch(f"{method.upper()} {path} answered {status} but the schema has no such operation")
    responses = operation.get("responses", {})
    declared = responses.get(str(status)) or responses.get("default")
    if declared is None:
        raise SchemaMismatch(
            f"{method.upper()} {path} ({operation.get('operationId')}) answered {status}; "
            f"the schema declares only {sorted(responses)}"
        )
    content_type = response.get("Content-Type", "").split(";")[0].strip()
    if content_type != "application/json" or getattr(response, "streaming", False):
        return
    media = declared.get("content", {}).get("application/json")
    if media is None:
        if not response.content:
            return
        raise SchemaMismatch(f"{method.upper()} {path} answered {status} with JSON the schema does not declare")
    body = json.loads(response.content)
    errors = sorted(_validator(media.get("schema", {})).iter_errors(body), key=lambda error: list(error.path))
    if errors:
        lines = [f"  at {'/'.join(map(str, error.path)) or '(body)'}: {error.message}" for error in errors[:10]]
        raise SchemaMismatch(
            f"{method.upper()} {path} ({operation.get('operationId')}) answered {status} with a body that does "
            "not match the schema:\n" + "\n".join(lines)
        )
