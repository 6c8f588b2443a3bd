"""Properties of the provision log's hash chains and daily manifests (pure domain, no AWS).

A chain of ``k`` entries built with ``link`` verifies; any single edit, removal or swap is
reported at exactly the position(s) touched; a manifest digest does not depend on order and
changes with any ref or hash; ``compare_manifest`` names exactly the changed refs.
"""

from __future__ import annotations

import dataclasses

from hypothesis import assume, given
from hypothesis import strategies as st

from jukinet.domain.codes import ResidentCode
from jukinet.domain.provision import (
    GENESIS,
    ChainEntry,
    compare_manifest,
    entry_ref,
    link,
    manifest_digest,
    verify_chain,
)

DAY = "2026-11-26"

resident_codes = st.integers(0, 10**10 - 1).map(lambda i: ResidentCode.from_body(f"{i:010d}").value)
hashes = st.text("0123456789abcdef", min_size=64, max_size=64)
FIELDS = ["resident_code", "name", "birth_date", "sex", "address", "status", "change_information"]


def contents(code: str) -> st.SearchStrategy[dict]:
    return st.fixed_dictionaries({
        "resident_code": st.just(code),
        "provision_id": st.from_regex(r"P-2026112[0-9]{7}-[0-9a-f]{16}", fullmatch=True),
        "at": st.sampled_from(["2026-11-26T03:00:00.000Z", "2026-11-26T14:59:59.999Z"]),
        "recipient_id": st.sampled_from(["pension", "fsa", "pref"]),
        "recipient_name": st.sampled_from(["年金機関", "金融庁", "長野県"]),
        "affair_code": st.text("ABCDEFGHIJKLMNOPQRSTUVWXYZ-", min_size=1, max_size=12),
        "affair": st.text(max_size=20),
        "function": st.sampled_from(["lookup", "search", "batch", "own_use"]),
        "fields": st.lists(st.sampled_from(FIELDS), unique=True).map(sorted),
        "provider": st.sampled_from(["national", "200000"]),
        "outcome": st.sampled_from(["provided", "deleted", "code_changed"]),
    })


@st.composite
def chains(draw, min_size: int = 1) -> tuple[str, list[ChainEntry]]:
    code = draw(resident_codes)
    items = draw(st.lists(contents(code), min_size=min_size, max_size=12))
    entries, prev = [], GENESIS
    for n, content in enumerate(items, start=1):
        entry = link(content, n, prev)
        entries.append(entry)
        prev = entry.hash
    return code, entries


def reported(problems) -> list[tuple[str, str]]:
    return sorted((p.where, p.kind) for p in problems)


# --- chains ----------------------------------------------------------------------------


@given(chains(min_size=0))
def test_a_chain_built_with_link_verifies(chain):
    code, entries = chain
    assert verify_chain(code, entries, len(entries) or None) == []
    assert verify_chain(code, entries, None) == []


@given(chains(), st.data())
def test_a_content_edit_is_reported_at_exactly_its_position(chain, data):
    code, entries = chain
    i = data.draw(st.integers(0, len(entries) - 1), label="index")
    key = data.draw(st.sampled_from(sorted(entries[i].content)), label="field")
    value = data.draw(st.one_of(st.text(max_size=10), st.integers(), st.lists(st.text(max_size=3))), label="value")
    assume(entries[i].content[key] != value)
    tampered = list(entries)
    tampered[i] = dataclasses.replace(entries[i], content={**entries[i].content, key: value})
    assert reported(verify_chain(code, tampered, len(entries))) == [(entry_ref(code, i + 1), "edited")]


@given(chains(), st.data())
def test_an_edited_prev_is_reported_at_exactly_its_position(chain, data):
    code, entries = chain
    i = data.draw(st.integers(0, len(entries) - 1), label="index")
    prev = data.draw(hashes, label="prev")
    assume(prev != entries[i].prev)
    tampered = list(entries)
    tampered[i] = dataclasses.replace(entries[i], prev=prev)
    assert reported(verify_chain(code, tampered, len(entries))) == [(entry_ref(code, i + 1), "edited")]


@given(chains(), st.data())
def test_an_edited_stored_hash_is_reported_at_exactly_its_position(chain, data):
    code, entries = chain
    i = data.draw(st.integers(0, len(entries) - 1), label="index")
    digest = data.draw(hashes, label="hash")
    assume(digest != entries[i].hash)
    tampered = list(entries)
    tampered[i] = dataclasses.replace(entries[i], hash=digest)
    assert reported(verify_chain(code, tampered, len(entries))) == [(entry_ref(code, i + 1), "edited")]


@given(chains(), st.data())
def test_a_removal_is_reported_at_exactly_its_position(chain, data):
    code, entries = chain
    i = data.draw(st.integers(0, len(entries) - 1), label="index")
    tampered = entries[:i] + entries[i + 1:]
    # The head (the writer's record of the last position) is what reveals a removed tail.
    assert reported(verify_chain(code, tampered, len(entries))) == [(entry_ref(code, i + 1), "removed")]


