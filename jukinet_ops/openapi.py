"""The provision API's OpenAPI document, generated from the handler's code.

The routes live in ``lambdas/jukinet/handlers/provision_api.py``, their request/response models in
``lambdas/jukinet/handlers/provision_models.py``; Powertools derives the paths and schemas from them. This module gives Powertools what the code cannot say
by itself — where the API is served, how a caller authenticates, the tags, the error codes
(``RefusalCode``) — then documents the error responses on every operation (the one thing the
library cannot take for all routes at once) and writes the result to ``docs/openapi.json``, byte-stable for
unchanged code, so that a test can fail when the published file is stale.

    python -m jukinet_ops.openapi            write docs/openapi.json
    python -m jukinet_ops.openapi --check    exit 1 if docs/openapi.json differs from the code
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from infra.naming import PROVISION_API_STAGE

ROOT = Path(__file__).resolve().parents[1]
DOCUMENT_PATH = ROOT / "docs" / "openapi.json"
REGENERATE = "python -m jukinet_ops.openapi"  # also `jukinet openapi` once wired into the CLI

#: The statuses every operation documents, with the error schema.
ERROR_STATUSES = (400, 403, 404, 413, 429)

#: What each ``RefusalCode`` means to a caller. A code without an entry fails generation.
ERROR_CODE_MEANINGS = {
    "UNKNOWN_CALLER": "the signing principal is not a configured recipient",
    "ENDPOINT_NOT_ALLOWED": "the request did not come through an interface endpoint configured for the recipient",
    "AFFAIR_NOT_AGREED": "no agreement of the recipient covers the affair",
    "FUNCTION_NOT_AGREED": "the agreement does not include this function (lookup, search, batch, own use)",
    "AGREEMENT_NOT_IN_FORCE": "the agreement is not valid today",
    "FIELD_NOT_PERMITTED": "a requested field is not permitted by the agreement",
    "DISCLOSURE_NOT_PERMITTED": "the caller is not disclosure staff of a prefecture, or the resident is not registered in the "
                                "staff's prefecture (field `resident_code`)",
    "RECIPIENT_ISOLATED": "the recipient is isolated under the emergency plan (jukinet isolate agency); alarmed",
    "INVALID_RESIDENT_CODE": "a resident code is malformed (11 digits with a valid check digit)",
    "INVALID_REQUEST": "the request does not match its schema or a rule of the API (field and rule say which)",
    "REQUEST_TOO_LARGE": "the body is over the size limit, too many resident codes, or the batch file is too large",
    "VOLUME_LIMIT_EXCEEDED": "the agreement's monthly record limit would be exceeded (records are reserved "
                             "before they are provided, look-ups and batches together)",
    "NOT_FOUND": "no such route, or no such batch job of this recipient",
}

STATUS_TITLES = {400: "Bad request", 403: "Refused", 404: "Not found", 413: "Request too large",
                 429: "Volume limit exceeded"}

TAGS = [
    {"name": "provision", "description": "Look-ups by resident code (照会, the prefecture's own use 利用) and "
                                         "searches by the four basic facts (検索)."},
    {"name": "batch", "description": "Batch provision (一括提供) of an uploaded file of resident codes."},
    {"name": "disclosure", "description": "Disclosure of provisions (提供状況の開示) to a resident, through "
                                          "the prefecture's disclosure staff."},
]

SERVERS = [{
    "url": "https://{api_id}-{vpce_id}.execute-api.{region}.amazonaws.com/" + PROVISION_API_STAGE,
    "description": "The private REST API, reached through an execute-api interface VPC endpoint configured "
                   "for the recipient (the Route 53 alias form of the endpoint's DNS name).",
    "variables": {
        "api_id": {"default": "api_id", "description": "the REST API id (stack output of the national tier)"},
        "vpce_id": {"default": "vpce-0123456789abcdef0",
                    "description": "the caller's execute-api interface VPC endpoint id"},
        "region": {"default": "ap-northeast-1", "description": "the deployment's region"},
    },
}]

SECURITY_SCHEMES = {
    "sigv4": {
        "type": "apiKey", "in": "header", "name": "Authorization",
        "x-amazon-apigateway-authtype": "awsSigv4",
        "description": "AWS Signature Version 4 (service `execute-api`), signed with a role that the "
                       "recipient's configuration names (`principals`; `disclosure_principals` for disclosure "
                       "staff). The function identifies the recipient by the signing principal and checks the "
                       "VPC endpoint the request came through.",
    },
    "api_key": {
        "type": "apiKey", "in": "header", "name": "x-api-key",
        "description": "The recipient's API key: its usage plan sets its throttling (`throttle_rate`, "
                       "`throttle_burst`).",
    },
}

DESCRIPTION = """\
The private REST API of the national tier through which national agencies — and a prefecture, \
for its own use — receive residents' identity facts (本人確認情報の提供) under their agreements, \
and through which a prefecture's disclosure staff disclose to a resident who received their facts.

