"""Name normalisation for *matching* (検索・名寄せ), never for storage.

The register keeps a name exactly as written (``facts.PersonName``); a search by the four
basic facts (``docs/domain.md`` §4) must still find ``ｻｲﾄｳ ﾕｰｺ`` when asked for
``さいとう　ゆうこ``. The functions here map every spelling a clerk or an existing system
might produce to one *matching key*. Two names with the same key are candidates for the same
person; birth date, sex and address then narrow the candidates. So the rules below lean to
merging: a false merge costs one extra candidate, a missed merge costs a failed search.

``normalise_kana`` (フリガナ), in this order:

1. NFKC: half-width katakana become full-width (``ｶﾞ`` → ``ガ``), full-width spaces and
   Latin become ASCII, compatibility characters are unfolded (``ゟ`` → ``より``).
2. Hiragana become katakana (``jaconv.hira2kata``; ``ゝゞ`` become ``ヽヾ``).
3. Every separator goes: white space of any kind, the middle dot ``・`` (and ``·``), and the
   double hyphen ``゠``/``=`` that foreign names use between given name and surname. A
   detached voiced-sound mark (``カ゛``, which NFKC turns into a space and a combining mark)
   is composed again (``ガ``); a mark that voices nothing (``ン゛``) is dropped.
4. The iteration marks ``ヽ``/``ヾ`` are written out (``サヽキ`` → ``ササキ``, ``スヾキ`` → ``スズキ``);
   one with nothing before it is dropped.
5. ヴ: *folded*, not kept. ``ヴァ ヴィ ヴ ヴェ ヴォ`` and ``ヷ ヸ ヹ ヺ`` become ``バ ビ ブ ベ ボ``
   because the same person is registered as ``ヴィクトリア`` by one clerk and ``ビクトリア`` by
   another (both are accepted spellings under 外来語の表記, 1991). The stored kana keeps ヴ.
6. Small kana become large (``ァィゥェォッャュョヮヵヶ`` and the Ainu small ``ㇰ``–``ㇿ``):
   clerks and old systems differ on ``キョウコ``/``キヨウコ`` (many older systems could only
   print large kana), so they must match.
7. Kana that sound alike are merged: ``ヂ``→``ジ``, ``ヅ``→``ズ``, ``ヰ``→``イ``, ``ヱ``→``エ``,
   ``ヲ``→``オ`` (``チヅル``/``チズル``, ``ヱミ``/``エミ``).
8. Long vowels. Every dash-like character (``-``, ``‐``, ``—``, ``―``, ``−`` …) becomes ``ー``.
   Then ``ー`` is written out as the vowel it lengthens, the way Japanese names spell long
   vowels: after an o-row kana it is ``ウ`` (``コー`` → ``コウ``), after an e-row kana ``イ``
   (``ケー`` → ``ケイ``), otherwise the kana's own vowel (``ユー`` → ``ユウ``, ``アー`` → ``アア``).
   And because ``オオタ``/``オウタ`` and ``ネエ``/``ネイ`` spell the same sound, an ``オ``
   after an o-row kana becomes ``ウ`` and an ``エ`` after an e-row kana becomes ``イ``.
   So ``オータ``, ``オオタ`` and ``オウタ`` all give ``オウタ``. A ``ー`` with no vowel before it
   (at the start, after ``ン``) is kept.

Anything that is not kana (a Latin letter in an alias, say) passes through after NFKC; the
validation of what may be stored is ``facts.PersonName``'s job, not this module's.

``normalise_kanji_name`` (漢字氏名): NFKC (which also maps most CJK compatibility ideographs
such as ``神`` to their unified form), variation selectors (IVS) removed, separators removed,
then ``NAME_KANJI_VARIANTS`` — the one table of old and variant forms folded to the form in
today's 常用漢字表. No small pure-Python package on PyPI fits: ``jaconv`` has no kanji
table; ``kyujipy`` converts whole texts between 旧字体 and 新字体 but does not cover the
異体字 that dominate surnames (``髙``, ``﨑``, ``𠮷``, ``嶋``); and a Lambda dependency for a
table of a few dozen characters is not worth its supply-chain cost.
"""

