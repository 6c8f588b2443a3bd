"""The blind index used by the search by the four basic facts."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac

import pytest
from hypothesis import given
from hypothesis import strategies as st

from jukinet.domain.blind_index import INDEX_BYTES, blind_index, blind_index_with_sex
from jukinet.domain.facts import Sex

from .strategies import GIVEN_NAMES, SURNAMES, birth_dates

KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))
BORN = dt.date(1990, 4, 1)
kana_names = st.tuples(st.sampled_from(SURNAMES), st.sampled_from(GIVEN_NAMES)).map(lambda t: f"{t[0][1]}　{t[1][1]}")


def test_index_is_truncated_hmac_sha256_of_normalised_kana_and_iso_date():
    expected = hmac.new(KEY, "サイトウユウコ|1990-04-01".encode(), hashlib.sha256).digest()[:16].hex()
    assert blind_index(KEY, "サイトウ　ユウコ", BORN) == expected
    assert len(expected) == 2 * INDEX_BYTES


# Known answers, pinned: every index already stored in an identity table must be found again after any
# change to the code. A changed normalisation, separator, date format, truncation, encoding or use of the key
# fails here, even where the test above (which recomputes the formula) would change along with it.
KNOWN_ANSWERS = [
    (KEY, "サイトウ　ユウコ", BORN, None, "ba2773f79b74b4f29c72c64817f27f89"),
    (KEY, "ｻｲﾄｳ ﾕｰｺ", BORN, None, "ba2773f79b74b4f29c72c64817f27f89"),  # half-width, long vowel mark: the same
    (KEY, "サイトウ　ユウコ", BORN, Sex.FEMALE, "2710bbb3d5c64b7347ce9f97e509ddba"),
    (OTHER_KEY, "サイトウ　ユウコ", BORN, None, "e4f08cbb95a6a45744df986d1002404f"),
    (KEY, "ヤマダ　タロウ", dt.date(1850, 1, 1), None, "a1beebe675a7b97ce4f0bbdf2eca8341"),
]


@pytest.mark.parametrize(("key", "name", "born", "sex", "expected"), KNOWN_ANSWERS,
                         ids=["plain", "half-width", "with-sex", "other-key", "earliest-date"])
def test_known_answers(key, name, born, sex, expected):
    index = blind_index(key, name, born) if sex is None else blind_index_with_sex(key, name, born, sex)
    assert index == expected


@pytest.mark.parametrize("spelling", ["ｻｲﾄｳ ﾕｰｺ", "さいとう　ゆうこ", "サイトウユウコ", "サイトウ・ユーコ"])
def test_spellings_with_equal_normalised_kana_share_an_index(spelling):
    assert blind_index(KEY, spelling, BORN) == blind_index(KEY, "サイトウ　ユウコ", BORN)


@given(name=kana_names, born=birth_dates)
def test_hiragana_and_half_width_spellings_of_any_name_meet(name, born):
    import jaconv

    index = blind_index(KEY, name, born)
    assert len(index) == 2 * INDEX_BYTES and int(index, 16) >= 0
    assert blind_index(KEY, jaconv.kata2hira(name), born) == index
    assert blind_index(KEY, jaconv.z2h(name, kana=True, ascii=True, digit=True), born) == index


@given(a=kana_names, b=kana_names, born=birth_dates)
def test_different_names_born_the_same_day_get_different_indexes(a, b, born):
    from jukinet.domain.kana import normalise_kana

    if normalise_kana(a) != normalise_kana(b):
        assert blind_index(KEY, a, born) != blind_index(KEY, b, born)


@given(name=kana_names, born=birth_dates, days=st.integers(1, 20000))
def test_same_name_born_another_day_gets_a_different_index(name, born, days):
    assert blind_index(KEY, name, born) != blind_index(KEY, name, born + dt.timedelta(days=days))


@given(name=kana_names, born=birth_dates)
def test_another_tier_key_gives_an_unrelated_index(name, born):
    assert blind_index(KEY, name, born) != blind_index(OTHER_KEY, name, born)


@given(name=kana_names, born=birth_dates)
def test_index_with_sex_narrows_and_never_equals_the_plain_index(name, born):
    male, female = (blind_index_with_sex(KEY, name, born, s) for s in (Sex.MALE, Sex.FEMALE))
    assert male != female
    assert blind_index(KEY, name, born) not in (male, female)
    assert male == blind_index_with_sex(KEY, "".join(name.split()), born, Sex.MALE)


@pytest.mark.parametrize("key", [b"", b"short", bytes(31), "a text key" * 4])
def test_short_or_non_bytes_key_is_refused(key):
    with pytest.raises(ValueError):
        blind_index(key, "サイトウ", BORN)  # type: ignore[arg-type]
