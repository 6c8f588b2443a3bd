"""The scan rule (``domain/scan.py``) against a reference small enough to read: a code is near
when another code's body is at most ``NEAR`` away; the same code again is not its own
neighbour."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from jukinet.domain import scan
from jukinet.domain.codes import ResidentCode


def _code(body: int) -> str:
    return ResidentCode.from_body(f"{body:010d}").value


bodies = st.lists(st.integers(min_value=0, max_value=9_999_999_999), min_size=1, max_size=40, unique=True)


@given(bodies)
def test_a_code_is_near_exactly_when_another_code_is_at_most_near_away(values):
    codes = [_code(b) for b in values]
    expected = sum(1 for b in values if any(o != b and abs(o - b) <= scan.NEAR for o in values))
    assert scan.near_codes(codes) == expected == scan.near_codes(codes + codes)


@given(bodies, bodies)
def test_codes_seen_earlier_in_the_window_count_as_neighbours_but_a_repeat_does_not(earlier, now):
    seen = scan.bodies(_code(b) for b in earlier)
    codes = [_code(b) for b in now]
    expected = sum(1 for b in now if any(o != b and abs(o - b) <= scan.NEAR for o in [*now, *earlier]))
    assert scan.near_codes(codes, seen) == expected


def test_a_window_is_suspect_on_near_codes_or_on_a_not_found_share():
    assert scan.Signal(near=0, window_near=10, window_answers=10, window_not_found=0).reasons == ["near_codes"]
    assert scan.Signal(near=0, window_near=0, window_answers=20, window_not_found=10).reasons == ["not_found_ratio"]
    assert not scan.Signal(near=0, window_near=9, window_answers=19, window_not_found=19).suspect
