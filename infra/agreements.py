"""The agreements file: the recipients and their agreements as the provision functions read them.

Synth writes it as ``agreements.json`` beside the provision functions' code (see
``bundling.lambda_code(extra_files=...)``); the runtime reads ``$LAMBDA_TASK_ROOT/$AGREEMENTS_FILE``
once per cold start (``lambdas/jukinet/domain/agreements.py``). The format is the contract in
``docs/provision.md`` ("The generated agreements file"): keys sorted, lists sorted, dates ISO,
UTF-8, so an unchanged configuration gives byte-identical bytes (and the same asset hash).
"""

from __future__ import annotations

import json
from typing import Any

from .config import Agency, Agreement, Deployment

AGREEMENTS_FILE = "agreements.json"
VERSION = 1


def _agreement(a: Agreement) -> dict[str, Any]:
    return {
        "affair_code": a.affair_code,
        "affair": a.affair,
        "appended_table": a.appended_table,
        "appended_table_item": a.appended_table_item,
        "functions": sorted(a.functions),
        "fields": sorted(a.fields),
        "valid_from": a.valid_from.isoformat(),
        "valid_until": a.valid_until.isoformat(),
        "monthly_record_limit": a.monthly_record_limit,
        "max_batch_records": a.max_batch_records,
        "agreed_hours": a.agreed_hours,
    }


def _recipient(r: Agency) -> dict[str, Any]:
    return {
        "id": r.agency_id,
        "name": r.name,
        "name_ja": r.name_ja,
        "kind": r.kind,
        "prefecture": r.prefecture,
        "principals": sorted(r.principals),
        "vpc_endpoint_ids": sorted(r.vpc_endpoint_ids),
        "disclosure_principals": sorted(r.disclosure_principals),
        "agreements": [_agreement(a) for a in sorted(r.agreements, key=lambda a: a.affair_code)],
    }


def agreements_data(deployment: Deployment) -> dict[str, Any]:
    return {"version": VERSION,
            "recipients": [_recipient(r) for r in sorted(deployment.agencies, key=lambda r: r.agency_id)]}


def agreements_document(deployment: Deployment) -> bytes:
    """The file's bytes: deterministic JSON (sorted keys, sorted lists, UTF-8, trailing newline)."""
    text = json.dumps(agreements_data(deployment), ensure_ascii=False, sort_keys=True, indent=1)
    return (text + "\n").encode("utf-8")
