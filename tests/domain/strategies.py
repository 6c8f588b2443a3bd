"""Hypothesis strategies for the domain core, shared by every test that needs valid data.

    from tests.domain.strategies import resident_codes, update_notices, identity_facts

Everything generated here is *valid*: it parses, and ``UpdateNotice`` accepts it. Tests
that need invalid input derive it from these values.
"""

from __future__ import annotations

import dataclasses
import datetime as dt

from hypothesis import strategies as st

from jukinet.domain.codes import IndividualNumber, LocalGovernmentCode, ResidentCode
from jukinet.domain.facts import ChangeKind, ChangeReason, IdentityFacts, PersonName, Sex
from jukinet.domain.notice import MAX_SEQUENCE, UpdateNotice

UTC = dt.UTC
NAGANO = "20"

# Realistic names: (kanji, kana). Kana as the register writes it (full-width katakana).
SURNAMES = [
    ("佐藤", "サトウ"), ("鈴木", "スズキ"), ("高橋", "タカハシ"), ("田中", "タナカ"),
    ("伊藤", "イトウ"), ("渡辺", "ワタナベ"), ("山本", "ヤマモト"), ("中村", "ナカムラ"),
    ("小林", "コバヤシ"), ("加藤", "カトウ"), ("吉田", "ヨシダ"), ("山田", "ヤマダ"),
    ("丸山", "マルヤマ"), ("小松", "コマツ"), ("宮澤", "ミヤザワ"), ("髙橋", "タカハシ"),
    ("山﨑", "ヤマザキ"), ("齋藤", "サイトウ"), ("太田", "オオタ"), ("百瀬", "モモセ"),
]
GIVEN_NAMES = [
    ("太郎", "タロウ"), ("花子", "ハナコ"), ("健一", "ケンイチ"), ("由美子", "ユミコ"),
    ("翔太", "ショウタ"), ("結衣", "ユイ"), ("大輔", "ダイスケ"), ("美咲", "ミサキ"),
    ("直樹", "ナオキ"), ("恵", "メグミ"), ("蓮", "レン"), ("陽菜", "ヒナ"),
    ("勇", "イサム"), ("千鶴", "チヅル"), ("龍之介", "リュウノスケ"), ("ヴィクトリア", "ヴィクトリア"),
]
NAGANO_PLACES = [
    "長野市大字鶴賀緑町1613番地", "松本市丸の内3番7号", "上田市大手一丁目11番16号",
    "岡谷市幸町8番1号", "飯田市大久保町2534番地", "諏訪市高島一丁目22番30号",
    "須坂市大字須坂1528番地1", "小諸市相生町三丁目3番3号", "伊那市下新田3050番地",
    "駒ヶ根市赤須町20番1号", "佐久市中込3056番地", "軽井沢町大字長倉2381番地1",
]


def _digits(n: int) -> st.SearchStrategy[str]:
    return st.text(alphabet="0123456789", min_size=n, max_size=n)


resident_code_bodies = _digits(10)
resident_codes = resident_code_bodies.map(ResidentCode.from_body)
individual_numbers = _digits(11).map(IndividualNumber.from_body)

# A municipality of Nagano (prefecture 20): any three-digit municipality part except 000,
# which is the prefecture itself.
nagano_municipalities = st.integers(1, 999).map(lambda n: LocalGovernmentCode.from_body(f"{NAGANO}{n:03d}"))
# Any local government code at all, prefecture-level ones included.
local_government_codes = st.tuples(st.integers(1, 47), st.integers(0, 999)).map(
    lambda t: LocalGovernmentCode.from_body(f"{t[0]:02d}{t[1]:03d}")
)

birth_dates = st.dates(min_value=dt.date(1900, 1, 1), max_value=dt.date(2024, 12, 31))
# Juki-net began in August 2002; notice times stay well inside four-digit years.
notice_times = st.datetimes(
    min_value=dt.datetime(2002, 8, 5), max_value=dt.datetime(2035, 12, 31), timezones=st.just(UTC),
)
reasons = st.sampled_from(list(ChangeReason))
entry_or_update_reasons = st.sampled_from([r for r in ChangeReason if r.kind is not ChangeKind.DELETION])


