"""docs/security.md is checked: every test id it names exists, every file it names exists,
and no item of RFC 8725 section 3, ASVS V7, ASVS V9, RFC 9700 section 4.14.2 or the code-flow
checklist (BCP 240) is missing.

A test id is ``tests/<path>.py::<function>`` or ``tests/<path>.py::<Class>::<method>``
(parametrized tests are named without their brackets). It exists when the file is a test
module that pytest collects (``test_*.py``) and defines that test at top level (or in that
``Test*`` class), which is read from the file's syntax tree: nothing is imported or run.
"""

from __future__ import annotations

import ast
import functools
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "security.md"
TEST_ID = re.compile(r"`(tests/[\w/.-]+\.py(?:::[\w]+)+)(\[[^\]`]*\])?`")
REPO_PATH = re.compile(r"`((?:src|tests|fuzz|bench|docs)/[\w/.-]*)`")
# The words a row without a test id must use instead.
NO_TEST = ("not yet tested", "not applicable")
RFC_8725 = [f"3.{n}" for n in range(1, 13)]
ASVS_V9 = ["V9.1.1", "V9.1.2", "V9.1.3", "V9.2.1", "V9.2.2", "V9.2.3", "V9.2.4"]
ASVS_V7 = [
    *(f"V7.1.{n}" for n in (1, 2, 3)),
    *(f"V7.2.{n}" for n in (1, 2, 3, 4)),
    "V7.3.1",
    "V7.3.2",
    *(f"V7.4.{n}" for n in (1, 2, 3, 4, 5)),
    *(f"V7.5.{n}" for n in (1, 2, 3)),
    "V7.6.1",
    "V7.6.2",
]
RFC_9700 = [f"R{n}" for n in range(1, 10)]
CODE_FLOW = [f"C{n}" for n in range(1, 13)]  # RFC 9700 (BCP 240) for the code flow


@dataclass(frozen=True)
class Row:
    section: str
    item: str
    cells: tuple[str, ...]

    @property
    def proof(self) -> str:
        return self.cells[-1]

    @property
    def text(self) -> str:
        return " | ".join(self.cells)


def _split_row(line: str) -> list[str]:
    # Cells are separated by pipes outside backticks (a cell may quote `a|b`).
    cells, current, in_code = [], [], False
    for ch in line.strip()[1:-1]:
        if ch == "`":
            in_code = not in_code
        if ch == "|" and not in_code:
            cells.append("".join(current).strip())
            current = []
        else:
            current.append(ch)
    cells.append("".join(current).strip())
    return cells


def parse_rows(text: str) -> list[Row]:
    """Every body row of every table whose header has a 'Proved by' column."""
    rows: list[Row] = []
    section = ""
    in_table = False
    for line in text.splitlines():
        if line.startswith("#"):
            section = line.lstrip("#").strip()
            in_table = False
            continue
        if not line.startswith("|"):
            in_table = False
            continue
        cells = _split_row(line)
        if cells[-1].lower() == "proved by":
            in_table = True
            continue
        if not in_table or set("".join(cells)) <= set("-: "):
            continue
        rows.append(Row(section=section, item=cells[0], cells=tuple(cells)))
    return rows


@functools.cache
def rows() -> list[Row]:
    return parse_rows(DOC.read_text("utf-8"))


def _defined_tests(path: Path) -> dict[str, set[str]]:
    """Top-level test functions (key "") and the test methods of each Test* class."""
    tree = ast.parse(path.read_text("utf-8"), filename=str(path))
    found: dict[str, set[str]] = {"": set()}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            found[""].add(node.name)
        elif isinstance(node, ast.Assign):  # test_x = some_factory(...)
            found[""].update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.ClassDef) and node.name.startswith("Test"):
            found[node.name] = {
                n.name for n in node.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)
            }
    return found


def missing_test_ids(text: str, root: Path) -> list[str]:
    """The test ids named in ``text`` that do not exist under ``root``."""
    missing = []
    for match in TEST_ID.finditer(text):
        test_id = match.group(1)
        file_part, *names = test_id.split("::")
        path = root / file_part
        if not path.name.startswith("test_") or not path.is_file():
            missing.append(test_id)
            continue
        defined = _defined_tests(path)
        if len(names) == 1:
            ok = names[0].startswith("test_") and names[0] in defined[""]
        else:
            cls, func = names[0], names[1]
            ok = len(names) == 2 and func.startswith("test_") and func in defined.get(cls, set())
        if not ok:
            missing.append(test_id)
    return missing


# --- the document ---------------------------------------------------------------------------


