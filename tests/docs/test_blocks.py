"""Every code block in docs/*.md is either run by a test or marked as not runnable, and the
lists of codes in the docs match the codes the code raises."""

from __future__ import annotations

import json
import re
from pathlib import Path

from tests.helpers.docblocks import DOCS, all_blocks

TESTS = Path(__file__).parent
SRC = Path(__file__).resolve().parents[2] / "src" / "shipyard"


def _used_ids() -> set[str]:
    """The ids the tests in tests/docs run: every `block("<id>")` call."""
    ids: set[str] = set()
    for path in TESTS.glob("test_*.py"):
        ids |= set(re.findall(r"""\bblock\(\s*["']([a-z0-9-]+)["']""", path.read_text()))
    return ids


def test_every_block_is_run_or_marked_not_runnable() -> None:
    blocks = all_blocks()
    assert len(blocks) > 20  # the extractor found the docs' blocks
    used = _used_ids()
    problems = []
    for b in blocks:
        if b.kind == "":
            problems.append(
                f"{b.where}: unmarked block: add `<!-- doc-test: <id> -->` and a test in "
                "tests/docs that runs it, or `<!-- not-runnable: <reason> -->`"
            )
        elif b.kind == "not-runnable" and not b.value:
            problems.append(f"{b.where}: not-runnable needs a reason")
        elif b.kind == "doc-test" and b.value not in used:
            problems.append(f"{b.where}: no test runs doc-test {b.value!r}")
    ids = [b.value for b in blocks if b.kind == "doc-test"]
    problems += [f"doc-test {i!r} marks several blocks" for i in set(ids) if ids.count(i) > 1]
    problems += [f"a test runs doc-test {i!r}, which marks no block" for i in used - set(ids)]
    assert not problems, "\n".join(problems)


def test_json_examples_parse() -> None:
    for b in all_blocks():
        if b.info == "json":
            json.loads(b.text)  # raises with the position


def _codes_in(*paths: Path) -> set[str]:
    return {c for p in paths for c in re.findall(r'"(validation_[a-z_]+)"', p.read_text())}


def _codes_listed(doc: str, start: str, end: str) -> set[str]:
    text = (DOCS / doc).read_text()
    section = text[text.index(start) : text.index(end, text.index(start))]
    return set(re.findall(r"`(validation_[a-z_]+)`", section))


def test_record_error_codes_are_all_documented() -> None:
    pkg = SRC / "records"
    raised = _codes_in(
        *(
            pkg / f
            for f in ("writing.py", "modifiers.py", "fields.py", "file_checks.py", "passwords.py")
        )
    )
    listed = _codes_listed("records-api.md", "Codes used by record writes", "## ")
    assert raised == listed


def test_collection_error_codes_are_all_documented() -> None:
    pkg = SRC / "records"
    raised = _codes_in(
        *(
            pkg / f
            for f in ("collections.py", "collection_checks.py", "schema.py", "index_names.py")
        )
    )
    listed = _codes_listed("collections.md", "## Errors", "Unlike PocketBase")
    assert raised == listed
