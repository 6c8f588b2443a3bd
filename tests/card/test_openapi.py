"""The published counter API document (docs/card-openapi.json) is what the handler's code generates."""

from __future__ import annotations

import json
import re

from jukinet.domain.card import CardRefusalCode
from jukinet.handlers import card_api
from jukinet_ops import card_openapi, openapi


def test_published_document_is_current():
    assert card_openapi.DOCUMENT_PATH.read_text(encoding="utf-8") == card_openapi.render(), (
        "docs/card-openapi.json is stale: regenerate it with `jukinet openapi` and commit it")


def served_routes() -> set[tuple[str, str]]:
    """(METHOD, OpenAPI path) of every route on the counter API handler's Powertools resolver."""
    routes = [*card_api.app._static_routes, *card_api.app._dynamic_routes]
    assert routes, "no routes found on card_api.app (has Powertools renamed its route registry?)"
    return {(r.method.upper(), re.sub(r"<(\w+)>", r"{\1}", r.path)) for r in routes}


def test_the_published_document_and_the_resolver_have_the_same_routes_both_ways():
    # docs/card-openapi.json as committed — what a counter system's developer reads — against the
    # resolver's route table: a route served but not published, or published but not served.
    published = json.loads(card_openapi.DOCUMENT_PATH.read_text(encoding="utf-8"))
    documented = {(m, p) for p, m, _ in openapi.operations(published)}
    served = served_routes()
    assert sorted(served - documented) == [], "served by card_api.app but not in docs/card-openapi.json"
    assert sorted(documented - served) == [], "in docs/card-openapi.json but not served by card_api.app"
    assert {path for _, path in documented} == set(published["paths"])  # no path without an operation


def test_every_route_is_documented_with_every_refusal_code():
    doc = card_openapi.document()
    routes = served_routes()
    documented = {(m, p) for p, m, _ in openapi.operations(doc)}
    from infra.components.counter import ROUTES  # what API Gateway deploys: the comparison that can fail

    assert routes == documented == set(ROUTES) and len(routes) == 21
    assert set(doc["x-error-codes"]) == {c.name for c in CardRefusalCode}
    for _, _, op in openapi.operations(doc):
        assert {"400", "403", "404", "409"} <= set(op["responses"])
