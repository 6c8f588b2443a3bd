"""The demo's counter step (住基カード): cards issued at one municipality's counter, one
authenticated at another's, a lost card suspended by the operator and refused, a wrong PIN
locking a card — through the deployed private counter API served by ``LocalApi``, with
virtual IC chips held here (their private keys never leave them). Then a wide-area copy
(住民票の写しの広域交付, decision 0046) at the second municipality's counter for the first's
resident whose card it authenticated, its PDF written to ``.jukinet/reports/``, and one refused
(a member not in the applicant's household). Last, a special move-out/move-in (特例転出・特例転入,
docs/second-phase.md part 4) of a card holder from 上田市 to 飯田市, the card carried over, and the
matching 転出 and 特例転入 notices sent by the two CSs through the normal export path and
reconciled."""

from __future__ import annotations

import base64
import json
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from jukinet.domain.card import CardLocked, VirtualCard, WrongPin


def counter_principals(deployment, runner) -> dict[str, Any]:
    """Local credentials: each municipality's counter-staff role (key: its code) and the
    tier's operator (``operator``), coming through the tier's execute-api endpoint."""
    from infra.naming import Names, municipality_tier
    from embedded_aws.api import local_principals

    names = Names.of(deployment)
    prefecture = deployment.prefectures[0]
    env = prefecture.municipality_tier.env
    endpoint = runner.functions[names.card_api(prefecture.code)].environment["API_ENDPOINT_IDS"]
    roles = {m.code: names.counter_role_arn(env, prefecture.code, m.code)
             for m in prefecture.municipality_tier.municipalities}
    roles["operator"] = names.people_role_arn(env, municipality_tier(prefecture.code), "operator")
    made = local_principals({arn: endpoint for arn in roles.values()})
    return {label: made[arn] for label, arn in roles.items()}


def active_residents(deployment, municipality: str, limit: int, candidates: Iterable[str] | None = None) -> list[str]:
    """Up to ``limit`` residents the tier's register shows living in ``municipality`` (the
    lowest codes). ``candidates``: every resident code that may be registered there (the demo's
    month knows whom its notices named): their register entries are read by key
    (``BatchGetItem``), not by a scan of the table, which costs the embedded AWS the whole
    table per page; without, the table is scanned."""
    from infra.naming import Names
    from jukinet.adapters import aws

    table = Names.of(deployment).card_table(deployment.prefectures[0].code)
    if candidates is not None:
        return sorted(_registered(table, sorted(set(candidates)), municipality, limit))[:limit]
    found: list[str] = []
    kwargs: dict = {}
    while len(found) < limit:
        page = aws.client("dynamodb").scan(
            TableName=table, FilterExpression="sk = :r AND municipality = :m AND ended = :e AND reason <> :out",
            ExpressionAttributeValues={":r": {"S": "REGISTER"}, ":m": {"S": municipality}, ":e": {"S": ""},
                                       ":out": {"S": "21"}}, **kwargs)
        found += [i["pk"]["S"].removeprefix("RESIDENT#") for i in page.get("Items", [])]
        if "LastEvaluatedKey" not in page:
            break
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
    return sorted(found)[:limit]


def _registered(table: str, codes: list[str], municipality: str, limit: int) -> list[str]:
    """The first ``limit`` (at least) of ``codes`` whose register entry says they live in
    ``municipality``: the scan's filter (``active_residents``) applied to the entries read by
    key, 100 a ``BatchGetItem``, until ``limit`` are found."""
    from jukinet.adapters import aws

    found: list[str] = []
    for start in range(0, len(codes), 100):
        if len(found) >= limit:  # codes are sorted: the lowest ``limit`` are found
            break
        items = aws.batch_get_all(table, [{"pk": {"S": f"RESIDENT#{c}"}, "sk": {"S": "REGISTER"}}
                                          for c in codes[start:start + 100]], "pk, municipality, ended, reason")
        found += [i["pk"]["S"].removeprefix("RESIDENT#") for i in items
                  if i.get("municipality", {}).get("S") == municipality and i.get("ended", {}).get("S") == ""
                  and i.get("reason", {}).get("S") != "21"]
    return found