@given(chains(min_size=2), st.data())
def test_a_removed_tail_without_a_head_goes_unnoticed_by_the_chain_alone(chain, data):
    """Why the head and the daily seals exist: a chain cut at its end is a valid shorter chain."""
    code, entries = chain
    cut = data.draw(st.integers(1, len(entries) - 1), label="kept")
    assert verify_chain(code, entries[:cut], None) == []
    assert reported(verify_chain(code, entries[:cut], len(entries))) == [
        (entry_ref(code, n), "removed") for n in range(cut + 1, len(entries) + 1)]


def swapped(entries: list[ChainEntry], i: int, j: int) -> list[ChainEntry]:
    """Each entry stored under the other's position (the sort key), keeping what it claims."""
    out = list(entries)
    out[i] = dataclasses.replace(entries[j], n=i + 1)
    out[j] = dataclasses.replace(entries[i], n=j + 1)
    return out


def two_positions(size: int) -> st.SearchStrategy[tuple[int, int]]:
    return st.tuples(st.integers(0, size - 1), st.integers(0, size - 1)).filter(lambda t: t[0] != t[1]).map(sorted)


@given(chains(min_size=2))
def test_swapping_the_last_two_entries_is_reported_at_exactly_those_positions(chain):
    code, entries = chain
    k = len(entries)
    assert reported(verify_chain(code, swapped(entries, k - 2, k - 1), k)) == [
        (entry_ref(code, k - 1), "reordered"), (entry_ref(code, k), "reordered")]


@given(chains(min_size=2), st.data())
def test_a_swap_is_reported_at_exactly_both_positions(chain, data):
    code, entries = chain
    i, j = data.draw(two_positions(len(entries)), label="positions")
    assert reported(verify_chain(code, swapped(entries, i, j), len(entries))) == [
        (entry_ref(code, i + 1), "reordered"), (entry_ref(code, j + 1), "reordered")]


@given(chains(min_size=2), resident_codes)
def test_a_chain_moved_under_another_resident_is_edited_everywhere(chain, other):
    code, entries = chain
    assume(other != code)
    found = reported(verify_chain(other, entries, len(entries)))
    assert found == [(entry_ref(other, n), "edited") for n in range(1, len(entries) + 1)]


# --- manifests -------------------------------------------------------------------------

refs = st.tuples(resident_codes, st.integers(1, 10**8 - 1)).map(lambda t: entry_ref(*t))
manifests = st.dictionaries(refs, hashes, max_size=30)


@given(manifests, st.randoms(use_true_random=False))
def test_manifest_digest_does_not_depend_on_order(manifest, rng):
    pairs = list(manifest.items())
    shuffled = list(pairs)
    rng.shuffle(shuffled)
    assert manifest_digest(DAY, pairs) == manifest_digest(DAY, shuffled)


@given(manifests.filter(bool), st.data())
def test_manifest_digest_changes_with_any_ref_or_hash(manifest, data):
    pairs = sorted(manifest.items())
    i = data.draw(st.integers(0, len(pairs) - 1), label="index")
    ref, digest = pairs[i]
    new_ref = data.draw(refs.filter(lambda r: r not in manifest), label="ref")
    new_hash = data.draw(hashes.filter(lambda h: h != digest), label="hash")
    before = manifest_digest(DAY, pairs)
    assert manifest_digest(DAY, [*pairs[:i], (new_ref, digest), *pairs[i + 1:]]) != before
    assert manifest_digest(DAY, [*pairs[:i], (ref, new_hash), *pairs[i + 1:]]) != before
    assert manifest_digest(DAY, pairs[:i] + pairs[i + 1:]) != before
    assert manifest_digest(DAY, [*pairs, (new_ref, new_hash)]) != before
    assert manifest_digest("2026-11-27", pairs) != before


@given(manifests, st.data())
def test_compare_manifest_names_exactly_the_changed_refs(sealed, data):
    refs_ = sorted(sealed)
    removed = set(data.draw(st.lists(st.sampled_from(refs_), unique=True) if refs_ else st.just([]), label="removed"))
    kept = [r for r in refs_ if r not in removed]
    edited_stored = set(data.draw(st.lists(st.sampled_from(kept), unique=True) if kept else st.just([]),
                                  label="stored hash edited"))
    rest = [r for r in kept if r not in edited_stored]
    edited_content = set(data.draw(st.lists(st.sampled_from(rest), unique=True) if rest else st.just([]),
                                   label="content edited (stored hash kept)"))
    inserted = data.draw(st.dictionaries(refs.filter(lambda r: r not in sealed), hashes, max_size=5), label="inserted")

    def other(h: str) -> str:
        return ("1" if h[0] == "0" else "0") + h[1:]

    present = {r: (other(sealed[r]) if r in edited_stored else sealed[r]) for r in kept} | inserted
    recomputed = {r: (other(h) if r in edited_content else h) for r, h in present.items()}
    expected = sorted([(r, "removed") for r in removed] + [(r, "inserted") for r in inserted]
                      + [(r, "edited") for r in edited_stored | edited_content])
    assert reported(compare_manifest(DAY, sealed, present, recomputed)) == expected


@given(manifests)
def test_compare_manifest_of_an_untouched_day_is_empty(sealed):
    assert compare_manifest(DAY, sealed, dict(sealed), dict(sealed)) == []