def test_the_document_has_tables_for_every_source() -> None:
    sections = {r.section for r in rows()}
    assert any("RFC 8725" in s for s in sections), sections
    assert any("RFC 9700" in s for s in sections), sections
    for chapter in ("V3", "V6", "V7", "V9"):
        assert any(s.startswith(chapter + " ") for s in sections), (chapter, sections)


@pytest.mark.parametrize(
    ("section", "expected"),
    [
        ("RFC 8725", RFC_8725),
        ("V9 ", ASVS_V9),
        ("V7 ", ASVS_V7),
        ("RFC 9700", RFC_9700),
        ("BCP 240", CODE_FLOW),
    ],
    ids=["rfc8725-s3", "asvs-v9", "asvs-v7", "rfc9700-s4.14", "bcp240-code-flow"],
)
def test_every_item_is_taken_in_turn(section: str, expected: list[str]) -> None:
    items = [r.item for r in rows() if section in r.section or r.section.startswith(section)]
    assert items == expected


def test_every_row_names_a_file_and_a_proof() -> None:
    for row in rows():
        assert len(row.cells) == 4, row
        where, proof = row.cells[2], row.proof
        handled = REPO_PATH.search(where) is not None
        says_why = "not handled" in where.lower() or "not applicable" in where.lower()
        assert handled or says_why, f"{row.item}: neither a file nor a reason: {where!r}"
        has_ids = TEST_ID.search(proof) is not None
        assert has_ids or proof.lower() in NO_TEST, f"{row.item}: no test id: {proof!r}"


def test_rows_without_a_test_say_why() -> None:
    # "not applicable" only where the row says authgate does not (fully) handle it.
    for row in rows():
        if row.proof.lower() == "not applicable":
            where = row.cells[2].lower()
            assert "not handled" in where or "not applicable" in where, row.item


def test_every_named_test_exists() -> None:
    assert missing_test_ids(DOC.read_text("utf-8"), ROOT) == []


def test_every_named_file_exists() -> None:
    text = DOC.read_text("utf-8")
    paths = {m.group(1) for m in REPO_PATH.finditer(text) if "::" not in m.group(1)}
    assert paths
    assert sorted(p for p in paths if not (ROOT / p).exists()) == []


def test_the_document_names_many_tests() -> None:
    # A floor, so that a parser that silently finds nothing fails here.
    ids = {m.group(1) for m in TEST_ID.finditer(DOC.read_text("utf-8"))}
    assert len(ids) >= 80


# --- the checker itself ---------------------------------------------------------------------


def test_checker_reports_missing_files_functions_and_classes(tmp_path: Path) -> None:
    tests = tmp_path / "tests" / "x"
    tests.mkdir(parents=True)
    (tests / "test_a.py").write_text(
        "def test_here():\n    pass\n\n"
        "async def test_async():\n    pass\n\n"
        "class TestGroup:\n    def test_method(self):\n        pass\n\n"
        "def helper():\n    pass\n"
    )
    (tests / "helpers.py").write_text("def test_not_collected():\n    pass\n")
    text = " ".join(
        f"`{t}`"
        for t in [
            "tests/x/test_a.py::test_here",
            "tests/x/test_a.py::test_async",
            "tests/x/test_a.py::test_here[HS256-1]",
            "tests/x/test_a.py::TestGroup::test_method",
            "tests/x/test_a.py::test_gone",
            "tests/x/test_a.py::helper",
            "tests/x/test_a.py::TestGroup::test_gone",
            "tests/x/test_b.py::test_here",
            "tests/x/helpers.py::test_not_collected",
        ]
    )
    assert missing_test_ids(text, tmp_path) == [
        "tests/x/test_a.py::test_gone",
        "tests/x/test_a.py::helper",
        "tests/x/test_a.py::TestGroup::test_gone",
        "tests/x/test_b.py::test_here",
        "tests/x/helpers.py::test_not_collected",
    ]


def test_parser_reads_rows_of_proof_tables_only() -> None:
    text = "\n".join(
        [
            "## A",
            "| Asset | Where |",
            "|---|---|",
            "| keys | db |",
            "## RFC 8725 s3",
            "| Item | Requirement | Where | Proved by |",
            "|---|---|---|---|",
            "| 3.1 | x `a|b` | `src/x.py` | `tests/t/test_a.py::test_b` |",
            "| 3.2 | y | **Not handled:** why | not applicable |",
            "",
            "text",
        ]
    )
    parsed = parse_rows(text)
    assert [(r.section, r.item) for r in parsed] == [("RFC 8725 s3", "3.1"), ("RFC 8725 s3", "3.2")]
    assert parsed[0].cells[1] == "x `a|b`"
    assert parsed[1].proof == "not applicable"
