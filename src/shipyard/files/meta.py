"""What Shipyard knows of each stored image (`_file_meta`: its displayed size, type and BlurHash),
written in the transaction of the write that stores the image and removed in the transaction
that drops it, and the `?images=1` record decoration that returns it with the records:

    "@images": {"beach_k3j9x0c2qa.jpg": {"width": 1200, "height": 800, "type": "image/jpeg",
                "placeholder": "LKO2?U%2Tw=w]~RBVZRi};RPxuwH", "srcset": "…?thumb=320x0 320w, …"}}

Rows are keyed by (collection id, record id, file name); a record's response cache entry is
invalidated by the same write that changes its rows.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from shipyard.images import can_thumb, srcset
from shipyard.kernel.uploads import Upload
from shipyard.records.collections import Collection
from shipyard.records.context import RequestContext
from shipyard.tools.db import Executor

TABLE = "_file_meta"
CHUNK = 500  # ids per IN (...) list
TRUTHY = frozenset({"1", "t", "true", "yes", "on"})


async def ensure_schema(db: Executor) -> None:
    await db.execute(
        f'CREATE TABLE IF NOT EXISTS "{TABLE}" ('
        '"collection" TEXT NOT NULL, "record" TEXT NOT NULL, "name" TEXT NOT NULL, '
        '"type" TEXT NOT NULL, "width" INTEGER NOT NULL, "height" INTEGER NOT NULL, '
        '"placeholder" TEXT NOT NULL, PRIMARY KEY ("collection", "record", "name"))'
    )


async def store(
    tx: Executor, collection_id: str, record_id: str, uploads: Iterable[Upload]
) -> None:
    for u in uploads:
        if "width" not in u.meta:
            continue
        await tx.execute(
            f'INSERT INTO "{TABLE}" ("collection", "record", "name", "type", "width", "height", '
            '"placeholder") VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT ("collection", "record", '
            '"name") DO UPDATE SET "type" = excluded."type", "width" = excluded."width", '
            '"height" = excluded."height", "placeholder" = excluded."placeholder"',
            (
                collection_id,
                record_id,
                u.name,
                u.mime,
                int(u.meta["width"]),
                int(u.meta["height"]),
                str(u.meta.get("placeholder") or ""),
            ),
        )


async def forget(
    tx: Executor, collection_id: str, record_ids: Sequence[str] | None, names: Sequence[str] = ()
) -> None:
    """Rows of these files of one record (`names`), of whole records, or (None) of the
    whole collection."""
    if record_ids is None:
        await tx.execute(f'DELETE FROM "{TABLE}" WHERE "collection" = ?', (collection_id,))
        return
    if names:
        marks = ", ".join("?" for _ in names)
        await tx.execute(
            f'DELETE FROM "{TABLE}" WHERE "collection" = ? AND "record" = ? AND "name" IN ({marks})',
            (collection_id, record_ids[0], *names),
        )
        return
    for i in range(0, len(record_ids), CHUNK):
        part = record_ids[i : i + CHUNK]
        marks = ", ".join("?" for _ in part)
        await tx.execute(
            f'DELETE FROM "{TABLE}" WHERE "collection" = ? AND "record" IN ({marks})',
            (collection_id, *part),
        )


async def read(
    db: Executor, collection_id: str, record_ids: Sequence[str]
) -> dict[tuple[str, str], tuple[str, int, int, str]]:
    """(record id, name) → (type, width, height, placeholder)."""
    out: dict[tuple[str, str], tuple[str, int, int, str]] = {}
    for i in range(0, len(record_ids), CHUNK):
        part = record_ids[i : i + CHUNK]
        marks = ", ".join("?" for _ in part)
        rows = await db.fetchall(
            f'SELECT "record", "name", "type", "width", "height", "placeholder" FROM "{TABLE}" '
            f'WHERE "collection" = ? AND "record" IN ({marks})',
            (collection_id, *part),
        )
        for r in rows:
            out[(str(r[0]), str(r[1]))] = (str(r[2]), int(r[3]), int(r[4]), str(r[5]))
    return out


class ImagesDecorator:
    """`?images=1`: each returned record gets `@images`, its images' facts by file name."""

    param = "images"

    def __init__(
        self, db: Executor, widths: Sequence[int], public_url: Callable[[str], str]
    ) -> None:
        self.db = db
        self.widths = widths
        self.public_url = public_url  # a path → its URL (on the CDN when one is set)

    async def decorate(
        self, c: Collection, items: list[dict[str, Any]], value: str, ctx: RequestContext
    ) -> None:
        fields = [f for f in c.fields if f.type == "file"]
        if value.strip().lower() not in TRUTHY or not fields:
            return
        ids = [str(i["id"]) for i in items if i.get("id")]
        rows = await read(self.db, c.id, ids) if ids else {}
        for item in items:
            rid = str(item.get("id") or "")
            out: dict[str, Any] = {}
            for f in fields:
                raw = item.get(f.name)
                for name in raw if isinstance(raw, list) else [raw]:
                    got = rows.get((rid, name)) if isinstance(name, str) else None
                    if got is None or not isinstance(name, str):
                        continue
                    kind, width, height, blur = got
                    entry: dict[str, Any] = {"type": kind, "width": width, "height": height}
                    entry["placeholder"] = blur
                    if can_thumb(kind) and not f.options.get("protected"):
                        url = self.public_url(f"/api/files/{c.id}/{rid}/{name}")
                        entry["srcset"] = srcset(url, self.widths, original_width=width)
                    out[name] = entry
            item["@images"] = out