from __future__ import annotations

import re
import unicodedata

import jaconv

# ---------------------------------------------------------------------------------------
# NAME_KANJI_VARIANTS: the one place to correct the kanji folding.
#
# Part 1 — 旧字体 → 新字体 as paired in the 常用漢字表 (2010; the 康熙字典体 in brackets),
# limited to characters common in names and place names. Note 龍 → 竜 *is* such a pair
# (竜(龍) in the table), and 齊 pairs with 斉, not with 斎 (斎's old form is 齋): 斉藤 and
# 斎藤 are distinct surnames and stay distinct here; their kana (サイトウ) matches anyway.
#
# Part 2 — 異体字 (variant glyphs that are not 旧字体) frequent in surnames; the register
# accepts them as written, matching folds them to the common form.
# ---------------------------------------------------------------------------------------
_KYUJITAI_TO_SHINJITAI = {
    "亞": "亜", "圓": "円", "應": "応", "櫻": "桜", "假": "仮", "會": "会", "繪": "絵",
    "學": "学", "嶽": "岳", "樂": "楽", "關": "関", "氣": "気", "龜": "亀", "舊": "旧",
    "峽": "峡", "鄕": "郷", "曉": "暁", "區": "区", "勳": "勲", "薰": "薫", "惠": "恵",
    "溪": "渓", "縣": "県", "劍": "剣", "廣": "広", "國": "国", "黑": "黒", "齋": "斎",
    "齊": "斉", "實": "実", "壽": "寿", "收": "収", "澁": "渋", "將": "将", "條": "条",
    "眞": "真", "愼": "慎", "盡": "尽", "靜": "静", "聲": "声", "淺": "浅", "專": "専",
    "曾": "曽", "莊": "荘", "藏": "蔵", "增": "増", "臺": "台", "瀧": "滝", "澤": "沢",
    "團": "団", "晝": "昼", "鐵": "鉄", "傳": "伝", "燈": "灯", "稻": "稲", "德": "徳",
    "濱": "浜", "佛": "仏", "豐": "豊", "寶": "宝", "邊": "辺", "萬": "万",
    "彌": "弥", "與": "与", "譽": "誉", "來": "来", "龍": "竜", "綠": "緑", "禮": "礼",
    "靈": "霊", "榮": "栄", "營": "営", "兒": "児", "圖": "図", "惡": "悪", "驛": "駅",
    "爲": "為", "縱": "縦", "從": "従", "檢": "検", "權": "権", "顯": "顕", "嚴": "厳",
    "郞": "郎",
}
_SURNAME_VARIANTS = {
    "髙": "高",  # はしご高
    "﨑": "崎",  # たつさき; U+FA11 has no decomposition, so NFKC keeps it
    "嵜": "崎",
    "碕": "崎",
    "邉": "辺",
    "濵": "浜",
    "嶋": "島",
    "嶌": "島",
    "冨": "富",
    "峯": "峰",
    "舘": "館",
    "桒": "桑",
    "戶": "戸",
    "𠮷": "吉",  # つちよし, U+20BB7
    "邨": "村",
}
NAME_KANJI_VARIANTS: dict[str, str] = {**_KYUJITAI_TO_SHINJITAI, **_SURNAME_VARIANTS}

# ---------------------------------------------------------------------------------------
# Kana tables (rules 3, 5–8 of the module docstring).
# ---------------------------------------------------------------------------------------
_SEPARATORS = "・·=゠"
_DASHES = "-‐‑‒–—―−─━"
_SMALL_TO_LARGE = dict(zip(
    "ァィゥェォッャュョヮヵヶㇰㇱㇲㇳㇴㇵㇶㇷㇸㇹㇺㇻㇼㇽㇾㇿ",
    "アイウエオツヤユヨワカケクシストヌハヒフヘホムラリルレロ",
    strict=True,
))
_SOUND_ALIKE = {
    "ヂ": "ジ", "ヅ": "ズ", "ヰ": "イ", "ヱ": "エ", "ヲ": "オ",
    "ヷ": "バ", "ヸ": "ビ", "ヹ": "ベ", "ヺ": "ボ",  # the ヴ rule (5) for the rare precomposed forms
}
_KANA_TRANSLATION = str.maketrans({
    **{c: None for c in _SEPARATORS},
    **{c: "ー" for c in _DASHES},
    **_SMALL_TO_LARGE,
    **_SOUND_ALIKE,
})
_VU = re.compile("ヴ([ァィェォュ]?)")
_VU_FOLD = {"": "ブ", "ァ": "バ", "ィ": "ビ", "ェ": "ベ", "ォ": "ボ", "ュ": "ビュ"}

