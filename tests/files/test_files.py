"""Files through HTTP, as PocketBase serves them: uploads with the file field's checks,
downloads with its headers, Range and conditional requests, modifiers, protected files and
thumbnails; on SQLite and PostgreSQL, with local disk and S3 storage."""

from __future__ import annotations

import io
import re
from typing import Any

from PIL import Image
from starlette.testclient import TestClient

from tests.helpers.files import BROWSER, make_collection, png, stored, upload
from tests.helpers.wait import wait_until

NAME_RE = re.compile(r"^[a-z0-9_]+_[a-z0-9]{10}\.[a-zA-Z0-9.]+$")


def test_upload_download_and_headers(client: TestClient, su: dict[str, str]) -> None:
    col = make_collection(client, su)
    r = client.post(
        "/api/collections/posts/records",
        data={"title": "hello"},
        files=[("doc", ("My Photo.PNG", png(), "text/plain"))],
    )
    assert r.status_code == 200, r.text
    rec = r.json()
    name = rec["doc"]
    assert NAME_RE.match(name), name
    assert name.startswith("my_photo_"), name
    assert name.endswith(".PNG"), name  # the extension as sent
    url = f"/api/files/posts/{rec['id']}/{name}"
    got = client.get(url)
    assert got.status_code == 200
    assert got.content == png()
    assert got.headers["content-type"] == "image/png"  # detected from content, not the client
    assert got.headers["content-disposition"] == f'inline; filename="{name}"'
    assert "sandbox" in got.headers["content-security-policy"]
    assert got.headers["cache-control"] == "max-age=2592000, stale-while-revalidate=86400"
    assert client.get(url + "?download=1").headers["content-disposition"].startswith("attachment")
    # a collection id works as well as its name; unknown names are 404
    assert client.get(f"/api/files/{col['id']}/{rec['id']}/{name}").status_code == 200
    assert client.get(f"/api/files/posts/{rec['id']}/other.png").status_code == 404
    assert client.get(f"/api/files/posts/nope/{name}").status_code == 404
    assert stored(client, f"{col['id']}/{rec['id']}/{name}")


def test_text_is_an_attachment_and_ranges(client: TestClient, su: dict[str, str]) -> None:
    make_collection(client, su)
    body = b"0123456789" * 100
    rec = client.post(
        "/api/collections/posts/records", files=[("doc", ("notes.txt", body, "text/plain"))]
    ).json()
    url = f"/api/files/posts/{rec['id']}/{rec['doc']}"
    full = client.get(url)
    assert full.headers["content-type"].startswith("text/plain")
    assert full.headers["content-disposition"].startswith("attachment")
    part = client.get(url, headers={"Range": "bytes=10-19"})
    assert part.status_code == 206
    assert part.content == body[10:20]
    assert part.headers["content-range"] == f"bytes 10-19/{len(body)}"
    tail = client.get(url, headers={"Range": "bytes=-5"})
    assert tail.status_code == 206
    assert tail.content == body[-5:]
    assert client.get(url, headers={"Range": "bytes=5000-"}).status_code == 416
    etag = full.headers["etag"]
    assert client.get(url, headers={"If-None-Match": etag}).status_code == 304
    stale = client.get(url, headers={"Range": "bytes=0-1", "If-Range": '"other"'})
    assert stale.status_code == 200
    assert stale.content == body


def test_field_checks(client: TestClient, su: dict[str, str]) -> None:
    make_collection(client, su, maxSize=100, mimeTypes=["image/png"])
    r = client.post(
        "/api/collections/posts/records", files=[("doc", ("a.txt", b"x" * 10, "image/png"))]
    )
    assert r.status_code == 400
    assert r.json()["data"]["doc"]["code"] == "validation_invalid_mime_type"
    r = client.post("/api/collections/posts/records", files=[("doc", ("a.png", png(), "x/y"))])
    assert r.json()["data"]["doc"]["code"] == "validation_file_size_limit"
    many = [("docs", (f"f{i}.txt", b"hi", "text/plain")) for i in range(6)]
    r = client.post("/api/collections/posts/records", files=many)
    assert r.json()["data"]["docs"]["code"] == "validation_too_many_files"
    r = client.post("/api/collections/posts/records", json={"docs": ["made_up.txt"]})
    assert r.json()["data"]["docs"]["code"] == "validation_invalid_file"
    r = client.post("/api/collections/posts/records", files=[("title", ("t.txt", b"x", "a/b"))])
    assert r.status_code == 400
    assert r.json()["data"]["title"]["code"] == "validation_invalid_value"


