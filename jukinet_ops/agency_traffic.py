"""Agencies calling the provision API on the embedded AWS: who they are locally, and the
demo's traffic — look-ups, searches, the prefecture's own use, one batch, and requests that
must be refused.

Every call goes through ``LocalApi`` (the deployed private REST API served on 127.0.0.1),
signed with SigV4 by botocore as any AWS SDK signs it, with local-only credentials standing
for each configured recipient role.
"""

from __future__ import annotations

import json
import random
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from jukinet.adapters import aws
from jukinet.adapters.identity_store import IdentityStore
from jukinet.adapters.kms import DataKeys
from jukinet.domain.codes import ResidentCode

from embedded_aws.api import LocalApi, LocalPrincipal, local_principals

DISCLOSURE = ":disclosure"
STRANGER = "arn:aws:iam::123456789012:role/not-a-recipient/prober"


def recipient_principals(deployment, runner, api: LocalApi, *, session_tokens: bool = True) -> dict[str, LocalPrincipal]:
    """Local credentials for every configured recipient: key = recipient id (its first
    principal), ``<id>:disclosure`` for a prefecture's disclosure staff, and ``stranger`` (a
    role no agreement names). Each comes through its first configured endpoint; a prefecture
    without one through its tier's execute-api endpoint, as the deployed function knows it.
    ``session_tokens``: see ``local_principals``."""
    from infra.naming import Names

    names = Names.of(deployment)
    api_env = runner.functions[names.provision_function("api")].environment
    prefecture_endpoints = json.loads(api_env.get("PREFECTURE_API_ENDPOINTS") or "{}")
    keys = api.api_keys
    wanted: dict[str, tuple[str, str | None, str | None]] = {}
    for agency in deployment.agencies:
        endpoint = agency.vpc_endpoint_ids[0] if agency.vpc_endpoint_ids else prefecture_endpoints.get(
            agency.prefecture or "")
        key = keys.get(names.provision_api_key(agency.recipient_id))
        wanted[agency.recipient_id] = (agency.principals[0], endpoint, key)
        if agency.disclosure_principals:
            wanted[agency.recipient_id + DISCLOSURE] = (agency.disclosure_principals[0], endpoint, key)
    any_key = next(iter(keys.values()), None)
    wanted["stranger"] = (STRANGER, next(iter(prefecture_endpoints.values()), None), any_key)
    made = local_principals({arn: endpoint for arn, endpoint, _ in wanted.values()},
                            api_keys={arn: key for arn, _, key in wanted.values() if key},
                            session_tokens=session_tokens)
    return {label: made[arn] for label, (arn, _, _) in wanted.items()}


def active_codes(deployment, limit: int) -> list[str]:
    """Up to ``limit`` resident codes with an active current state in the national table."""
    from infra.naming import NATIONAL, Names

    ddb = aws.client("dynamodb")
    codes: list[str] = []
    kwargs: dict = {"TableName": Names.of(deployment).identity_table(NATIONAL),
                    "FilterExpression": "sk = :c AND #s = :a", "ExpressionAttributeNames": {"#s": "status"},
                    "ExpressionAttributeValues": {":c": {"S": "CURRENT"}, ":a": {"S": "active"}},
                    "ProjectionExpression": "pk"}
    while len(codes) < limit:
        page = ddb.scan(**kwargs)
        codes += [i["pk"]["S"][2:] for i in page["Items"]]
        if "LastEvaluatedKey" not in page:
            break
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
    return codes[:limit]


def active_among(deployment, candidates: Sequence[str], limit: int) -> list[str]:
    """Up to ``limit`` of ``candidates`` (in their order) with an active current state in the
    national table: what ``active_codes`` finds, without a scan. The demo knows whom its month
    sent; each ``Scan`` of the ~60,000-item table costs the embedded AWS the whole table (moto
    walks every item for each page), one ``BatchGetItem`` of 100 keys costs 100 items."""
    from infra.naming import NATIONAL, Names
    from jukinet.adapters.identity_store import CURRENT, resident_pk

    table = Names.of(deployment).identity_table(NATIONAL)
    codes: list[str] = []
    unique = list(dict.fromkeys(candidates))
    for start in range(0, len(unique), 100):
        if len(codes) >= limit:
            break
        chunk = unique[start:start + 100]
        items = aws.batch_get_all(table, [{"pk": {"S": resident_pk(c)}, "sk": {"S": CURRENT}} for c in chunk],
                                  "pk, #s", {"#s": "status"})
        active = {i["pk"]["S"][2:] for i in items if i.get("status", {}).get("S") == "active"}
        codes += [c for c in chunk if c in active]
    return codes[:limit]


