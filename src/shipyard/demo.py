"""The demo data set: authors, posts and comments, related, a few thousand records, and
cover images on the first posts (generated, no downloads: thumbnails, WebP/AVIF, `srcset`
and placeholders show at once), so a newcomer sees a working API. Loading is idempotent."""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from shipyard.records.codecs import encode_stored
from shipyard.records.fields import format_date
from shipyard.tools.ids import random_string

if TYPE_CHECKING:
    from shipyard.services import Services

DEMO_SUPERUSER = ("admin@example.com", "shipyard-demo")
AUTHORS, POSTS, COMMENTS = 50, 2000, 4000
COVERS = 12  # the first posts get a cover image, stored through the records API
TAGS = ["python", "postgres", "sqlite", "api", "cache", "jobs", "auth", "design"]
WORDS = [
    "ship",
    "fast",
    "stay",
    "safe",
    "backend",
    "records",
    "cache",
    "queue",
    "index",
    "query",
    "relation",
    "expand",
    "filter",
    "sort",
    "page",
    "token",
    "rule",
    "hook",
    "event",
    "webhook",
    "metric",
    "trace",
    "alert",
    "backup",
    "restore",
    "deploy",
]

SCHEMA: list[dict[str, Any]] = [
    {
        "name": "authors",
        "listRule": "",
        "viewRule": "",
        "fields": [
            {"name": "name", "type": "text", "required": True, "max": 100, "presentable": True},
            {"name": "email", "type": "email"},
            {"name": "bio", "type": "editor"},
        ],
        "indexes": ["CREATE UNIQUE INDEX idx_authors_email ON authors (email)"],
    },
    {
        "name": "posts",
        "listRule": "",
        "viewRule": "",
        "fields": [
            {"name": "title", "type": "text", "required": True, "max": 200, "presentable": True},
            {"name": "body", "type": "editor"},
            {
                "name": "status",
                "type": "select",
                "values": ["draft", "published", "archived"],
                "maxSelect": 1,
            },
            {"name": "tags", "type": "select", "values": TAGS, "maxSelect": 8},
            {
                "name": "author",
                "type": "relation",
                "collectionId": "authors",
                "maxSelect": 1,
                "cascadeDelete": False,
            },
            {"name": "views", "type": "number", "min": 0, "onlyInt": True},
            {"name": "featured", "type": "bool"},
            {"name": "published", "type": "date"},
            {"name": "meta", "type": "json"},
            {
                "name": "cover",
                "type": "file",
                "maxSelect": 1,
                "mimeTypes": ["image/jpeg", "image/png", "image/webp", "image/gif"],
                "thumbs": ["400x300"],
            },
        ],
        "indexes": [
            "CREATE INDEX idx_posts_author ON posts (author)",
            "CREATE INDEX idx_posts_status_published ON posts (status, published)",
        ],
    },
    {
        "name": "comments",
        "listRule": "",
        "viewRule": "",
        "fields": [
            {
                "name": "post",
                "type": "relation",
                "collectionId": "posts",
                "maxSelect": 1,
                "cascadeDelete": True,
                "required": True,
            },
            {"name": "author", "type": "relation", "collectionId": "authors", "maxSelect": 1},
            {"name": "message", "type": "text", "required": True},
        ],
        "indexes": ["CREATE INDEX idx_comments_post ON comments (post)"],
    },
]


def _sentence(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n)).capitalize()


async def load(svc: Services, announce: Callable[[str], Any] = lambda _m: None) -> bool:
    """Create the demo collections and records unless they exist; True if it loaded them."""
    from shipyard.auth import superusers

    if svc.store.get("posts") is not None:
        announce("demo: already loaded")
        return False
    await svc.store.import_collections(SCHEMA)
    rng = random.Random(20261121)  # noqa: S311 (reproducible demo data)
    base = datetime(2026, 1, 1, tzinfo=UTC)
    now = format_date(datetime.now(UTC))

    def rows(coll: str, make: Callable[[int], dict[str, Any]], count: int) -> list[str]:
        c = svc.store.require(coll)
        fields = {f.name: f for f in c.fields}
        ids, batch = [], []
        for i in range(count):
            values = {"created": now, "updated": now, **make(i)}
            rid = random_string(15)
            ids.append(rid)
            batch.append(
                (
                    rid,
                    *[
                        encode_stored(fields[k], values.get(k, fields[k].zero()))
                        for k in cols[coll]
                    ],
                )
            )
        pending[coll] = batch
        return ids

    cols = {
        n: [f.name for f in svc.store.require(n).data_fields]
        for n in ("authors", "posts", "comments")
    }
    pending: dict[str, list[tuple[Any, ...]]] = {}
    authors = rows(
        "authors",
        lambda i: {
            "name": f"Author {i + 1}",
            "email": f"author{i + 1}@example.com",
            "bio": f"<p>{_sentence(rng, 12)}</p>",
        },
        AUTHORS,
    )
    posts = rows(
        "posts",
        lambda i: {
            "title": f"{_sentence(rng, 5)} #{i + 1}",
            "body": f"<p>{_sentence(rng, 40)}</p>",
            "status": rng.choice(["draft", "published", "published", "archived"]),
            "tags": rng.sample(TAGS, rng.randint(0, 3)),
            "author": rng.choice(authors),
            "views": rng.randint(0, 10000),
            "featured": rng.random() < 0.1,
            "published": format_date(base + timedelta(hours=rng.randint(0, 8000))),
            "meta": {"readingMinutes": rng.randint(1, 20), "lang": rng.choice(["en", "de", "fr"])},
        },
        POSTS,
    )
    rows(
        "comments",
        lambda i: {
            "post": rng.choice(posts),
            "author": rng.choice(authors),
            "message": _sentence(rng, 10),
        },
        COMMENTS,
    )
    async with svc.db.transaction() as tx:
        for coll in ("authors", "posts", "comments"):
            names = ", ".join(f'"{c}"' for c in ["id", *cols[coll]])
            marks = ", ".join("?" for _ in range(len(cols[coll]) + 1))
            await tx.executemany(f'INSERT INTO "{coll}" ({names}) VALUES ({marks})', pending[coll])
    await superusers.upsert(svc, *DEMO_SUPERUSER)
    await _covers(svc, posts[:COVERS])
    announce(
        f"demo: loaded {AUTHORS} authors, {POSTS} posts ({COVERS} with a cover image), "
        f"{COMMENTS} comments; "
        f"superuser {DEMO_SUPERUSER[0]} / {DEMO_SUPERUSER[1]}"
    )
    return True


async def _covers(svc: Services, post_ids: list[str]) -> None:
    """Cover images, uploaded as a client would: stored, decoded once, given a placeholder."""
    import io

    from shipyard.images import demo_images
    from shipyard.kernel.uploads import Upload
    from shipyard.records.collections import SUPERUSERS
    from shipyard.records.context import RequestContext

    posts = svc.store.require("posts")
    ctx = RequestContext.system(svc.store.require(SUPERUSERS))
    for rid, (name, data) in zip(post_ids, demo_images(len(post_ids)), strict=True):
        await svc.records.update(posts, rid, {"cover": Upload.of(name, io.BytesIO(data))}, ctx)
