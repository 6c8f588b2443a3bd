"""The blind index: a searchable keyed hash of name kana and birth date.

Identity facts are stored sealed (``domain.envelope``), so a tier cannot query its table for
"サイトウ ユウコ, born 1990-04-01". The search by the four basic facts (``docs/domain.md``
§4: name, birth date, sex, address) instead looks up the blind index of the query and then
opens only the few candidates it finds, comparing sex and address on the plaintext.

- ``index = HMAC-SHA256(key, normalise_kana(kana) + "|" + birth_date.isoformat())``, its
  first 16 bytes as 32 hex digits. The date is always the last 10 characters, so the ``|``
  cannot be confused with anything the name contains. Hex, not base64: the index is a
  DynamoDB key that operators read in logs and consoles.
- Equal *normalised* inputs give the equal index: ``ｻｲﾄｳ ﾕｰｺ`` and ``さいとう　ゆうこ`` meet
  (``domain.kana`` defines which spellings are equal). A mistyped name or date does not.
- The key is secret and per tier (prefecture, national): without it the index is an opaque
  token, so a copy of the table does not reveal who shares a name and a birthday with whom,
  and no dictionary of names × dates can be run against it. Changing the key means
  re-indexing every current record.
- 16 bytes (128 bits) are plenty: among 125 million residents the chance that two different
  (name, date) pairs share an index is about n²/2¹²⁹ ≈ 10⁻²³, and a collision would only add
  a candidate that the plaintext comparison then drops. Shorter keys save index storage.

``blind_index_with_sex`` adds 性別 for a narrower index. The store uses the plain one: the
name + birth date pair is already selective, and a wrongly recorded sex (later corrected by
職権修正) should not hide a record from a search.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac

from .facts import Sex
from .kana import normalise_kana

INDEX_BYTES = 16
MIN_KEY_BYTES = 32


def _check_key(key: bytes) -> None:
    if not isinstance(key, bytes | bytearray) or len(key) < MIN_KEY_BYTES:
        raise ValueError(f"the blind-index key must be at least {MIN_KEY_BYTES} bytes")


def _index(key: bytes, message: str) -> str:
    _check_key(key)
    return hmac.new(key, message.encode("utf-8"), hashlib.sha256).digest()[:INDEX_BYTES].hex()


def blind_index(key: bytes, kana_name: str, birth_date: dt.date) -> str:
    """The searchable index of (name kana, birth date) under the tier's secret ``key``."""
    return _index(key, f"{normalise_kana(kana_name)}|{birth_date.isoformat()}")


def blind_index_with_sex(key: bytes, kana_name: str, birth_date: dt.date, sex: Sex) -> str:
    """As ``blind_index``, narrowed by sex (性別).

    The message ends in ``|1`` or ``|2`` where ``blind_index``'s ends in a date, so the two
    kinds of index never coincide for any input.
    """
    return _index(key, f"{normalise_kana(kana_name)}|{birth_date.isoformat()}|{sex.value}")