Every request is signed with SigV4 and carries the recipient's API key, and comes through an \
execute-api interface VPC endpoint configured for the recipient. Who may receive which fields \
for which affair, the tamper-evident provision log and the disclosure are described in \
[docs/provision.md](provision.md). Requests are limited to {max_bytes} bytes and look-ups to \
{max_codes} resident codes.

This document is generated from the handler's code (`lambdas/jukinet/handlers/provision_api.py`) \
by `{regenerate}`; a test fails when the published copy is stale.

## Errors

Every refusal by the API is a JSON body `{{"error": {{"code", "message", "field"?, "rule"?, \
"request_id"?}}}}` (schema `ErrorResponse`) whose `code` is one of the codes below (also listed, \
machine-readably, in `x-error-codes`). `field` names the offending request field and `rule` the \
rule it broke. A refusal is decided before any resident data is read, and no message says \
anything about a resident. Requests API Gateway itself rejects before the function runs (an \
invalid signature, a resource policy denial, throttling by the usage plan) carry API Gateway's \
own body `{{"message": ...}}` instead.

| code | HTTP status | meaning |
| --- | --- | --- |
{table}
"""


def _refusal_codes() -> list[Any]:
    from jukinet.domain.provision import RefusalCode

    return list(RefusalCode)


def error_codes() -> dict[str, dict[str, Any]]:
    """``x-error-codes``: every ``RefusalCode`` with its HTTP status, whether it is an
    unauthorised attempt (counted and alarmed), and what it means."""
    codes: dict[str, dict[str, Any]] = {}
    for code in _refusal_codes():
        if code.name not in ERROR_CODE_MEANINGS:
            raise KeyError(f"RefusalCode.{code.name} has no entry in jukinet_ops.openapi.ERROR_CODE_MEANINGS")
        codes[code.name] = {"status": code.status, "unauthorised": code.unauthorised,
                            "description": ERROR_CODE_MEANINGS[code.name]}
    stale = sorted(set(ERROR_CODE_MEANINGS) - set(codes))
    if stale:
        raise KeyError(f"ERROR_CODE_MEANINGS names codes RefusalCode does not have: {stale}")
    undocumented = sorted({c["status"] for c in codes.values()} - set(ERROR_STATUSES))
    if undocumented:
        raise KeyError(f"RefusalCode uses statuses not in ERROR_STATUSES: {undocumented}")
    return codes


def _error_schemas(codes: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return {
        "ErrorResponse": {
            "title": "ErrorResponse", "type": "object", "required": ["error"],
            "description": "Every refusal of the API.",
            "properties": {"error": {"$ref": "#/components/schemas/ErrorDetail"}},
        },
        "ErrorDetail": {
            "title": "ErrorDetail", "type": "object", "required": ["code", "message"],
            "properties": {
                "code": {"type": "string", "enum": list(codes), "title": "Code",
                         "description": "the refusal code (x-error-codes)"},
                "message": {"type": "string", "title": "Message",
                            "description": "for people; says nothing about any resident"},
                "field": {"type": "string", "title": "Field", "description": "the request field that was wrong"},
                "rule": {"type": "string", "title": "Rule", "description": "the rule the request broke"},
                "request_id": {"type": "string", "title": "Request Id",
                               "description": "API Gateway's request id, to quote to the operators"},
            },
        },
    }


def _error_response(status: int, codes: dict[str, dict[str, Any]]) -> dict[str, Any]:
    names = [name for name, c in codes.items() if c["status"] == status]
    description = f"{STATUS_TITLES.get(status, 'Refused')}: " + ", ".join(f"`{n}`" for n in names)
    if status == 429:
        description += " (API Gateway's own throttling by the usage plan also answers 429, with its own body)"
    return {"description": description,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}}}


def _refs(node: Any) -> set[str]:
    if isinstance(node, dict):
        found = {node["$ref"]} if isinstance(node.get("$ref"), str) else set()
        for value in node.values():
            found |= _refs(value)
        return found
    if isinstance(node, list):
        return set().union(*(_refs(v) for v in node)) if node else set()
    return set()


HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


def operations(doc: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """``(path, METHOD, operation)`` for every operation of ``doc``."""
    return [(path, method.upper(), op) for path, item in sorted(doc.get("paths", {}).items())
            for method, op in sorted(item.items()) if method in HTTP_METHODS]


def generate(app: Any, *, title: str, version: str, description: str, servers: list[dict[str, Any]],
             security_schemes: dict[str, Any], security: list[dict[str, list[str]]],
             tags: list[dict[str, Any]] | None = None, extensions: dict[str, Any] | None = None) -> dict[str, Any]:
    """Powertools' document of ``app`` (a resolver) with what the library itself takes: the
    description, servers, tags, security schemes and requirement, and ``x-`` extensions."""
    from aws_lambda_powertools.event_handler.openapi.models import Server, Tag

    schema = app.get_openapi_schema(
        title=title, version=version, description=description, servers=[Server(**s) for s in servers],
        tags=[Tag(**t) for t in tags] if tags else None, security_schemes=security_schemes, security=security,
        openapi_extensions=extensions)
    return json.loads(schema.model_dump_json(by_alias=True, exclude_none=True))


def with_error_responses(doc: dict[str, Any], responses: dict[int, dict[str, Any]]) -> dict[str, Any]:
    """What Powertools cannot say for every route at once: each operation documents ``responses``
    (status → response object) instead of Powertools' own 422 body (the handlers answer every
    validation error 400 ``INVALID_REQUEST``); then the schemas nothing refers to any more
    (Powertools' ``HTTPValidationError`` and ``ValidationError``) are dropped."""
    for _, _, op in operations(doc):
        documented = op.setdefault("responses", {})
        documented.pop("422", None)
        for status, response in responses.items():
            documented[str(status)] = response
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    while True:
        used = {ref.rsplit("/", 1)[-1] for ref in _refs(doc) if ref.startswith("#/components/schemas/")}
        unused = [name for name in schemas if name not in used and name != "ErrorResponse"]
        if not unused:
            return doc
        for name in unused:
            del schemas[name]


def document() -> dict[str, Any]:
    """The provision API's OpenAPI document (a JSON-able dict)."""
    from jukinet.domain.provision import MAX_LOOKUP_CODES, MAX_REQUEST_BYTES
    from jukinet.handlers import provision_api

    codes = error_codes()
    table = "\n".join(f"| `{name}` | {c['status']} | {c['description']}"
                      f"{' (an unauthorised attempt: counted and alarmed)' if c['unauthorised'] else ''} |"
                      for name, c in codes.items())
    doc = generate(provision_api.app, title=provision_api.API_TITLE, version=provision_api.API_VERSION,
                   description=DESCRIPTION.format(max_bytes=MAX_REQUEST_BYTES, max_codes=MAX_LOOKUP_CODES,
                                                  regenerate=REGENERATE, table=table),
                   servers=SERVERS, tags=TAGS, security_schemes=SECURITY_SCHEMES,
                   security=[{"sigv4": [], "api_key": []}], extensions={"x-error-codes": codes})
    # A relative link to the docs beside the published file: the library's model takes absolute URLs only.
    doc["externalDocs"] = {"description": "Provision to agencies: agreements, the provision log, disclosure",
                           "url": "provision.md"}
    doc["components"].setdefault("schemas", {}).update(_error_schemas(codes))
    return with_error_responses(doc, {status: _error_response(status, codes) for status in ERROR_STATUSES})


def render(doc: dict[str, Any] | None = None) -> str:
    """The document as published: sorted keys, 2-space indent, UTF-8 as is, one trailing newline."""
    return json.dumps(document() if doc is None else doc, sort_keys=True, indent=2, ensure_ascii=False) + "\n"


def write(path: Path | str = DOCUMENT_PATH) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render(), encoding="utf-8")
    return path