def sample_residents(deployment, count: int, seed: int = 7, candidates: Sequence[str] | None = None) -> list[dict]:
    """Up to ``count`` active residents of the national table, with the facts a search needs
    (read as an operator of the embedded AWS would, with the tier's envelope key).
    ``candidates``: the resident codes to choose from (the demo's month: no scan of the table;
    see ``active_among``); without, the first active ones a scan finds."""
    from infra.naming import NATIONAL, Names

    names = Names.of(deployment)
    table = names.identity_table(NATIONAL)
    if candidates is not None:
        shuffled = list(dict.fromkeys(candidates))
        random.Random(seed).shuffle(shuffled)
        codes = active_among(deployment, shuffled, count)
    else:
        codes = active_codes(deployment, count * 4)
        random.Random(seed).shuffle(codes)
    key = aws.client("kms").describe_key(KeyId=names.key_alias(NATIONAL, "envelope"))["KeyMetadata"]["Arn"]
    store = IdentityStore(table, DataKeys(key, {"tier": "national"}))
    found = store.currents(codes[:count])
    return [{"code": c, "kana": e.facts.name.kana, "birth_date": e.facts.birth_date.isoformat(),
             "municipality": e.municipality} for c, e in found.items() if e.facts is not None]


@dataclass
class TrafficReport:
    served: Counter = field(default_factory=Counter)  # (recipient, what) -> requests answered 2xx
    refused: list[tuple[str, str, int, str]] = field(default_factory=list)  # (who, what, status, code/message)
    batch: dict = field(default_factory=dict)
    disclosure_code: str | None = None
    latencies_ms: list[float] = field(default_factory=list)