class Counter:
    """A counter terminal: its clerk's credentials and the served API."""

    def __init__(self, api, principal) -> None:
        self.api, self.principal = api, principal
        self.authenticated: dict[str, str] = {}  # card serial → the challenge id of its last good authentication

    def post(self, path: str, body: dict | None = None) -> tuple[int, dict]:
        response = self.api.request(self.principal, "POST", path, body=json.dumps(body or {}),
                                    headers={"Content-Type": "application/json"})
        return response.status, response.json()

    def get(self, path: str) -> tuple[int, dict]:
        response = self.api.request(self.principal, "GET", path, headers={"Content-Type": "application/json"})
        return response.status, response.json()

    def issue(self, resident_code: str, chip: VirtualCard, card_type: str = "B") -> dict:
        status, card = self.post("/v1/cards", {"resident_code": resident_code, "card_type": card_type,
                                            "public_key": chip.public_key})
        if status != 201:
            raise RuntimeError(f"issuance refused: {card}")
        chip.serial = card["serial"]
        return card

    def authenticate(self, chip: VirtualCard, pin: str) -> tuple[int, dict]:
        status, challenge = self.post("/v1/challenges", {"serial": chip.serial})
        if status != 200:
            return status, challenge
        try:
            signature = chip.sign(challenge["message"].encode(), pin)
        except (WrongPin, CardLocked) as exc:
            _, counted = self.post(f"/v1/challenges/{challenge['challenge_id']}/pin-failure")
            return 0, {"chip": str(exc), **counted}
        status, body = self.post("/v1/authentications", {"challenge_id": challenge["challenge_id"],
                                                          "signature": base64.b64encode(signature).decode()})
        if status == 200:
            self.authenticated[chip.serial or ""] = challenge["challenge_id"]
        return status, body


@dataclass(frozen=True)
class CopyDemo:
    """The demo's wide-area copies: one issued (its PDF written), one refused."""

    issuer: str
    issuer_name: str
    home: str
    home_name: str
    proof: str                 # "card" or "document"
    status: str                # of the copy: issued (or what came instead)
    serial: str = ""
    pages: int = 0
    size: int = 0
    path: Path | None = None
    refused_status: str = ""   # of the second request: refused
    refusal: str = ""
    meaning: str = ""
    seconds: float = 0.0


def pdf_pages(pdf: bytes) -> int:
    """Pages of a PDF as reportlab writes it (its page objects are not compressed)."""
    return len(re.findall(rb"/Type\s*/Page(?![a-zA-Z])", pdf))


def _not_accepted(status: int, body: dict) -> dict:
    if status == 202:
        return {"status": "pending"}
    return {"status": f"not accepted ({status} {body.get('error', {}).get('code', body.get('message', '?'))})"}


