"""Integer request parameters, parsed one way everywhere: ASCII digits with an optional sign,
inside a range, else a 400 that names the parameter.

Python's `int()` takes `1_000`, non-ASCII digits and surrounding spaces, and raises an error
of its own past 4,300 digits; PocketBase takes only a 64-bit integer. So the text is
checked first and the value bounded after, and nothing a client sends reaches the database
or a slice as a number the engine cannot hold.
"""

from __future__ import annotations

import re

from shipyard.kernel.errors import bad_request

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
_INT_RE = re.compile(r"[+-]?[0-9]+")


def parse_int(raw: str, what: str, low: int = INT64_MIN, high: int = INT64_MAX) -> int:
    """`raw` as an integer from `low` to `high`; anything else is a 400 about `what`
    (e.g. "page parameter")."""
    if not _INT_RE.fullmatch(raw):
        raise bad_request(f"Invalid {what}: expected an integer, got {raw[:40]!r}.")
    # more digits than any 64-bit integer has (leading zeros aside) is out of range as well
    value = int(raw) if len(raw.lstrip("+-0")) <= 20 else INT64_MAX + 1
    if not low <= value <= high:
        raise bad_request(f"Invalid {what}: expected an integer from {low} to {high}.")
    return value
