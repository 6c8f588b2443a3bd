"""The published counter API document (docs/card-openapi.json) is what the handler's code generates."""

from __future__ import annotations

import re

from jukinet.domain.card import CardRefusalCode
from jukinet.handlers import card_api
from jukinet_ops import card_openapi


def test_published_document_is_current():
    assert card_openapi.DOCUMENT_PATH.read_text(encoding="utf-8") == card_openapi.render(), (
        "docs/card-openapi.json is stale: regenerate it with `jukinet openapi` and commit it")


def test_every_route_is_documented_with_every_refusal_code():
    doc = card_openapi.document()
    routes = {(r.method.upper(), re.sub(r"<(\w+)>", r"{\1}", r.path))
              for r in [*card_api.app._static_routes, *card_api.app._dynamic_routes]}
    documented = {(m, p) for p, m, _ in card_openapi.operations(doc)}
    from infra.components.counter import ROUTES  # what API Gateway deploys: the comparison that can fail

    assert routes == documented == set(ROUTES) and len(routes) == 11
    assert set(doc["x-error-codes"]) == {c.name for c in CardRefusalCode}
    for _, _, op in card_openapi.operations(doc):
        assert {"400", "403", "404", "409"} <= set(op["responses"])
