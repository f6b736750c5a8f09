"""The image pipeline behind the file routes, through HTTP: thumbnails in the format the
client's Accept takes (with `Vary: Accept`), responsive widths, uploads decoded once (a corrupt
image or a bomb is a 400 and nothing is stored), `?images=1` with sizes, BlurHash placeholders
and srcset, metadata stripped from thumbnails; SQLite and PostgreSQL."""

from __future__ import annotations

import io

import pytest
from PIL import Image
from starlette.testclient import TestClient

from tests.helpers.files import BROWSER, make_collection, png, upload
from tests.helpers.images import bands, encoded, png_header_only


@pytest.fixture(params=["local"])
def storage_kind(request: pytest.FixtureRequest) -> str:
    """Local disk only: nothing here depends on the store (the stored formats are checked on
    both in tests/files/test_files.py)."""
    return str(request.param)


def test_responsive_widths_and_other_sizes(client: TestClient, su: dict[str, str]) -> None:
    make_collection(client, su)
    rec = upload(client, png(1000, 500)).json()
    url = f"/api/files/posts/{rec['id']}/{rec['doc']}"

    def size(query: str) -> tuple[int, int]:
        r = client.get(url + query, headers={"Accept": "*/*"})
        assert r.status_code == 200
        return Image.open(io.BytesIO(r.content)).size

    assert size("?thumb=640x0") == (640, 320)  # an allowed width (SHIPYARD_IMAGE_WIDTHS)
    assert size("?thumb=320x0") == (320, 160)
    assert size("?thumb=641x0") == (1000, 500)  # not allowed: the original, as PocketBase


def test_corrupt_images_and_bombs_are_refused_on_upload(
    client: TestClient, su: dict[str, str]
) -> None:
    make_collection(client, su)
    truncated = png(300, 200)[:-40]
    r = upload(client, truncated)
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["data"]["doc"]["code"] == "validation_invalid_image"
    assert body["message"] == "Failed to create record."
    bomb = upload(client, png_header_only(100_000, 100_000))
    assert bomb.status_code == 400
    assert "too many pixels" in bomb.json()["data"]["doc"]["message"]
    over = upload(client, png_header_only(8000, 6000))  # 48 MP: over SHIPYARD_IMAGE_MAX_PIXELS
    assert over.status_code == 400
    assert "more than the limit of 40000000" in over.json()["data"]["doc"]["message"]
    assert client.get("/api/collections/posts/records").json()["totalItems"] == 0
    # on update too, and the record keeps its file
    rec = upload(client, png()).json()
    r = client.patch(
        f"/api/collections/posts/records/{rec['id']}",
        files=[("doc", ("bad.png", truncated, "image/png"))],
    )
    assert r.status_code == 400
    assert r.json()["message"] == "Failed to update record."
    again = client.get(f"/api/collections/posts/records/{rec['id']}").json()
    assert again["doc"] == rec["doc"]
    # a file that is not an image is not decoded
    assert upload(client, b"just text", "notes.txt").status_code == 200


def test_images_decoration(client: TestClient, su: dict[str, str]) -> None:
    col = make_collection(client, su)
    rec = client.post(
        "/api/collections/posts/records",
        files=[
            ("doc", ("wide.png", png(1000, 500), "image/png")),
            ("docs", ("a.txt", b"text", "text/plain")),
        ],
    ).json()
    assert "@images" not in rec  # only when asked: PocketBase's shapes stay as they are
    one = client.get(f"/api/collections/posts/records/{rec['id']}?images=1").json()
    facts = one["@images"]
    assert list(facts) == [rec["doc"]]  # images only
    entry = facts[rec["doc"]]
    assert (entry["width"], entry["height"], entry["type"]) == (1000, 500, "image/png")
    assert 20 <= len(entry["placeholder"]) <= 40
    url = f"/api/files/{col['id']}/{rec['id']}/{rec['doc']}"
    assert entry["srcset"] == (
        f"{url}?thumb=320x0 320w, {url}?thumb=640x0 640w, {url}?thumb=960x0 960w, {url} 1000w"
    )
    listed = client.get("/api/collections/posts/records?images=1&fields=id,doc").json()
    assert listed["items"][0]["@images"] == facts
    # replaced: the old image's facts go with it
    new = client.patch(
        f"/api/collections/posts/records/{rec['id']}?images=true",
        files=[("doc", ("tall.png", png(200, 400), "image/png"))],
    ).json()
    assert list(new["@images"]) == [new["doc"]]
    assert (new["@images"][new["doc"]]["width"], new["@images"][new["doc"]]["height"]) == (200, 400)


def test_protected_images_get_no_srcset(client: TestClient, su: dict[str, str]) -> None:
    make_collection(client, su, protected=True)
    rec = upload(client, png(500, 300)).json()
    got = client.get(f"/api/collections/posts/records/{rec['id']}?images=1").json()
    entry = got["@images"][rec["doc"]]
    assert entry["width"] == 500
    assert "srcset" not in entry  # the URLs need the caller's token


def test_thumbnails_carry_no_metadata(client: TestClient, su: dict[str, str]) -> None:
    make_collection(client, su)
    exif = Image.Exif()
    exif[0x010F] = "Camera Maker"
    exif[0x8825] = {1: "N", 2: (48.0, 51.0, 24.0)}  # GPS latitude
    photo = encoded(bands(400, 300, [(200, 0, 0), (0, 0, 200)]), "JPEG", exif=exif.tobytes())
    rec = upload(client, photo, "photo.jpg").json()
    for accept in ("*/*", BROWSER, "image/webp"):
        r = client.get(
            f"/api/files/posts/{rec['id']}/{rec['doc']}?thumb=100x100", headers={"Accept": accept}
        )
        assert r.status_code == 200
        with Image.open(io.BytesIO(r.content)) as im:
            assert not im.getexif(), accept
            assert "exif" not in im.info
            assert "xmp" not in im.info