def is_current(path: Path | str = DOCUMENT_PATH) -> bool:
    path = Path(path)
    return path.is_file() and path.read_text(encoding="utf-8") == render()


def _shown(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--check", action="store_true",
                        help="do not write; exit 1 if the file differs from what the code generates")
    parser.add_argument("--out", default=str(DOCUMENT_PATH), help="the document (default: docs/openapi.json)")


def run(args: argparse.Namespace) -> int:
    from . import card_openapi

    path = Path(args.out)
    if args.check:
        if not card_openapi.is_current():
            print(f"{_shown(card_openapi.DOCUMENT_PATH)} is stale or missing: it does not match the counter API's "
                  f"code. Regenerate it with `{REGENERATE}` (or `jukinet openapi`) and commit it.", file=sys.stderr)
            return 1
        if is_current(path):
            print(f"{_shown(path)} is up to date")
            return 0
        state = "stale" if path.is_file() else "missing"
        print(f"{_shown(path)} is {state}: it does not match the provision API's code. "
              f"Regenerate it with `{REGENERATE}` (or `jukinet openapi`) and commit it.", file=sys.stderr)
        return 1
    print(f"OpenAPI document written to {_shown(write(path))}")
    print(f"OpenAPI document of the counter API written to {_shown(card_openapi.write())}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jukinet_ops.openapi", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
