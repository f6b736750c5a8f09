"""docs/security.md and docs/production.md name the tests that show each claim and the
files they rely on: every one of them exists (a renamed test would otherwise leave a claim
without its proof)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from tests.helpers.docblocks import DOCS

ROOT = DOCS.parent
PATH = re.compile(r"`((?:tests|fuzz|scripts|deploy)/[\w/.-]+\.(?:py|service|dict))`")
TOKEN = re.compile(r"`((?:tests|fuzz|scripts|deploy)/[\w/.-]+\.(?:py|service|dict))`|`(test_\w+)`")


def _test_names(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {
        node.name
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
    }


@pytest.mark.parametrize("doc", ["security.md", "production.md"])
def test_named_files_and_tests_exist(doc: str) -> None:
    text = (DOCS / doc).read_text()
    missing: list[str] = []
    current: Path | None = None
    for m in TOKEN.finditer(text):
        if m[1]:
            current = ROOT / m[1]
            if not current.exists():
                missing.append(m[1])
            continue
        # a test's name belongs to the last test file named before it
        if current is None or current.suffix != ".py" or not current.exists():
            missing.append(f"{m[2]} (no test file named before it)")
        elif m[2] not in _test_names(current):
            missing.append(f"{current.relative_to(ROOT)}::{m[2]}")
    assert not missing, missing


def test_security_doc_answers_every_owasp_api_item() -> None:
    text = (DOCS / "security.md").read_text()
    found = re.findall(r"^### API(\d+) ", text, re.MULTILINE)
    assert found == [str(n) for n in range(1, 11)]
    for section in re.split(r"^### ", text, flags=re.MULTILINE)[1:11]:
        assert PATH.search(section), section.splitlines()[0]  # each names its tests
