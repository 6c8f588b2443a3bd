"""Every reference from a document or the code to a part of this repository resolves: Markdown
links (and their #anchors), ``file.md §N`` / ``§Title`` section references, and
``file.md, "Section title"``. A user who clones the repository reads exactly these files."""

from __future__ import annotations

import glob
import re
import subprocess
from functools import cache
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
TRACKED = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
MARKDOWN = sorted(p for p in TRACKED if p.endswith(".md"))
SOURCES = sorted(p for p in TRACKED if (p.endswith((".md", ".py", ".toml")) or p.startswith("scripts/"))
                 and p != "tests/test_doc_links.py")  # this file: its examples do not resolve, on purpose

LINK = re.compile(r"(?<!!)\[[^\]\n]*\]\(([^)\s]+)\)")
NAMED_JUST_BEFORE = re.compile(r"([\w./-]*[\w-]\.md)`{0,2}\s*$")  # `docs/domain.md` §5, domain.md §5
SECTION = re.compile(r"§\s?(\d+(?:\.\d+)*|[A-Z][^,;:)\n`*]*[^,;:)\n`*\s.])")
QUOTED = re.compile(r"([\w./-]*[\w-]\.md)`?,? \"([A-Z][^\"]+)\"")


def _text(path: str) -> str:
    return (REPO / path).read_text(encoding="utf-8")


@cache
def headings(path: str) -> tuple[str, ...]:
    text = re.sub(r"^```.*?^```", "", _text(path), flags=re.MULTILINE | re.DOTALL)  # no comment lines of code
    titles = [m.group(1).strip() for m in re.finditer(r"^#{1,6}\s+(.+)$", text, re.MULTILINE)]
    # a paragraph or an item led by a bold title (**Alarm catalogue.** …) is a section too
    titles += [m.group(1) for m in re.finditer(r"^\s*(?:[*-]\s+)?\*\*([^*\n]+?)\.?\*\*", text, re.MULTILINE)]
    return tuple(titles)


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.lower().replace("`", "")).replace(" ", "-")


def anchors(path: str) -> set[str]:
    found: set[str] = set()
    text = re.sub(r"^```.*?^```", "", _text(path), flags=re.MULTILINE | re.DOTALL)
    for heading in (m.group(1).strip() for m in re.finditer(r"^#{1,6}\s+(.+)$", text, re.MULTILINE)):
        base, n = slug(heading), 0
        while (candidate := base if n == 0 else f"{base}-{n}") in found:
            n += 1
        found.add(candidate)
    return found


def resolve(name: str, source: str) -> str | None:
    """A Markdown file named from ``source``: from the repository root, beside the source, or by its
    unique file name (``domain.md``)."""
    for candidate in (Path(name), Path(source).parent / name):
        normal = candidate.as_posix().replace("/./", "/").removeprefix("./")
        resolved = (REPO / normal).resolve()
        if resolved.is_file() and resolved.is_relative_to(REPO):
            return resolved.relative_to(REPO).as_posix()
    same_name = [p for p in MARKDOWN if Path(p).name == Path(name).name]
    return same_name[0] if len(same_name) == 1 else None


def has_section(path: str, section: str) -> bool:
    for heading in headings(path):
        if section[0].isdigit():
            if re.match(rf"{re.escape(section)}(\.|\s|$)", heading):
                return True
        elif heading.startswith(section):
            return True
    return False


def _problems_of_links(path: str) -> list[str]:
    problems = []
    for match in LINK.finditer(_text(path)):
        target = match.group(1)
        if re.match(r"[a-z]+:", target):  # https:, mailto:
            continue
        file_part, _, anchor = target.partition("#")
        if file_part:
            resolved = (REPO / Path(path).parent / file_part).resolve()
            if not resolved.exists() or not resolved.is_relative_to(REPO):
                problems.append(f"{path}: link to {target}: no such file in the repository")
                continue
            file_part = resolved.relative_to(REPO).as_posix()
        else:
            file_part = path
        if anchor and file_part.endswith(".md") and anchor not in anchors(file_part):
            problems.append(f"{path}: link to {target}: no heading with that anchor in {file_part}")
    return problems


def _problems_of_sections(path: str) -> list[str]:
    text, problems = _text(path), []
    for paragraph_start, paragraph in _paragraphs(text):
        for match in SECTION.finditer(paragraph):
            named = NAMED_JUST_BEFORE.search(paragraph[:match.start()])
            if named:
                target = resolve(named.group(1), path)
                if target is None:
                    problems.append(f"{path}: {named.group(1)} §{match.group(1)}: no such document")
                    continue
            elif path.endswith(".md"):
                target = path  # a bare § in a document: its own section
            else:
                continue  # a bare § in code: a standard or an RFC, not this repository
            if not has_section(target, match.group(1)):
                problems.append(f"{path}: §{match.group(1)} of {target}: no such section")
        for match in QUOTED.finditer(paragraph):
            target = resolve(match.group(1), path)
            if target is None:
                problems.append(f"{path}: {match.group(1)}: no such document")
            elif not has_section(target, match.group(2)):
                problems.append(f"{path}: {match.group(1)}, \"{match.group(2)}\": no such section in {target}")
    return problems


