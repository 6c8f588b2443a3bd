"""Sealing each day of the provision log, and verifying it (``jukinet verify``).

The sealer runs after each JST day ends (01:00 JST, EventBridge): it reads the day's entries
through the ``by_day`` index, writes the manifest, digests it and has KMS sign the digest
(ECDSA P-256, a key only the sealer may use). ``verify_day`` checks the signature with the
public key, that the manifest matches the signed digest, and the table against the manifest
and each entry against its own hash — naming each edited, removed, inserted entry.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_der_public_key

from ..adapters import aws
from ..adapters.provision_log import ProvisionLog, Seal
from ..domain.notice import JST
from ..domain.provision import Problem, compare_manifest, jst_day, manifest_digest, seal_message, verify_chain

SEAL_ALGORITHM = "ECDSA_SHA_256"


def previous_day(now: dt.datetime) -> str:
    return (now.astimezone(JST).date() - dt.timedelta(days=1)).isoformat()


class Sealer:
    def __init__(self, log: ProvisionLog, key_id: str, clock: Callable[[], dt.datetime]) -> None:
        self.log = log
        self.key_id = key_id
        self.clock = clock

    def seal_day(self, day: str) -> tuple[Seal, bool]:
        """Seal ``day`` (YYYY-MM-DD, JST) unless sealed already. Returns (seal, newly sealed).
        Refuses a day that has not ended: entries could still be added to it."""
        existing = self.log.seal(day)
        if existing is not None:
            return existing, False
        now = self.clock()
        if dt.date.fromisoformat(day) >= now.astimezone(JST).date():
            raise ValueError(f"day {day} has not ended in Japan time; it can be sealed from 00:00 JST the day after")
        refs = self.log.day_hashes(day)
        digest = manifest_digest(day, list(refs.items()))
        signature = aws.client("kms").sign(KeyId=self.key_id, Message=seal_message(day, len(refs), digest),
                                           MessageType="RAW", SigningAlgorithm=SEAL_ALGORITHM)["Signature"]
        return self.log.write_seal(day, refs, digest=digest, signature=signature, key_id=self.key_id,
                                   algorithm=SEAL_ALGORITHM, sealed_at=now), True


@dataclass
class DayReport:
    day: str
    entries: int
    sealed: bool
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def verify_day(log: ProvisionLog, day: str, public_key_der: Callable[[str], bytes]) -> DayReport:
    """Check one day against its seal. ``public_key_der(key_id)`` gives the sealing key's public
    key (KMS GetPublicKey, or a copy the auditor keeps)."""
    present = log.day_hashes(day)
    seal = log.seal(day)
    if seal is None:
        problems = [Problem(day, "seal_missing", "this day has no seal")] if present else []
        return DayReport(day, len(present), False, problems)
    report = DayReport(day, len(present), True)
    key = load_der_public_key(public_key_der(seal.key_id))
    try:
        key.verify(seal.signature, seal_message(day, seal.count, seal.digest), ec.ECDSA(hashes.SHA256()))  # type: ignore[call-arg,union-attr]
    except InvalidSignature:
        report.problems.append(Problem(day, "seal_invalid", "the seal's signature does not verify"))
        return report
    sealed = log.manifest(day, seal.parts)
    if len(sealed) != seal.count or manifest_digest(day, list(sealed.items())) != seal.digest:
        report.problems.append(Problem(day, "manifest", "the stored manifest does not match the signed digest"))
        return report
    entries = log.entries(present)
    # An index item without its entry (a decoy left behind a removed entry) recomputes to "".
    recomputed = {ref: (e.recomputed() if e.claimed_n == e.n else "") if (e := entries.get(ref)) else ""
                  for ref in present}
    report.problems.extend(compare_manifest(day, sealed, present, recomputed))
    return report


def verify_residents(log: ProvisionLog, codes: Iterable[str],
                     public_key_der: Callable[[str], bytes] | None = None) -> list[Problem]:
    """Each resident's chain, and — for every entry whose day is sealed — that the day's signed
    manifest holds it with the same hash (an entry kept out of the ``by_day`` index, or added
    after the seal with correct links, shows here). ``public_key_der``: check each seal's
    signature too."""
    problems: list[Problem] = []
    manifests: dict[str, dict[str, str] | None] = {}
    for code in codes:
        entries, head = log.chain(code)
        problems.extend(verify_chain(code, entries, head))
        for e in entries:
            try:
                day = jst_day(dt.datetime.fromisoformat(str(e.content.get("at", "")).replace("Z", "+00:00")))
            except ValueError:  # an edited time: verify_chain has reported the entry
                continue
            if day not in manifests:
                manifests[day] = _signed_manifest(log, day, public_key_der, problems)
            sealed = manifests[day]
            if sealed is not None and sealed.get(e.ref) != e.hash:
                kind = "inserted" if e.ref not in sealed else "edited"
                problems.append(Problem(e.ref, kind, f"not as sealed on {day}"))
    return problems


def _signed_manifest(log: ProvisionLog, day: str, public_key_der: Callable[[str], bytes] | None,
                     problems: list[Problem]) -> dict[str, str] | None:
    seal = log.seal(day)
    if seal is None:
        return None
    if public_key_der is not None:
        key = load_der_public_key(public_key_der(seal.key_id))
        try:
            key.verify(seal.signature, seal_message(day, seal.count, seal.digest), ec.ECDSA(hashes.SHA256()))  # type: ignore[call-arg,union-attr]
        except InvalidSignature:
            problems.append(Problem(day, "seal_invalid", "the seal's signature does not verify"))
            return None
    manifest = log.manifest(day, seal.parts)
    if manifest_digest(day, list(manifest.items())) != seal.digest:
        problems.append(Problem(day, "manifest", "the stored manifest does not match the signed digest"))
        return None
    return manifest


def kms_public_key(key_id: str) -> bytes:
    return aws.client("kms").get_public_key(KeyId=key_id)["PublicKey"]
