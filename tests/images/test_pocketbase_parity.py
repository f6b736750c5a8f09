"""Thumbnails against the oracle: the real PocketBase binary makes thumbnails of the same
uploads, and Shipyard's have the same dimensions, the same (PocketBase) format and the
same picture (the crop taken at the same place)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from PIL import Image

from shipyard.images import pocketbase_format, thumbnail
from tests.helpers.images import bands, close, encoded, pixel, size_of
from tests.helpers.servers import SUPERUSER, pocketbase_server

SIZES = ["100x100", "50x50t", "50x50b", "50x50f", "200x200f", "0x40", "40x0", "70x30", "7x300"]
RED, GREEN, BLUE, WHITE = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)


def _uploads() -> dict[str, tuple[bytes, str]]:
    exif = Image.Exif()
    exif[0x0112] = 6
    frames = [Image.new("RGB", (90, 60), c) for c in (RED, BLUE)]
    return {
        "tall.png": (encoded(bands(101, 303, [RED, GREEN, BLUE]), "PNG"), "image/png"),
        "wide.jpg": (encoded(bands(301, 99, [RED, GREEN, BLUE], False), "JPEG"), "image/jpeg"),
        "turned.jpg": (
            encoded(bands(160, 90, [RED, WHITE, BLUE], False), "JPEG", exif=exif.tobytes()),
            "image/jpeg",
        ),
        "pic.webp": (encoded(bands(150, 120, [GREEN, BLUE]), "WEBP", lossless=True), "image/webp"),
        "anim.gif": (
            encoded(frames[0], "GIF", save_all=True, append_images=frames[1:], loop=0),
            "image/gif",
        ),
    }


@pytest.fixture(scope="module")
def pocketbase(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with pocketbase_server(tmp_path_factory.mktemp("pb") / "pb_data") as url:
        yield url


@pytest.fixture(scope="module")
def stored(pocketbase: str) -> dict[str, str]:
    """Each upload's file URL on PocketBase (a public collection with every size listed)."""
    with httpx.Client(base_url=pocketbase, timeout=30) as client:
        auth = client.post(
            "/api/collections/_superusers/auth-with-password",
            json={"identity": SUPERUSER[0], "password": SUPERUSER[1]},
        )
        client.headers["Authorization"] = auth.json()["token"]
        field = {"name": "img", "type": "file", "maxSelect": 1, "maxSize": 5242880, "thumbs": SIZES}
        created = client.post(
            "/api/collections",
            json={"name": "pics", "type": "base", "viewRule": "", "fields": [field]},
        )
        assert created.status_code == 200, created.text
        urls = {}
        for name, (data, mime) in _uploads().items():
            r = client.post("/api/collections/pics/records", files={"img": (name, data, mime)})
            assert r.status_code == 200, r.text
            record = r.json()
            urls[name] = f"/api/files/pics/{record['id']}/{record['img']}"
    return urls


@pytest.mark.parametrize("name", list(_uploads()))
def test_thumbnails_match_pocketbase(pocketbase: str, stored: dict[str, str], name: str) -> None:
    data, mime = _uploads()[name]
    for spec in SIZES:
        theirs = httpx.get(f"{pocketbase}{stored[name]}?thumb={spec}", timeout=30)
        assert theirs.status_code == 200
        fmt = pocketbase_format(mime)
        assert theirs.headers["content-type"] == f"image/{fmt}", spec
        ours = thumbnail(data, spec, fmt)
        assert size_of(ours) == size_of(theirs.content), f"{name} {spec}"
        w, h = size_of(ours)
        for xy in ((w // 2, h // 2), (w // 4, h // 4), (3 * w // 4, 3 * h // 4)):
            assert close(pixel(ours, xy), pixel(theirs.content, xy), 60), f"{name} {spec} {xy}"
