"""Filter compiler cost per request (it runs on every filtered list): microseconds per
compile of typical filters, on both SQL dialects. Timings live here, never in tests.

    python bench/filter_compile.py
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from shipyard.records.query import compile_filter
from tests.helpers.query_schema import POSTS, REGISTRY, REQUEST

FILTERS = [
    'status = "live"',
    "author = @request.auth.id && published = true",
    'title ~ "hello" && views > 10 || author.name = "Alice"',
    'tags.label ?= "go" && created >= @todayStart',
]


def main(rounds: int = 7, n: int = 300) -> None:
    print(f"| filter | dialect | µs per compile (best of {rounds} rounds of {n}) |")
    print("|---|---|---:|")
    for dialect in ("sqlite", "postgres"):
        for text in FILTERS:
            compile_filter(text, POSTS, REGISTRY, dialect, request=REQUEST)  # warm parse cache
            best = float("inf")
            for _ in range(rounds):
                start = time.perf_counter()
                for _ in range(n):
                    compile_filter(text, POSTS, REGISTRY, dialect, request=REQUEST)
                best = min(best, (time.perf_counter() - start) / n)
            print(f"| `{text}` | {dialect} | {best * 1e6:.1f} |")


if __name__ == "__main__":
    main()
