"""The fenced code blocks of docs/**/*.md (runbooks in docs/operations too) and their markers.

Every block is preceded by an HTML comment on the line before it:
`<!-- doc-test: <id> -->` names the test that runs it (tests/docs call `block("<id>")`),
`<!-- not-runnable: <reason> -->` says why nothing can run it (a diagram, sample output).
"""

from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass
from functools import cache
from pathlib import Path

DOCS = Path(__file__).resolve().parents[2] / "docs"
_FENCE = re.compile(r"^(?P<indent>\s*)```(?P<info>[^`]*)$")
_MARKER = re.compile(r"^\s*<!--\s*(?P<kind>doc-test|not-runnable):\s*(?P<value>.*?)\s*-->\s*$")


@dataclass(frozen=True)
class Block:
    file: str  # e.g. "jobs.md"
    line: int  # of the opening fence, 1-based
    info: str  # the language, "" when none
    text: str  # the content, dedented
    kind: str  # "doc-test", "not-runnable" or "" (unmarked)
    value: str  # the test id or the reason

    @property
    def where(self) -> str:
        return f"docs/{self.file}:{self.line}"


@cache
def all_blocks() -> tuple[Block, ...]:
    out: list[Block] = []
    for path in sorted(DOCS.rglob("*.md")):
        lines = path.read_text().splitlines()
        i = 0
        while i < len(lines):
            m = _FENCE.match(lines[i])
            if not m:
                i += 1
                continue
            start = i
            i += 1
            body: list[str] = []
            while i < len(lines) and lines[i].strip() != "```":
                body.append(lines[i])
                i += 1
            marker = _MARKER.match(lines[start - 1]) if start > 0 else None
            out.append(
                Block(
                    file=str(path.relative_to(DOCS)),
                    line=start + 1,
                    info=m.group("info").strip(),
                    text=textwrap.dedent("\n".join(body)) + "\n",
                    kind=marker.group("kind") if marker else "",
                    value=marker.group("value") if marker else "",
                )
            )
            i += 1
    return tuple(out)


def block(test_id: str) -> Block:
    """The one block marked `doc-test: <test_id>`."""
    found = [b for b in all_blocks() if b.kind == "doc-test" and b.value == test_id]
    assert len(found) == 1, f"{len(found)} blocks marked doc-test: {test_id}"
    return found[0]


def replace(text: str, old: str, new: str) -> str:
    """`text` with `old` replaced; fails when the docs no longer contain `old`, so a changed
    example cannot silently escape its test."""
    assert old in text, f"{old!r} is no longer in the example:\n{text}"
    return text.replace(old, new)