PATH = re.compile(r"(?<![\w./\\-])((?:docs|infra|lambdas|jukinet_ops|embedded_aws|tests|bench|scripts|data|\.ci)/[\w./*-]*[\w*])")


def _problems_of_paths(path: str) -> list[str]:
    """Paths of this repository named in a document or the code (`docs/operations.md`,
    `infra/stacks/tier.py`, `docs/decisions/0030-*`, `tests/pipeline/harness.Pipeline`) exist."""
    problems = []
    text = _text(path)
    for match in PATH.finditer(text):
        if text[match.end():match.end() + 1] in ("\\", "{", "<"):  # a pattern (docs/provision\.md), a template
            continue
        ref = match.group(1).split("::")[0]
        decision = re.fullmatch(r"(docs/decisions/\d{4})", ref)
        candidates = [f"{decision.group(1)}-*.md"] if decision else [ref, re.sub(r"\.\w+$", ".py", ref)]
        if not any(glob.glob(str(REPO / c), recursive=True) for c in candidates):
            problems.append(f"{path}: {ref}: not in the repository")
    return problems


def _paragraphs(text: str) -> list[tuple[int, str]]:
    """Blank-line separated paragraphs (a reference and the document it names are in one), with line
    breaks and comment markers turned into spaces."""
    found, offset = [], 0
    for block in re.split(r"\n\s*\n", text):
        found.append((offset, re.sub(r"\s*\n\s*(?:#\s*)?", " ", block)))
        offset += len(block) + 2
    return found


@pytest.mark.parametrize("path", MARKDOWN)
def test_every_link_of_a_document_resolves(path):
    assert _problems_of_links(path) == []


def test_every_path_named_by_a_document_or_the_code_exists():
    # tests name files that must not exist (a catalogue entry naming a missing test), so: docs and code
    problems = [p for path in SOURCES if not path.startswith("tests/") for p in _problems_of_paths(path)]
    assert problems == []


def test_every_section_reference_resolves():
    problems = [p for path in SOURCES for p in _problems_of_sections(path)]
    assert problems == []


@pytest.mark.parametrize(("source", "reference", "resolves"), [
    ("docs/checklist.md", "as docs/domain.md §5 summarises", True),
    ("docs/checklist.md", "as docs/domain.md §9 summarises", False),
    ("docs/checklist.md", "see `docs/architecture.md` §Codes", False),
    ("docs/checklist.md", "see `docs/architecture.md` §Who may change which resident", True),
    ("docs/checklist.md", "in `docs/architecture.md` (its §3)", False),  # a bare § is the document's own
    ("docs/checklist.md", 'as `docs/local-mode.md`, "Bucket policy conditions" says', True),  # a bold lead
    ("docs/export-format.md", "date (§3.3)", True),
    ("docs/export-format.md", "date (§3.9)", False),
    ("docs/provision.md", 'the check (`docs/operations.md`, "Monthly monitoring report")', True),
    ("docs/provision.md", 'the check (`docs/operations.md`, "Monthly monitoring reports, weekly")', False),
    ("lambdas/jukinet/domain/envelope.py", "(NIST SP 800-38D §8.3)", True),
])
def test_the_checker_tells_a_resolving_reference_from_a_dangling_one(source, reference, resolves, pretend):
    pretend(source, reference)
    assert (_problems_of_sections(source) == []) is resolves


@pytest.mark.parametrize(("reference", "resolves"), [
    ("see `docs/operations.md` and `infra/stacks/tier.py`", True),
    ("decision `docs/decisions/0030-*`, docs/decisions/0006", True),
    ("see `docs/operation.md`", False),
    ("decision docs/decisions/0024", False),  # never written
    ("`embedded_aws/runner.Runner`", True),
])
def test_the_checker_tells_an_existing_path_from_a_missing_one(reference, resolves, pretend):
    pretend("docs/security.md", reference)
    assert (_problems_of_paths("docs/security.md") == []) is resolves


@pytest.mark.parametrize(("reference", "resolves"), [
    ("[the map](architecture.md)", True),
    ("[the map](architecture.md#code-layout)", True),
    ("[the map](architecture.md#codes)", False),
    ("[notes](../../outside/notes.md)", False),  # beside the checkout: a user who clones it has none
    ("[decision](decisions/0006-lambda-bundling-without-docker.md)", True),
    ("[AWS](https://aws.amazon.com/)", True),
])
def test_the_checker_tells_a_resolving_link_from_a_dangling_one(reference, resolves, pretend):
    pretend("docs/security.md", reference)
    assert (_problems_of_links("docs/security.md") == []) is resolves


@pytest.fixture
def pretend(monkeypatch):
    """pretend(path, text): the checker reads that file with a paragraph ``text`` added (every other file as
    it is; every reference of the file as committed resolves, test_every_…_resolves)."""
    real = _text

    def install(path: str, text: str) -> None:
        monkeypatch.setitem(globals(), "_text", lambda p: f"{real(p)}\n\n{text}\n" if p == path else real(p))
        headings.cache_clear()

    yield install
    headings.cache_clear()