def run_copy_demo(counter: Counter, runner, *, issuer: tuple[str, str], home: tuple[str, str], applicant: str,
                  card_serial: str, stranger: str, reports_dir: Path | None) -> CopyDemo:
    """At ``issuer``'s counter: a copy of ``applicant``'s record (a resident of ``home``), proved by
    the card authentication this counter just made if there is one, else by a documented ID
    check; and a copy asking for ``stranger`` as a member of the applicant's household, refused
    by the home with ``not_in_household``. The channel carries both while the runner drains
    the queues (``run_until_idle``); the PDF goes to ``reports_dir``."""
    started = time.perf_counter()
    document = {"document": {"type": "driving_licence", "number": "461234567890", "clerk": f"{issuer[1]} 窓口"}}
    challenge = counter.authenticated.get(card_serial)
    proof, status, accepted = "document", 0, {}
    if challenge:
        status, accepted = counter.post("/v1/wide-area-copies", {
            "resident_code": applicant, "home_municipality": home[0], "proof": {"card_authentication": challenge}})
        proof = "card"
    if status != 202:  # no card authenticated here (or no longer good for a copy): the clerk checks a document
        status, accepted = counter.post("/v1/wide-area-copies", {
            "resident_code": applicant, "home_municipality": home[0], "proof": document})
        proof = "document"
    second, asked = counter.post("/v1/wide-area-copies", {
        "resident_code": applicant, "home_municipality": home[0], "members": [stranger], "proof": document})
    # A request the counter did not accept is shown as such (the demo goes on): its status and code.
    results = {"copy": _not_accepted(status, accepted), "refused": _not_accepted(second, asked)}
    waiting = {k: r["correlation"] for k, r in (("copy", accepted), ("refused", asked)) if "correlation" in r}
    for _ in range(5 if waiting else 0):  # the channel's hops: answered within a drain or two
        runner.run_until_idle(timeout_s=60)
        results.update({k: counter.get(f"/v1/wide-area-copies/{c}")[1] for k, c in waiting.items()})
        if all(results[k].get("status") != "pending" for k in waiting):
            break
    copy, refused = results["copy"], results["refused"]
    pdf = base64.b64decode(copy["pdf"]) if copy.get("status") == "issued" else b""
    path = None
    if pdf and reports_dir is not None:
        reports_dir.mkdir(parents=True, exist_ok=True)
        path = reports_dir / f"wide-area-copy-{copy['serial']}.pdf"
        path.write_bytes(pdf)
    return CopyDemo(issuer[0], issuer[1], home[0], home[1], proof, copy.get("status", "?"), copy.get("serial", ""),
                    pdf_pages(pdf), len(pdf), path, refused.get("status", "?"), refused.get("refusal", ""),
                    refused.get("meaning", ""), time.perf_counter() - started)


SPECIAL_MOVE = ("202037", "202053")
"""The demo's special move: 上田市 → 飯田市."""


@dataclass(frozen=True)
class SpecialMoveDemo:
    """The demo's special move: filed at A, certified and registered at B, completed; the card
    carried over; the two notices sent and reconciled."""

    home: str
    home_name: str
    to: str
    to_name: str
    serial: str = ""
    filed: str = ""            # A's state after the filing
    certified: str = ""        # B's status after the certificate request
    status: str = ""           # B's final status (completed) or what came instead
    carry_over: str = ""       # moved / already (across prefectures: pending, then moved or refused_<CODE>)
    card_home: str = ""        # the card's home afterwards
    move_out: str = ""         # A's final state (completed)
    register: str = ""         # the tier's register after both notices: "<municipality> 特例転入"
    balanced: bool = False     # both municipalities' reconciliation rows without problems
    seconds: float = 0.0
    detail: str = ""           # what went wrong, if anything


def _settle(counter: Counter, runner, path: str, waiting: tuple[str, ...]) -> dict:
    body: dict = {}
    for _ in range(5):
        runner.run_until_idle(timeout_s=60)
        body = counter.get(path)[1]
        if body.get("status") not in waiting:
            break
    return body


def special_move_rows(resident: str, certificate: dict, day: str) -> tuple[bytes, bytes]:
    """The two export files the municipalities' existing systems would send once the special move
    completed: 転出 at A; 特例転入 at B with the certificate's facts and the destination address
    (no individual number: B's system adds it from its own records, the certificate never carries it)."""
    from jukinet_ops.demo_data import _encode

    out = [{"resident_code": resident, "reason": "転出", "change_date": day}]
    into = [{"resident_code": resident, "reason": "特例転入", "change_date": day, "name_kanji": certificate["name"],
             "name_kana": certificate.get("kana", ""), "birth_date": certificate["birth_date"],
             "sex": certificate.get("sex", ""), "address": certificate["destination_address"]}]
    return _encode(out, "utf8"), _encode(into, "utf8")