@st.composite
def person_names(draw: st.DrawFn) -> PersonName:
    surname, surname_kana = draw(st.sampled_from(SURNAMES))
    given, given_kana = draw(st.sampled_from(GIVEN_NAMES))
    former = draw(st.none() | st.sampled_from(SURNAMES))
    return PersonName(
        kanji=f"{surname}　{given}",
        kana=f"{surname_kana}　{given_kana}",
        former_surname=None if former is None else former[0],
        former_surname_kana=None if former is None else former[1],
        alias=None,
    )


@st.composite
def identity_facts(
    draw: st.DrawFn, resident_code: ResidentCode | None = None, birth_date: dt.date | None = None,
) -> IdentityFacts:
    return IdentityFacts(
        resident_code=resident_code or draw(resident_codes),
        name=draw(person_names()),
        birth_date=birth_date or draw(birth_dates),
        sex=draw(st.sampled_from(list(Sex))),
        address=f"長野県{draw(st.sampled_from(NAGANO_PLACES))}",
        individual_number=draw(st.none() | individual_numbers),
    )


@st.composite
def update_notices(
    draw: st.DrawFn,
    reason: ChangeReason | None = None,
    resident_code: ResidentCode | None = None,
    municipality: LocalGovernmentCode | None = None,
    sequence: int | None = None,
    notice_time: dt.datetime | None = None,
) -> UpdateNotice:
    """A valid notice; pass arguments to pin parts of it (e.g. one resident's notices)."""
    reason = reason or draw(reasons)
    code = resident_code or draw(resident_codes)
    facts = None
    # A date of change never lies after the day of the notice (domain.notice.latest_change_date).
    notice_time = notice_time or draw(notice_times)
    change_date = draw(st.dates(min_value=dt.date(2002, 8, 5), max_value=max(dt.date(2002, 8, 5), notice_time.date())))
    if reason.kind is not ChangeKind.DELETION:
        born = draw(st.dates(min_value=dt.date(1900, 1, 1), max_value=change_date))
        facts = draw(identity_facts(resident_code=code, birth_date=born))
    previous = None
    if reason is ChangeReason.CODE_CHANGE:
        previous = draw(resident_codes.filter(lambda c: c != code))
    return UpdateNotice(
        municipality=municipality or draw(nagano_municipalities),
        sequence=sequence or draw(st.integers(1, MAX_SEQUENCE)),
        resident_code=code,
        reason=reason,
        change_date=change_date,
        notice_time=notice_time,
        facts=facts,
        previous_resident_code=previous,
    )


notice_dicts = update_notices().map(UpdateNotice.to_dict)


# --- whole resident stories, for the ordering rule -----------------------------------------------

# A few Nagano municipalities: 長野市, 松本市, 上田市, 岡谷市.
STORY_MUNICIPALITIES = [LocalGovernmentCode.from_body(b) for b in ("20201", "20202", "20203", "20204")]


@dataclasses.dataclass
class Story:
    """One or more residents' notices and the state the ordering rule must reach.

    ``expected`` maps each resident code to ``(status, facts, replaced_by)`` where status is
    ``"active"``, ``"deleted"`` or ``"code_changed"``.
    """

    notices: list[UpdateNotice]
    expected: dict[str, tuple[str, IdentityFacts | None, str | None]]


class _Sequences:
    """Gap-free sequence numbers per municipality, as each CS assigns them."""

    def __init__(self) -> None:
        self.last: dict[str, int] = {}

    def next(self, municipality: LocalGovernmentCode) -> int:
        self.last[municipality.value] = self.last.get(municipality.value, 0) + 1
        return self.last[municipality.value]


