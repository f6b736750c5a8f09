"""Which format a thumbnail is sent in: AVIF or WebP to clients that say they take it,
PocketBase's format (JPEG, GIF or PNG) to everyone else. Callers add `Vary: Accept`.

Only an explicit `image/avif` / `image/webp` in `Accept` counts: `*/*` and `image/*` are
what every client sends, including ones that cannot decode AVIF.
"""

from __future__ import annotations

from collections.abc import Iterable

from PIL import features

from shipyard.images.specs import pocketbase_format

NEGOTIABLE = ("avif", "webp")
# what this Pillow build encodes (its wheels have both; a distribution's build may lack AVIF)
ENCODABLE = frozenset(fmt for fmt in NEGOTIABLE if features.check(fmt))


def accepted(accept: str | None) -> dict[str, float]:
    """`Accept` parsed: media type → q (types with q=0 are refused and kept as 0)."""
    out: dict[str, float] = {}
    for part in (accept or "").split(","):
        kind, *params = (p.strip() for p in part.split(";"))
        if not kind:
            continue
        q = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = max(0.0, min(1.0, float(value)))
                except ValueError:
                    q = 0.0
        out[kind.lower()] = q
    return out


def negotiate(accept: str | None, source_type: str, enabled: Iterable[str]) -> str:
    """The output format for a thumbnail of a `source_type` file: the first of `enabled`
    ("avif", "webp", in the order of preference) that `accept` lists with q > 0, else
    PocketBase's format for the source. `enabled` empty turns negotiation off; a format this
    Pillow cannot encode is skipped."""
    wanted = accepted(accept)
    best, best_q = pocketbase_format(source_type), 0.0
    for fmt in (f for f in enabled if f in ENCODABLE):
        q = wanted.get(f"image/{fmt}", 0.0)
        if q > best_q:
            best, best_q = fmt, q
    return best
