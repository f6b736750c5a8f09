"""Format negotiation: AVIF or WebP only for clients that name them, PocketBase's format
for everyone else, and nothing negotiated when the setting turns it off."""

from __future__ import annotations

import pytest

from shipyard.images import negotiate

CHROME = "image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8"
SAFARI_15 = "image/webp,image/png,image/svg+xml,image/*;q=0.8,video/*;q=0.8,*/*;q=0.5"
BOTH = ("avif", "webp")


@pytest.mark.parametrize(
    ("accept", "source", "enabled", "expected"),
    [
        (CHROME, "image/png", BOTH, "avif"),
        (CHROME, "image/png", ("webp", "avif"), "webp"),  # the setting's order is the preference
        (CHROME, "image/jpeg", ("webp",), "webp"),
        (SAFARI_15, "image/jpeg", BOTH, "webp"),
        ("*/*", "image/jpeg", BOTH, "jpeg"),  # curl, the JS SDK's fetch: PocketBase's format
        ("image/*", "image/webp", BOTH, "png"),  # wildcards never get AVIF/WebP
        (None, "image/gif", BOTH, "gif"),
        ("", "image/png", BOTH, "png"),
        (CHROME, "image/png", (), "png"),  # negotiation off
        ("image/avif;q=0, image/webp", "image/png", BOTH, "webp"),  # q=0 refuses
        ("image/avif;q=0.5, image/webp;q=0.9", "image/png", BOTH, "webp"),  # higher q wins
        ("IMAGE/WEBP ; q=1", "image/jpeg", BOTH, "webp"),
        ("image/webp;q=bogus", "image/jpeg", BOTH, "jpeg"),
    ],
)
def test_negotiate(
    accept: str | None, source: str, enabled: tuple[str, ...], expected: str
) -> None:
    assert negotiate(accept, source, enabled) == expected


def test_this_pillow_encodes_both_negotiated_formats() -> None:
    from shipyard.images.negotiate import ENCODABLE

    assert {"avif", "webp"} == ENCODABLE  # the wheels pyproject.toml asks for have both