def run_demo_traffic(api: LocalApi, principals: Mapping[str, LocalPrincipal], deployment, runner,
                     residents: Sequence[dict], *, batch_rows: int = 2_000,
                     on_step: Callable[[str], None] | None = None,
                     after_attacks: Callable[[], None] | None = None,
                     candidates: Sequence[str] | None = None) -> TrafficReport:
    """The demo's month of agency traffic against the deployed provision API.
    ``after_attacks`` runs right after the refused requests and the scan (the demo evaluates
    the alarms there, within the alarms' 5-minute periods). ``candidates``: the resident codes
    the batch's rows are chosen from (the active ones, by ``active_among``); without, the
    first active ones a scan of the national table finds."""
    from infra.naming import Names

    names = Names.of(deployment)
    report = TrafficReport()
    rng = random.Random(2003)
    codes = [r["code"] for r in residents]
    nagano = [r["code"] for r in residents if r["municipality"].startswith("20")]
    step = on_step or (lambda _: None)

    def call(who: str, method: str, path: str, body: dict | None = None, what: str = "",
             headers: dict | None = None) -> tuple[int, dict]:
        started = time.perf_counter()
        response = api.request(principals[who], method, path, body=json.dumps(body) if body is not None else None,
                               headers={"Content-Type": "application/json", **(headers or {})})
        report.latencies_ms.append((time.perf_counter() - started) * 1000)
        payload = response.json() if response.body else {}
        if 200 <= response.status < 300:
            report.served[(who, what or path)] += 1
        else:
            code = (payload.get("error") or {}).get("code") or payload.get("message", "")
            report.refused.append((who, what or path, response.status, code))
        return response.status, payload

    step("look-ups and searches")
    sample = codes[:40]
    for i in range(0, 40, 4):  # MHLW relief pensions: look-ups of a few codes
        call("mhlw-engo", "POST", "/v1/lookups", {"affair_code": "DEMO-T1-ENGO-PENSION",
                                                  "resident_codes": sample[i:i + 4]}, "look-up")
    for r in residents[:5]:
        call("mhlw-engo", "POST", "/v1/searches", {"affair_code": "DEMO-T1-ENGO-PENSION", "kana_name": r["kana"],
                                                   "birth_date": r["birth_date"]}, "search")
    for code in sample[:10]:  # the Pension Service: address changes
        call("nenkin", "POST", "/v1/lookups", {"affair_code": "DEMO-T1-NENKIN-ADDRESS", "resident_codes": [code]},
             "look-up")
    for code in sample[:6]:  # the FSA: banking-law approvals, name and address only
        call("fsa", "POST", "/v1/lookups", {"affair_code": "DEMO-T1-FSA-BANKING-LICENCE", "resident_codes": [code]},
             "look-up")
    call("fsa", "POST", "/v1/searches", {"affair_code": "DEMO-T1-FSA-BANKING-LICENCE",
                                         "kana_name": residents[0]["kana"], "birth_date": residents[0]["birth_date"]},
         "search")
    own = nagano[:8] or sample[:8]
    for code in own:  # the prefecture's own use: passport issuance
        call("nagano-pref", "POST", "/v1/lookups", {"affair_code": "DEMO-PREF-PASSPORT", "resident_codes": [code]},
             "own use")
    report.disclosure_code = sample[0]

    step("refused requests")
    bad = sample[1][:-1] + str((int(sample[1][-1]) + 1) % 10)
    call("stranger", "POST", "/v1/lookups", {"affair_code": "DEMO-T1-ENGO-PENSION", "resident_codes": sample[:1]},
         "a role no agreement names")
    call("mhlw-engo", "POST", "/v1/lookups", {"affair_code": "DEMO-T1-ENGO-PENSION", "resident_codes": sample[:1]},
         "through an endpoint not configured", headers={"X-Jukinet-Local-Source-Vpce": "vpce-0bad0000000000bad"})
    call("fsa", "POST", "/v1/lookups", {"affair_code": "DEMO-T1-ENGO-PENSION", "resident_codes": sample[:1]},
         "an affair outside its agreements")
    call("nenkin", "POST", "/v1/lookups", {"affair_code": "DEMO-T1-NENKIN-ALIVE-CHECK", "resident_codes": sample[:1]},
         "a look-up under a batch-only agreement")
    call("fsa", "POST", "/v1/lookups", {"affair_code": "DEMO-T1-FSA-BANKING-LICENCE", "resident_codes": sample[:1],
                                        "fields": ["name", "individual_number"]}, "a field not permitted")
    call("mhlw-engo", "POST", "/v1/lookups", {"affair_code": "DEMO-T1-ENGO-PENSION", "resident_codes": [bad]},
         "a resident code with a wrong check digit")
    call("mhlw-engo", "POST", "/v1/lookups", {"affair_code": "DEMO-T1-ENGO-PENSION",
                                              "resident_codes": codes[:101] * 2}, "an oversized request")

    step("an injected attack: walking through consecutive resident codes")
    start = 6_100_000_000 + rng.randrange(1_000_000)
    walk = [ResidentCode.from_body(f"{start + i:010d}").value for i in range(100)]
    for i in range(0, len(walk), 10):  # a recipient's credentials used to enumerate residents
        call("mhlw-engo", "POST", "/v1/lookups", {"affair_code": "DEMO-T1-ENGO-PENSION",
                                                  "resident_codes": walk[i:i + 10]}, "scan: consecutive codes")

    if after_attacks is not None:
        after_attacks()

    step(f"one batch of {batch_rows:,} rows (一括提供)")
    rows = active_codes(deployment, batch_rows) if candidates is None else active_among(deployment, candidates,
                                                                                         batch_rows)
    rng.shuffle(rows)
    key = "in/chikyosai/2003-01-pension-check.csv"
    aws.client("s3").put_object(Bucket=names.provision_batch_bucket(deployment.national.env), Key=key,
                                Body=("resident_code\n" + "\n".join(rows) + "\n").encode())
    started = time.perf_counter()
    status, accepted = call("chikyosai", "POST", "/v1/batches", {"affair_code": "DEMO-T1-CHIKYOSAI-PENSION",
                                                                "input_key": key}, "batch")
    job: dict = {}
    if status == 202:
        runner.run_until_idle(timeout_s=600)
        _, job = call("chikyosai", "GET", f"/v1/batches/{accepted['job_id']}", what="batch status")
    report.batch = {"rows": len(rows), "seconds": time.perf_counter() - started, **job}
    return report
