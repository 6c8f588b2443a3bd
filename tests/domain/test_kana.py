"""Name normalisation for matching (domain.kana)."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given
from hypothesis import strategies as st

from jukinet.domain.kana import NAME_KANJI_VARIANTS, normalise_kana, normalise_kanji_name

from .strategies import GIVEN_NAMES, SURNAMES

KATAKANA_NAMES = [kana for _, kana in SURNAMES + GIVEN_NAMES]


@pytest.mark.parametrize(("spellings", "key"), [
    # width, script and spacing
    (["ｻｲﾄｳ ﾕｳｺ", "さいとう　ゆうこ", "サイトウ　ユウコ", "サイトウユウコ", " サイ トウ\tユウコ "], "サイトウユウコ"),
    (["ﾔﾏｻﾞｷ", "やまざき", "ヤマザキ"], "ヤマザキ"),
    # a voiced mark written apart from its kana
    (["カ゛ナ", "ガナ"], "ガナ"),
    # middle dots and double hyphens between the parts of foreign names
    (["ジョン・スミス", "ジョン･スミス", "ジョン＝スミス", "ジョン゠スミス", "ジョン スミス"], "ジヨンスミス"),
    # small kana (older systems printed only large kana)
    (["キョウコ", "キヨウコ", "きょうこ"], "キヨウコ"),
    (["ハットリ", "ハツトリ"], "ハツトリ"),
    (["クヮン", "クワン"], "クワン"),
    # ヴ folded onto the b-row
    (["ヴィクトリア", "ビクトリア", "ゔぃくとりあ", "ｳﾞｨｸﾄﾘｱ"], "ビクトリア"),
    (["ヴァイオリン", "バイオリン", "ヷイオリン"], "バイオリン"),
    (["ヴェルディ", "ベルディ"], "ベルデイ"),
    # sound-alike kana
    (["チヅル", "チズル"], "チズル"),
    (["ヱミ", "エミ"], "エミ"),
    (["ヰズミ", "イズミ"], "イズミ"),
    # long vowels, in every spelling
    (["ユーコ", "ユウコ", "ﾕｰｺ", "ユ－コ", "ユ—コ"], "ユウコ"),
    (["オータ", "オオタ", "オウタ"], "オウタ"),
    (["コーイチ", "コウイチ"], "コウイチ"),
    (["ケーコ", "ケイコ", "ケエコ"], "ケイコ"),
    (["トール", "トオル", "トウル"], "トウル"),
    (["キョーコ", "キョウコ"], "キヨウコ"),
    # iteration marks written out
    (["サヽキ", "ササキ", "さゝき"], "ササキ"),
    (["スヾキ", "スズキ", "すゞき"], "スズキ"),
])
def test_every_spelling_of_a_name_gives_the_same_matching_key(spellings, key):
    assert {normalise_kana(s) for s in spellings} == {key}


@pytest.mark.parametrize(("a", "b"), [
    ("サトウ", "サイトウ"), ("オノ", "オオノ"), ("ハナコ", "ハナゴ"), ("ユキ", "ユウキ"), ("ヨウコ", "ヨシコ"),
])
def test_different_names_keep_different_keys(a, b):
    assert normalise_kana(a) != normalise_kana(b)


def test_long_vowel_mark_without_a_vowel_before_it_is_kept():
    assert normalise_kana("ンー") == "ンー"
    assert normalise_kana("ーア") == "ーア"


_TRICKY = "ァアィイゥウヴカガキャョッーヽヾ・ 　ｶﾞﾝｰあぁゔ゛"
kana_texts = st.lists(
    st.sampled_from(KATAKANA_NAMES) | st.text(st.sampled_from(_TRICKY), max_size=6),
    max_size=4,
).map("".join)


@given(kana_texts)
def test_normalisation_is_idempotent(text):
    once = normalise_kana(text)
    assert normalise_kana(once) == once


@given(kana_texts)
def test_matching_key_has_no_separators_small_kana_or_hiragana(text):
    key = normalise_kana(text)
    assert not set(key) & set(" \u3000・=゠ァィゥェォッャュョヮヵヶヴヂヅヰヱヲヽヾ")
    assert not any("\u3041" <= c <= "\u309f" for c in key)


@given(st.lists(st.sampled_from(KATAKANA_NAMES), min_size=1, max_size=3))
def test_half_width_hiragana_and_full_width_spellings_of_a_name_share_a_key(parts):
    import jaconv

    full = "　".join(parts)
    assert normalise_kana(jaconv.z2h(full, kana=True)) == normalise_kana(full)
    assert normalise_kana(jaconv.kata2hira(full)) == normalise_kana(full)
    assert normalise_kana("".join(parts)) == normalise_kana(full)


# --- kanji names --------------------------------------------------------------------------------

@pytest.mark.parametrize(("written", "key"), [
    ("髙橋　一郎", "高橋一郎"), ("山﨑", "山崎"), ("山嵜", "山崎"), ("齋藤", "斎藤"), ("渡邉", "渡辺"),
    ("渡邊", "渡辺"), ("澤田", "沢田"), ("濱口", "浜口"), ("濵口", "浜口"), ("廣瀬", "広瀬"), ("國分", "国分"),
    ("櫻井", "桜井"), ("龍野", "竜野"), ("𠮷田", "吉田"), ("嶋田", "島田"), ("冨田", "富田"),
])
def test_old_and_variant_kanji_fold_to_the_common_form(written, key):
    assert normalise_kanji_name(written) == key


def test_sai_variants_follow_the_joyo_table_pairs_and_stay_two_names():
    # 齋 is the old form of 斎, 齊 the old form of 斉; 斎藤 and 斉藤 are different surnames.
    assert normalise_kanji_name("齋藤") == normalise_kanji_name("斎藤") == "斎藤"
    assert normalise_kanji_name("齊藤") == normalise_kanji_name("斉藤") == "斉藤"
    assert normalise_kanji_name("斎藤") != normalise_kanji_name("斉藤")


def test_compatibility_ideographs_and_variation_selectors_are_unfolded():
    assert normalise_kanji_name("\ufa19田") == "神田"  # U+FA19 CJK compatibility 神
    assert normalise_kanji_name("葛\U000e0100飾") == "葛飾"  # IVS on 葛
    assert normalise_kanji_name("ジョン・スミス") == "ジョンスミス"


def test_variant_table_maps_only_to_characters_that_are_not_themselves_folded():
    assert all(NAME_KANJI_VARIANTS.get(v, v) == v for v in NAME_KANJI_VARIANTS.values())
    # NFKC must not already rewrite a key, or its entry could never match.
    assert all(unicodedata.normalize("NFKC", k) == k and k != v for k, v in NAME_KANJI_VARIANTS.items())


@given(st.text(st.sampled_from("".join(NAME_KANJI_VARIANTS) + "山田太郎花子　 ・"), max_size=10))
def test_kanji_normalisation_is_idempotent(text):
    once = normalise_kanji_name(text)
    assert normalise_kanji_name(once) == once
