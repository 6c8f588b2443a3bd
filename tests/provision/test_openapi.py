"""The published OpenAPI document (docs/openapi.json) is what the provision API's code generates."""

from __future__ import annotations

import json
import re

import pytest

from infra.naming import PROVISION_API_STAGE
from jukinet.domain.provision import RefusalCode
from jukinet.handlers import provision_api
from jukinet_ops import openapi

ERROR_REF = "#/components/schemas/ErrorResponse"


@pytest.fixture(scope="module")
def doc() -> dict:
    return openapi.document()


def handler_routes() -> set[tuple[str, str]]:
    """(METHOD, OpenAPI path) of every route registered on the handler's resolver."""
    routes = [*provision_api.app._static_routes, *provision_api.app._dynamic_routes]
    assert routes, "no routes found on provision_api.app (has Powertools renamed its route registry?)"
    return {(route.method.upper(), re.sub(r"<(\w+)>", r"{\1}", route.path)) for route in routes}


def test_published_document_is_current():
    path = openapi.DOCUMENT_PATH
    assert path.is_file(), f"{path} is missing: generate it with `{openapi.REGENERATE}`"
    assert path.read_text(encoding="utf-8") == openapi.render(), (
        f"docs/openapi.json is stale (it differs from what lambdas/jukinet/handlers/provision_api.py generates): "
        f"regenerate it with `{openapi.REGENERATE}` and commit it")


def test_rendering_is_deterministic(doc):
    text = openapi.render(doc)
    assert text == openapi.render() and text.endswith("}\n") and not text.endswith("\n\n")
    assert json.loads(text) == doc
    assert "\\u" not in text  # ensure_ascii=False: 照会 stays readable
    assert text == json.dumps(json.loads(text), sort_keys=True, indent=2, ensure_ascii=False) + "\n"


def test_check_reports_a_stale_file_and_how_to_regenerate(tmp_path, capsys, monkeypatch):
    from jukinet_ops import card_openapi

    # `jukinet openapi` also writes the counter API's document: into tmp_path here, never over the committed
    # docs/card-openapi.json (which would hide that one's staleness from tests/card/test_openapi.py).
    write_card = card_openapi.write
    monkeypatch.setattr(card_openapi, "write", lambda path=tmp_path / "card-openapi.json": write_card(path))
    out = tmp_path / "openapi.json"
    assert openapi.main(["--check", "--out", str(out)]) == 1
    assert "missing" in capsys.readouterr().err
    assert openapi.main(["--out", str(out)]) == 0
    assert out.read_text(encoding="utf-8") == openapi.render()
    assert openapi.main(["--check", "--out", str(out)]) == 0
    out.write_text(out.read_text(encoding="utf-8").replace('"1.0.0"', '"0.9.0"'), encoding="utf-8")
    assert openapi.main(["--check", "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert str(out) in err and "stale" in err and openapi.REGENERATE in err


def test_document_is_valid_openapi_31(doc):
    validator = pytest.importorskip("openapi_spec_validator")
    validator.validate(doc)
    assert doc["openapi"].startswith("3.1")


def test_the_gateway_the_handler_and_the_document_have_the_same_routes(doc):
    # The document is generated from the handler, so the comparison that can fail is with the
    # API Gateway methods infra deploys: a route served but not deployed (or deployed and not
    # served, or deployed without its resource-policy statement) fails here.
    from infra.stacks.provision import DISCLOSURE_ROUTES, RECIPIENT_ROUTES

    deployed = {(method, path) for method, path in (*RECIPIENT_ROUTES, *DISCLOSURE_ROUTES)}
    documented = {(method, path) for path, method, _ in openapi.operations(doc)}
    assert handler_routes() == documented == deployed


def test_the_published_document_and_the_resolver_have_the_same_routes_both_ways():
    # docs/openapi.json as committed — what a client reads — against the route table of the
    # handler's Powertools resolver: a route served but not published, or published but not served.
    published = json.loads(openapi.DOCUMENT_PATH.read_text(encoding="utf-8"))
    documented = {(method, path) for path, method, _ in openapi.operations(published)}
    served = handler_routes()
    assert sorted(served - documented) == [], "served by provision_api.app but not in docs/openapi.json"
    assert sorted(documented - served) == [], "in docs/openapi.json but not served by provision_api.app"
    assert {path for _, path in documented} == set(published["paths"])  # no path without an operation


def test_title_version_servers_and_security(doc):
    assert doc["info"]["title"] == provision_api.API_TITLE
    assert doc["info"]["version"] == provision_api.API_VERSION
    assert "docs/provision.md" in doc["info"]["description"]
    (server,) = doc["servers"]
    assert server["url"] == f"https://{{api_id}}-{{vpce_id}}.execute-api.{{region}}.amazonaws.com/{PROVISION_API_STAGE}"
    assert set(re.findall(r"{(\w+)}", server["url"])) == set(server["variables"])
    assert all("default" in v for v in server["variables"].values())
    schemes = doc["components"]["securitySchemes"]
    assert schemes["sigv4"] == {**schemes["sigv4"], "type": "apiKey", "in": "header", "name": "Authorization",
                                "x-amazon-apigateway-authtype": "awsSigv4"}
    assert schemes["api_key"] == {**schemes["api_key"], "type": "apiKey", "in": "header", "name": "x-api-key"}
    assert doc["security"] == [{"sigv4": [], "api_key": []}]


@pytest.mark.parametrize("status", ["403", *[str(s) for s in openapi.ERROR_STATUSES]])
def test_every_operation_documents_errors_with_the_error_schema(doc, status):
    for path, method, op in openapi.operations(doc):
        response = op["responses"].get(status)
        assert response is not None, f"{method} {path} does not document {status}"
        assert response["content"]["application/json"]["schema"] == {"$ref": ERROR_REF}, (method, path, status)
        assert "422" not in op["responses"], f"{method} {path} still documents Powertools' 422"


def test_error_codes_are_the_refusal_codes(doc):
    codes = doc["x-error-codes"]
    assert list(codes) == [c.name for c in RefusalCode]
    for c in RefusalCode:
        assert codes[c.name]["status"] == c.status and codes[c.name]["unauthorised"] == c.unauthorised
        assert f"`{c.name}`" in doc["info"]["description"]
        assert str(c.status) in {s for _, _, op in openapi.operations(doc) for s in op["responses"]}
    detail = doc["components"]["schemas"]["ErrorDetail"]
    assert detail["properties"]["code"]["enum"] == [c.name for c in RefusalCode]
    assert set(detail["properties"]) == {"code", "message", "field", "rule", "request_id"}
    assert detail["required"] == ["code", "message"]


def test_no_dangling_or_unused_schemas(doc):
    refs = {r.rsplit("/", 1)[-1] for r in openapi._refs(doc)}
    schemas = set(doc["components"]["schemas"])
    assert refs <= schemas
    assert schemas - refs == set()
    assert "HTTPValidationError" not in schemas