def run_special_move_demo(api, principals, runner, deployment, *, home: tuple[str, str], to: tuple[str, str],
                          resident: str) -> SpecialMoveDemo:
    """A card holder of ``home`` moves to ``to`` by the special procedure, at both counters through
    the deployed API and channel; then the two CSs send the 転出 and the 特例転入 as export files
    and the month is reconciled for both municipalities."""
    from infra.naming import Names
    from jukinet.adapters import aws
    from jukinet.clock import month_jst, system_clock, today_jst
    from jukinet_ops.reconcile import reconcile_deployment

    started = time.perf_counter()
    names = Names.of(deployment)
    prefecture = deployment.prefectures[0]
    at_a, at_b = Counter(api, principals[home[0]]), Counter(api, principals[to[0]])
    chip = VirtualCard("4321")
    at_a.issue(resident, chip)
    at_a.authenticate(chip, "4321")
    today = today_jst(system_clock()).isoformat()
    status, filed = at_a.post("/v1/special-move-outs", {
        "resident_code": resident, "planned_move_date": today, "destination_address": f"長野県{to[1]}追手町2丁目678番地",
        "card_authentication": at_a.authenticated.get(chip.serial or "")})
    if status != 201:
        return SpecialMoveDemo(home[0], home[1], to[0], to[1], chip.serial or "", detail=f"filing {status} {filed}")
    at_b.authenticate(chip, "4321")
    status, asked = at_b.post("/v1/special-move-ins", {
        "resident_code": resident, "home_municipality": home[0], "moved_on": today,
        "card_authentication": at_b.authenticated.get(chip.serial or "")})
    if status != 202:
        return SpecialMoveDemo(home[0], home[1], to[0], to[1], chip.serial or "", filed["state"],
                               detail=f"request {status} {asked}")
    path = f"/v1/special-move-ins/{asked['correlation']}"
    certified = _settle(at_b, runner, path, ("requested",))
    final = certified
    if certified.get("status") == "certified":
        at_b.post(f"{path}/move-in")
        final = _settle(at_b, runner, path, ("moved_in",))
    from jukinet.adapters.card_store import CardStore
    cards = CardStore(names.card_table(prefecture.code))
    stored = cards.card(chip.serial or "")
    move_out = at_a.get(f"/v1/special-move-outs/{resident}")[1].get("state", "?")
    register, balanced = "", False
    if final.get("status") == "completed":
        out_file, in_file = special_move_rows(resident, final["certificate"], today)
        env = prefecture.municipality_tier.env
        s3 = aws.client("s3")
        stamp = system_clock().strftime("%Y%m%d%H%M%S")
        s3.put_object(Bucket=names.drop_zone_bucket(env, home[0]), Key=f"incoming/{home[0]}-tokurei-{stamp}.csv",
                      Body=out_file)
        s3.put_object(Bucket=names.drop_zone_bucket(env, to[0]), Key=f"incoming/{to[0]}-tokurei-{stamp}.csv",
                      Body=in_file)
        while runner.process_new_objects():
            pass
        runner.run_until_idle(timeout_s=120)
        rows = {r.municipality: r for r in reconcile_deployment(deployment, month_jst(system_clock()),
                                                                prefecture.code)}
        checked = [rows.get(home[0]), rows.get(to[0])]
        balanced = all(r is not None and not r.problems for r in checked)
        now_registered = cards.register(resident)
        if now_registered is not None:
            register = f"{now_registered.municipality} {now_registered.reason.label_ja}"
    return SpecialMoveDemo(home[0], home[1], to[0], to[1], chip.serial or "", filed.get("state", ""),
                           certified.get("status", "?"), final.get("status", "?"), final.get("card_carry_over", ""),
                           stored.home if stored else "?", move_out, register, balanced, time.perf_counter() - started,
                           final.get("refusal", "") or "")


