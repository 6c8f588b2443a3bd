"""docs/domain.md is what a user of this repository reads about codes and reasons: its tables
and examples are read back here and compared with the code, so the two cannot drift apart."""

from __future__ import annotations

import re
from pathlib import Path

from jukinet.domain.codes import IndividualNumber, LocalGovernmentCode, ResidentCode
from jukinet.domain.facts import ChangeReason

DOC = (Path(__file__).resolve().parents[2] / "docs" / "domain.md").read_text(encoding="utf-8")


def _section(number: int) -> str:
    start = DOC.index(f"\n## {number}.")
    end = DOC.find("\n## ", start + 1)
    return DOC[start:end if end > 0 else None]


def test_the_reasons_table_is_change_reason():
    rows = re.findall(r"^\| (\d\d) \| (\S+) .*? \| (entry|update|deletion) \|$", _section(2), re.MULTILINE)
    assert {(code, label, kind) for code, label, kind in rows} == {
        (r.value, r.label_ja, r.kind.value) for r in ChangeReason}


def test_every_code_example_parses_with_its_check_digit():
    section = _section(3)
    local = re.findall(r"\b(\d{6})\b", section.split("**Resident code**")[0])
    residents = re.findall(r"\b(\d{11})\b", section)
    numbers = re.findall(r"\b(\d{12})\b", section)
    assert len(local) >= 5 and len(residents) == 3 and len(numbers) == 2
    for value in local:
        assert LocalGovernmentCode.parse(value).value == value
    for value in residents:
        assert ResidentCode.parse(value).value == value
    for value in numbers:
        assert IndividualNumber.parse(value).value == value


def test_no_document_points_outside_the_repository():
    root = Path(__file__).resolve().parents[2]
    offenders = [str(p.relative_to(root)) for pattern in ("docs/**/*.md", "README.md", "lambdas/**/*.py",
                                                            "jukinet_ops/**/*.py", "infra/**/*.py", "bench/**/*.py",
                                                            "tests/**/*.py", "scripts/*", "app.py", "pyproject.toml")
                 for p in root.glob(pattern) if p.is_file() and p != Path(__file__).resolve()
                 and "shared/domain.md" in p.read_text(encoding="utf-8")]
    assert offenders == []