@st.composite
def _one_story(draw: st.DrawFn, sequences: _Sequences) -> Story:
    """A resident's life as notices: born or moved in, then moves (転出 at the old municipality,
    転入 at the new one, same day or later, the 転出 often *reported* after the 転入),
    moves within a municipality, name changes, corrections, code changes, perhaps death."""
    code = draw(resident_codes)
    used = {code}  # a resident code given up in a 住民票コード変更 is never issued again
    muni = draw(st.sampled_from(STORY_MUNICIPALITIES))
    day = draw(st.dates(min_value=dt.date(2003, 1, 1), max_value=dt.date(2020, 12, 31)))
    facts = draw(identity_facts(resident_code=code, birth_date=day - dt.timedelta(days=draw(st.integers(0, 30000)))))
    notices: list[UpdateNotice] = []
    expected: dict[str, tuple[str, IdentityFacts | None, str | None]] = {}

    def reported(on: dt.date) -> dt.datetime:
        # Reported 0–20 days after the change, at any time of day: arrival and report order
        # are unrelated to the order of the changes.
        delay = dt.timedelta(days=draw(st.integers(0, 20)), seconds=draw(st.integers(0, 86399)))
        return dt.datetime.combine(on, dt.time(), UTC) + delay

    def emit(reason: ChangeReason, at: LocalGovernmentCode, on: dt.date, time: dt.datetime | None = None,
             with_facts: IdentityFacts | None = None, previous: ResidentCode | None = None) -> UpdateNotice:
        notice = UpdateNotice(
            municipality=at, sequence=sequences.next(at), resident_code=code, reason=reason, change_date=on,
            notice_time=time or reported(on), facts=with_facts, previous_resident_code=previous,
        )
        notices.append(notice)
        return notice

    first = ChangeReason.BIRTH if facts.birth_date == day else draw(st.sampled_from(
        [ChangeReason.MOVE_IN, ChangeReason.SPECIAL_MOVE_IN, ChangeReason.ENTRY_BY_AUTHORITY]))
    emit(first, muni, day, with_facts=facts)
    alive = True
    for _ in range(draw(st.integers(0, 5))):
        day += dt.timedelta(days=draw(st.integers(1, 400)))
        step = draw(st.sampled_from(["move", "move", "within", "name", "correction", "code", "death"]))
        if step == "move":
            new_muni = draw(st.sampled_from([m for m in STORY_MUNICIPALITIES if m != muni]))
            moved_in_on = day + dt.timedelta(days=draw(st.integers(0, 14)))
            facts = dataclasses.replace(facts, address=f"長野県{draw(st.sampled_from(NAGANO_PLACES))}")
            move_in = emit(draw(st.sampled_from([ChangeReason.MOVE_IN, ChangeReason.SPECIAL_MOVE_IN])),
                           new_muni, moved_in_on, with_facts=facts)
            late = draw(st.booleans())  # the old municipality reports its 転出 after the 転入
            emit(ChangeReason.MOVE_OUT, muni, day,
                 time=move_in.notice_time + dt.timedelta(hours=draw(st.integers(1, 500))) if late else None)
            muni, day = new_muni, moved_in_on
        elif step == "within":
            facts = dataclasses.replace(facts, address=f"長野県{draw(st.sampled_from(NAGANO_PLACES))}")
            emit(ChangeReason.MOVE_WITHIN, muni, day, with_facts=facts)
        elif step == "name":
            facts = dataclasses.replace(facts, name=draw(person_names()))
            emit(ChangeReason.NAME_CHANGE, muni, day, with_facts=facts)
        elif step == "correction":
            facts = dataclasses.replace(facts, sex=draw(st.sampled_from(list(Sex))))
            emit(ChangeReason.CORRECTION_BY_AUTHORITY, muni, day, with_facts=facts)
        elif step == "code":
            old = code
            code = draw(resident_codes.filter(lambda c: c not in used))
            used.add(code)
            facts = dataclasses.replace(facts, resident_code=code)
            emit(ChangeReason.CODE_CHANGE, muni, day, with_facts=facts, previous=old)
            expected[old.value] = ("code_changed", None, code.value)
        else:
            emit(ChangeReason.DEATH, muni, day)
            alive = False
            break
    expected[code.value] = ("active", facts, None) if alive else ("deleted", None, None)
    return Story(notices, expected)


@st.composite
def resident_stories(draw: st.DrawFn, max_residents: int = 3) -> Story:
    """Stories of 1..max_residents residents, merged (their resident codes are distinct)."""
    sequences = _Sequences()
    notices: list[UpdateNotice] = []
    expected: dict[str, tuple[str, IdentityFacts | None, str | None]] = {}
    for _ in range(draw(st.integers(1, max_residents))):
        story = draw(_one_story(sequences))
        if expected.keys() & story.expected.keys():
            continue  # two residents drew the same code: vanishingly rare, skip the second
        notices.extend(story.notices)
        expected.update(story.expected)
    return Story(notices, expected)