def test_default_max_size_is_5_mib(client: TestClient, su: dict[str, str]) -> None:
    make_collection(client, su)
    big = b"\0" * ((5 << 20) + 1)
    r = client.post("/api/collections/posts/records", files=[("doc", ("big.bin", big, "x/y"))])
    assert r.status_code == 400
    assert r.json()["data"]["doc"]["code"] == "validation_file_size_limit"


def test_modifiers_replace_clear_and_cleanup(client: TestClient, su: dict[str, str]) -> None:
    col = make_collection(client, su)
    files = [("docs", (f"f{i}.txt", f"file {i}".encode(), "text/plain")) for i in range(3)]
    rec = client.post("/api/collections/posts/records", files=files).json()
    rid, names = rec["id"], rec["docs"]
    assert len(names) == 3
    url = f"/api/collections/posts/records/{rid}"
    r = client.patch(url, files=[("docs+", ("new.txt", b"new", "text/plain"))])
    assert r.status_code == 200, r.text
    after = r.json()["docs"]
    assert after[:3] == names
    assert after[3].startswith("new_")
    r = client.patch(url, files=[("+docs", ("first.txt", b"1st", "text/plain"))])
    assert r.json()["docs"][0].startswith("first_")
    r = client.patch(url, data={"docs-": [names[0], names[1]]})
    kept = r.json()["docs"]
    assert names[0] not in kept
    assert names[1] not in kept
    assert len(kept) == 3
    key = f"{col['id']}/{rid}/{names[0]}"
    wait_until(lambda: not stored(client, key), what="removed file deleted from storage")
    assert client.get(f"/api/files/posts/{rid}/{names[0]}").status_code == 404
    # replacing a single file removes the old one; "" clears it
    one = client.patch(url, files=[("doc", ("a.txt", b"a", "text/plain"))]).json()["doc"]
    two = client.patch(url, files=[("doc", ("b.txt", b"b", "text/plain"))]).json()["doc"]
    assert one != two
    wait_until(lambda: not stored(client, f"{col['id']}/{rid}/{one}"), what="replaced file gone")
    assert client.patch(url, json={"doc": ""}).json()["doc"] == ""
    wait_until(lambda: not stored(client, f"{col['id']}/{rid}/{two}"), what="cleared file gone")
    # a record's delete removes its files once it commits
    last = kept[-1]
    assert client.delete(url).status_code == 204
    wait_until(lambda: not stored(client, f"{col['id']}/{rid}/{last}"), what="record's files gone")


