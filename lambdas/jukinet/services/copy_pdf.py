"""The wide-area copy as a PDF (住民票の写し（広域交付）), rendered by the issuing municipality B.

reportlab's built-in CID Japanese fonts (``HeiseiMin-W3`` for the text, ``HeiseiKakuGo-W5`` for
the title): the font is named, not embedded, so nothing is downloaded or bundled beyond
reportlab itself, and every PDF reader maps it to a Japanese Mincho/Gothic font it has.

The layout follows the paper form a person knows: the title, the serial number and the date of
issue at the top right, one framed block per person (氏名 with its ふりがな, 生年月日, 性別,
続柄, 住民となった年月日, 住所を定めた年月日 and 届出年月日, 前住所, the last change), the
address and the householder once above them, then the certification: that this is a wide-area
copy issued under 住民基本台帳法 12条の4 from the record held by the home municipality (named),
by the issuing municipality (named) on the date of issue. 本籍 and 筆頭者 are not on the form at
all (``domain.wide_area_copy``: they are never in the answer).

The rendering is deterministic (``invariant``: no creation time, a fixed document id): the same
answer, serial and date give the same bytes, so the SHA-256 B records identifies the PDF the
counter printed, and the copy can be rendered again from the stored answer to check it.
"""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import Mapping, Sequence
from functools import lru_cache

from ..domain.wide_area_copy import FIELD_LABELS, japanese_date, label

MINCHO, GOTHIC = "HeiseiMin-W3", "HeiseiKakuGo-W5"
TITLE = "住民票の写し（広域交付）"
STATEMENT = ("この写しは、住民基本台帳法第12条の4の規定により、{home}が保有する住民票の記載事項に基づき"
             "交付したものであることを証明する。")
OMITTED = "（本籍及び筆頭者の記載は省略しています。）"
PERSON_FIELDS = ("name", "kana", "birth_date", "sex", "relationship", "resident_since", "address_since",
                 "notification_date", "previous_address", "last_change_reason", "last_change_date")


@lru_cache(maxsize=1)
def _fonts() -> None:
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.cidfonts import UnicodeCIDFont

    pdfmetrics.registerFont(UnicodeCIDFont(MINCHO))
    pdfmetrics.registerFont(UnicodeCIDFont(GOTHIC))


def render(*, rows: Sequence[Mapping[str, str]], serial: str, issued_on: dt.date, issuer: str, issuer_name: str,
           home: str, home_name: str) -> bytes:
    """The copy's PDF bytes (A4, one page per 4 persons)."""
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.units import mm
    from reportlab.pdfgen import canvas

    _fonts()
    width, height = A4
    buffer = io.BytesIO()
    pdf = canvas.Canvas(buffer, pagesize=A4, invariant=1, pageCompression=0)
    pdf.setTitle(f"{TITLE} {serial}")
    pdf.setAuthor(f"{issuer_name}（{issuer}）")
    pdf.setSubject("住民票の写し（広域交付）")
    left, right = 20 * mm, width - 20 * mm
    first = rows[0]
    pages = [rows[i:i + 4] for i in range(0, len(rows), 4)]
    for number, persons in enumerate(pages, start=1):
        y = height - 22 * mm
        pdf.setFont(GOTHIC, 18)
        pdf.drawCentredString(width / 2, y, TITLE)
        pdf.setFont(MINCHO, 9)
        pdf.drawRightString(right, y + 8 * mm, f"交付番号 {serial}")
        pdf.drawRightString(right, y + 3 * mm, f"頁 {number}／{len(pages)}")
        y -= 12 * mm
        pdf.setFont(MINCHO, 10.5)
        pdf.rect(left, y - 14 * mm, right - left, 18 * mm)
        pdf.drawString(left + 3 * mm, y, f"住所　{first.get('address', '')}")
        pdf.drawString(left + 3 * mm, y - 6 * mm, f"世帯主　{first.get('householder_name', '')}")
        pdf.drawString(left + 90 * mm, y - 6 * mm, f"世帯番号　{first.get('household_number', '')}")
        pdf.drawString(left + 3 * mm, y - 12 * mm, f"住民票を保有する市区町村　{home_name}（{home}）")
        y -= 20 * mm
        for person in persons:
            block = 12 * 5.2 * mm
            pdf.rect(left, y - block + 4 * mm, right - left, block)
            line = y
            for field in PERSON_FIELDS:
                value = person.get(field)
                if not value:
                    continue
                pdf.setFont(MINCHO, 8 if field == "kana" else 10.5)
                pdf.drawString(left + 3 * mm, line, FIELD_LABELS[field])
                pdf.drawString(left + 42 * mm, line, label(field, value))
                line -= 5.2 * mm
            y -= block + 2 * mm
        if number == len(pages):
            pdf.setFont(MINCHO, 9)
            pdf.drawString(left, 52 * mm, OMITTED)
            pdf.setFont(MINCHO, 10.5)
            pdf.drawString(left, 44 * mm, STATEMENT.format(home=home_name)[:46])
            pdf.drawString(left, 38 * mm, STATEMENT.format(home=home_name)[46:])
            pdf.drawString(left, 28 * mm, f"{japanese_date(issued_on)}")
            pdf.setFont(GOTHIC, 12)
            pdf.drawRightString(right, 20 * mm, f"{issuer_name}長")
            pdf.setFont(MINCHO, 8)
            pdf.drawString(left, 12 * mm, f"広域交付：{issuer_name}（{issuer}）が{home_name}（{home}）に照会して交付")
        pdf.showPage()
    pdf.save()
    return buffer.getvalue()