_VOWEL_ROWS = {
    "a": "アカガサザタダナハバパマヤラワ",
    "i": "イキギシジチヂニヒビピミリヰ",
    "u": "ウクグスズツヅヌフブプムユルヴ",
    "e": "エケゲセゼテデネヘベペメレヱ",
    "o": "オコゴソゾトドノホボポモヨロヲ",
}
_VOWEL_OF = {kana: vowel for vowel, row in _VOWEL_ROWS.items() for kana in row}
# How a lengthened vowel is spelled in a name: o → ウ, e → イ, others their own vowel.
_LONG_SPELLING = {"a": "ア", "i": "イ", "u": "ウ", "e": "イ", "o": "ウ"}
_NEEDS_LONG_VOWEL_PASS = re.compile("[ーオエ]")
_STRAY_MARKS = re.compile("[\u3099\u309a]")

_VARIATION_SELECTORS = re.compile("[\ufe00-\ufe0f\U000e0100-\U000e01ef]")
_KANJI_TRANSLATION = str.maketrans({**NAME_KANJI_VARIANTS, **{c: None for c in _SEPARATORS}})


def _expand_iteration_marks(text: str) -> str:
    out: list[str] = []
    for ch in text:
        if ch in "ヽヾ":
            if not out:
                continue  # repeats nothing: dropped
            previous = out[-1]
            if ch == "ヾ":
                voiced = unicodedata.normalize("NFC", previous + "\u3099")
                previous = voiced if len(voiced) == 1 else previous
            out.append(previous)
        else:
            out.append(ch)
    return "".join(out)


def _fold_long_vowels(text: str) -> str:
    out: list[str] = []
    previous_vowel: str | None = None
    for ch in text:
        if previous_vowel is not None and (
            ch == "ー" or (ch == "オ" and previous_vowel == "o") or (ch == "エ" and previous_vowel == "e")
        ):
            ch = _LONG_SPELLING[previous_vowel]
        out.append(ch)
        previous_vowel = _VOWEL_OF.get(ch)
    return "".join(out)


def normalise_kana(text: str) -> str:
    """The matching key of a kana name; see the module docstring for every rule."""
    text = jaconv.hira2kata(unicodedata.normalize("NFKC", text))
    text = "".join(text.split())
    if "\u3099" in text or "\u309a" in text:  # a voiced mark that stood apart from its kana
        text = unicodedata.normalize("NFC", text)
    if "ヽ" in text or "ヾ" in text:
        text = _expand_iteration_marks(text)
    if "ヴ" in text:
        text = _VU.sub(lambda m: _VU_FOLD[m.group(1)], text)
    text = text.translate(_KANA_TRANSLATION)
    if "\u3099" in text or "\u309a" in text:
        # A mark that only now meets a kana it can voice (``ッﾞ`` enlarged to ``ツ゛``) is
        # composed and folded again; one that still stands alone (``ン゛``, ``゛``) is dropped.
        composed = unicodedata.normalize("NFC", text).replace("ヴ", "ブ").translate(_KANA_TRANSLATION)
        text = _STRAY_MARKS.sub("", composed)
    if _NEEDS_LONG_VOWEL_PASS.search(text):
        text = _fold_long_vowels(text)
    return text


def normalise_kanji_name(text: str) -> str:
    """The matching key of a kanji name: NFKC, no IVS or separators, ``NAME_KANJI_VARIANTS``."""
    text = unicodedata.normalize("NFKC", text)
    text = _VARIATION_SELECTORS.sub("", "".join(text.split()))
    return text.translate(_KANJI_TRANSLATION)