def upload_one(client: TestClient, su: dict[str, str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """A collection and a record of it with one file in `doc`."""
    col = make_collection(client, su)
    files = [("doc", ("a.txt", b"a", "text/plain"))]
    return col, client.post("/api/collections/posts/records", files=files).json()


def test_collection_delete_removes_files(client: TestClient, su: dict[str, str]) -> None:
    col, rec = upload_one(client, su)
    key = f"{col['id']}/{rec['id']}/{rec['doc']}"
    assert stored(client, key)
    assert client.delete("/api/collections/posts", headers=su).status_code == 204
    wait_until(lambda: not stored(client, key), what="collection's files gone")


def test_a_failed_write_deletes_nothing(client: TestClient, su: dict[str, str]) -> None:
    col, rec = upload_one(client, su)
    url = f"/api/collections/posts/records/{rec['id']}"
    r = client.patch(url, data={"doc": "", "docs": ["invented.txt"]})
    assert r.status_code == 400
    assert stored(client, f"{col['id']}/{rec['id']}/{rec['doc']}")
    assert client.get(f"/api/files/posts/{rec['id']}/{rec['doc']}").status_code == 200


def test_thumbs(client: TestClient, su: dict[str, str]) -> None:
    make_collection(client, su, thumbs=["50x0", "40x30f"])
    rec = client.post(
        "/api/collections/posts/records", files=[("doc", ("pic.png", png(300, 200), "image/png"))]
    ).json()
    url = f"/api/files/posts/{rec['id']}/{rec['doc']}"

    def size(query: str) -> tuple[int, int]:
        r = client.get(url + query)
        assert r.status_code == 200
        return Image.open(io.BytesIO(r.content)).size

    assert size("?thumb=100x100") == (100, 100)
    assert size("?thumb=100x100") == (100, 100)  # the stored one
    assert size("?thumb=50x0") == (50, 33)
    assert size("?thumb=40x30f") == (40, 26)  # PocketBase truncates (tests/images parity)
    assert size("?thumb=77x77") == (300, 200)  # not listed: the original
    r = client.get(url + "?thumb=100x100")
    assert r.headers["content-disposition"] == f'inline; filename="100x100_{rec["doc"]}"'


def test_protected_files_need_a_token(client: TestClient, su: dict[str, str]) -> None:
    make_collection(client, su, protected=True)
    r = client.post(
        "/api/collections",
        headers=su,
        json={"name": "users", "type": "auth", "fields": [], "createRule": ""},
    )
    assert r.status_code == 200, r.text
    client.post(
        "/api/collections/users/records",
        json={"email": "a@example.com", "password": "12345678", "passwordConfirm": "12345678"},
    )
    auth = client.post(
        "/api/collections/users/auth-with-password",
        json={"identity": "a@example.com", "password": "12345678"},
    ).json()
    rec = client.post(
        "/api/collections/posts/records", files=[("doc", ("s.txt", b"secret", "text/plain"))]
    ).json()
    url = f"/api/files/posts/{rec['id']}/{rec['doc']}"
    assert client.get(url).status_code == 200  # as PocketBase: a public view rule lets anyone
    rule = {"viewRule": "@request.auth.id != ''"}
    assert client.patch("/api/collections/posts", headers=su, json=rule).status_code == 200
    assert client.get(url).status_code == 404
    assert client.post("/api/files/token").status_code == 401
    token = client.post("/api/files/token", headers={"Authorization": auth["token"]}).json()
    got = client.get(url, params={"token": token["token"]})
    assert got.status_code == 200
    assert got.content == b"secret"
    assert client.get(url, params={"token": auth["token"]}).status_code == 404  # not a file token
    # the view rule applies to the token's owner
    r = client.patch(
        "/api/collections/posts", headers=su, json={"viewRule": "@request.auth.id = 'x'"}
    )
    assert r.status_code == 200
    assert client.get(url, params={"token": token["token"]}).status_code == 404
    su_token = client.post("/api/files/token", headers=su).json()["token"]
    assert client.get(url, params={"token": su_token}).status_code == 200


def test_every_process_serves_every_file(
    client: TestClient, su: dict[str, str], settings: Any
) -> None:
    """A second server process on the same database and storage (data directory or bucket)
    serves the file the first one stored, and its deletes reach the first one's files."""
    from shipyard.app import create_app

    col, rec = upload_one(client, su)
    url = f"/api/files/posts/{rec['id']}/{rec['doc']}"
    with TestClient(create_app(settings)) as other:
        got = other.get(url)
        assert got.status_code == 200
        assert got.content == b"a"
        assert other.delete(f"/api/collections/posts/records/{rec['id']}").status_code == 204
    key = f"{col['id']}/{rec['id']}/{rec['doc']}"
    wait_until(lambda: not stored(client, key), what="file deleted by the other process")


def test_large_files_stream_in_parts(client: TestClient, su: dict[str, str]) -> None:
    """Past 8 MiB, S3 gets a multipart upload; a download streams it back whole or ranged."""
    make_collection(client, su, maxSize=20 << 20)
    body = bytes(range(256)) * (9 << 12)  # 9 MiB
    rec = client.post(
        "/api/collections/posts/records", files=[("doc", ("big.bin", body, "x/y"))]
    ).json()
    url = f"/api/files/posts/{rec['id']}/{rec['doc']}"
    got = client.get(url)
    assert got.status_code == 200
    assert got.content == body
    part = client.get(url, headers={"Range": "bytes=8388600-8388615"})
    assert part.content == body[8388600:8388616]


def test_upload_body_limit(client: TestClient, su: dict[str, str], settings: Any) -> None:
    """A multipart body past SHIPYARD_FILES_MAX_UPLOAD_SIZE is cut off with a 413."""
    import dataclasses

    from shipyard.app import create_app

    make_collection(client, su, maxSize=10000)
    small = dataclasses.replace(settings, files_max_upload_size=4096)
    with TestClient(create_app(small)) as c:
        files = [("doc", ("big.bin", b"x" * 5000, "x/y"))]
        r = c.post("/api/collections/posts/records", files=files)
        assert r.status_code == 413
        assert r.json()["status"] == 413


def test_uploads_of_a_write_that_never_commits_are_removed(
    client: TestClient, su: dict[str, str]
) -> None:
    """Files are stored inside the write's transaction; if it then fails, a `files.orphans`
    job enqueued before it (and cancelled by it when it commits) removes them."""
    from shipyard.kernel.errors import bad_request

    col = make_collection(client, su)
    svc = client.app.state.services  # type: ignore[attr-defined]
    ok = client.post("/api/collections/posts/records", files=[("doc", ("a.txt", b"a", "x/y"))])
    assert ok.status_code == 200

    class Refuse:  # a later subscriber refuses the write after the files were stored
        async def listener(self, tx: Any, c: Any, action: str) -> Any:
            async def refuse(tx: Any, change: Any) -> None:
                if change.record.get("title") == "refused":
                    raise bad_request("Refused by a test listener.")

            return refuse

    svc.events.subscribe(Refuse())
    r = client.post(
        "/api/collections/posts/records",
        data={"title": "refused", "id": "refusedrecord01"},
        files=[("doc", ("b.txt", b"b", "text/plain"))],
    )
    assert r.status_code == 400, r.text
    jobs = client.get("/api/jobs?kind=files.orphans&perPage=50", headers=su).json()["items"]
    by_state = {j["state"]: j for j in jobs}
    assert set(by_state) == {"cancelled", "scheduled"}, (
        jobs
    )  # the committed write cancelled its own
    pending = by_state["scheduled"]
    (name,) = pending["args"]["names"]
    key = f"{col['id']}/refusedrecord01/{name}"
    assert stored(client, key)  # left behind by the failed write
    assert client.post(f"/api/jobs/{pending['id']}/retry", headers=su).status_code == 200  # run now
    wait_until(lambda: not stored(client, key), what="the failed write's upload removed")
    assert stored(client, f"{col['id']}/{ok.json()['id']}/{ok.json()['doc']}")


def test_an_import_with_delete_missing_removes_the_dropped_collections_files(
    client: TestClient, su: dict[str, str]
) -> None:
    col, rec = upload_one(client, su)
    key = f"{col['id']}/{rec['id']}/{rec['doc']}"
    assert stored(client, key)
    r = client.put(
        "/api/collections/import",
        headers=su,
        json={
            "collections": [{"name": "others", "type": "base", "fields": []}],
            "deleteMissing": True,
        },
    )
    assert r.status_code == 204, r.text
    wait_until(lambda: not stored(client, key), what="the dropped collection's files removed")


def varies(r: Any) -> set[str]:
    return {v.strip().lower() for v in r.headers.get("vary", "").split(",") if v.strip()}


def test_thumbnail_format_follows_accept(client: TestClient, su: dict[str, str]) -> None:
    col = make_collection(client, su)
    rec = upload(client, png(300, 200)).json()
    url = f"/api/files/posts/{rec['id']}/{rec['doc']}?thumb=100x100"

    plain = client.get(url, headers={"Accept": "*/*"})
    assert plain.headers["content-type"] == "image/png"  # PocketBase's format
    assert "accept" in varies(plain)
    avif = client.get(url, headers={"Accept": BROWSER})
    assert avif.headers["content-type"] == "image/avif"
    assert "accept" in varies(avif)
    assert avif.headers["content-disposition"] == f'inline; filename="100x100_{rec["doc"]}.avif"'
    webp = client.get(url, headers={"Accept": "image/webp,*/*"})
    assert webp.headers["content-type"] == "image/webp"
    for r in (plain, avif, webp):
        assert Image.open(io.BytesIO(r.content)).size == (100, 100)
    assert len(webp.content) < len(plain.content)
    # each format made once, stored beside the original, under PocketBase's name for its own
    base = f"{col['id']}/{rec['id']}/thumbs_{rec['doc']}/100x100_{rec['doc']}"
    for suffix in ("", ".avif", ".webp"):
        assert stored(client, base + suffix), suffix
    # the original is not negotiated
    original = client.get(f"/api/files/posts/{rec['id']}/{rec['doc']}", headers={"Accept": BROWSER})
    assert original.headers["content-type"] == "image/png"
    assert "accept" not in varies(original)
    assert original.headers["cross-origin-resource-policy"] == "cross-origin"