def run_card_demo(console: Console, deployment, env, runner, *, reports_dir: Path | None = None,
                  named_by: Mapping[str, Iterable[str]] | None = None) -> dict[str, Any]:
    """Step 7 of the demo; returns what happened (tests read it): ``copy`` is the wide-area
    copies' ``CopyDemo`` (its PDF written to ``reports_dir`` if given). The month's card
    statistics (``card_stats.card_statistics``) and the copies' lines are the demo's to print.
    ``named_by``: municipality → the resident codes the month's notices named there
    (``DemoMonth.named_by``): the residents are chosen among them, read by key; without, by
    scanning the register (``active_residents``)."""
    from infra.naming import Names
    from embedded_aws.api import LocalApi

    names = Names.of(deployment)
    prefecture = deployment.prefectures[0]
    codes = sorted(m.code for m in prefecture.municipality_tier.municipalities)
    home, elsewhere = codes[0], codes[1]
    residents = active_residents(deployment, home, 3, None if named_by is None else named_by.get(home, ()))
    if len(residents) < 3:
        console.print(f"[yellow]7. counter API: fewer than 3 residents of {home} in the register; skipped[/]")
        return {}
    principals = counter_principals(deployment, runner)
    out: dict[str, Any] = {}
    with LocalApi(env, runner, credentials=principals, api=names.card_api(prefecture.code)) as api:
        at_home, at_other = Counter(api, principals[home]), Counter(api, principals[elsewhere])
        operator = Counter(api, principals["operator"])
        chips = [VirtualCard(pin) for pin in ("2468", "1357", "8024")]
        cards = [at_home.issue(code, chip) for code, chip in zip(residents, chips, strict=True)]
        console.print(f"[bold]7.[/] counter API served at {api.url}: {home}'s counter issued 3 cards "
                      f"({', '.join(c['serial'] for c in cards)}), valid until {cards[0]['valid_until']}")
        out["authenticated"] = at_other.authenticate(chips[0], "2468")
        console.print(f"   card {chips[0].serial} authenticated at {elsewhere}'s counter → {out['authenticated'][1]}")
        operator.post(f"/v1/cards/{chips[1].serial}/suspension", {"reason": "lost"})
        out["lost"] = at_other.authenticate(chips[1], "1357")
        console.print(f"   card {chips[1].serial} reported lost, suspended by the operator; presented at "
                      f"{elsewhere} → {out['lost'][0]} {out['lost'][1]['error']['code']}")
        tries = [at_other.authenticate(chips[2], pin)[1] for pin in ("0000", "1111", "2222")]
        out["pin"] = tries
        out["after_lock"] = at_other.authenticate(chips[2], "8024")
        console.print(f"   card {chips[2].serial}: 3 wrong PINs → chip locked ({tries[-1]['chip']}); the network "
                      f"counted {tries[-1]['failures']}; the right PIN next → {out['after_lock'][1]['error']['code']}")
        by_code = {m.code: m.name for m in prefecture.municipality_tier.municipalities}
        out["copy"] = run_copy_demo(at_other, runner, issuer=(elsewhere, by_code[elsewhere]),
                                    home=(home, by_code[home]), applicant=residents[0], card_serial=chips[0].serial,
                                    stranger=residents[1], reports_dir=reports_dir)
        # The special move-out/move-in: 上田市 → 飯田市 (both of the tier), if the deployment has them.
        move_from, move_to = SPECIAL_MOVE
        movers = active_residents(deployment, move_from, 1, None if named_by is None else named_by.get(move_from, ())) \
            if {move_from, move_to} <= set(by_code) else []
        if movers:
            out["special_move"] = run_special_move_demo(api, principals, runner, deployment,
                                                        home=(move_from, by_code[move_from]),
                                                        to=(move_to, by_code[move_to]), resident=movers[0])
    return out
