"""The filter compiler's test schema: seven collections related in every way the compiler
handles (single and multiple relations, back-relations, hidden fields, an auth collection),
and the request contexts filters read (`@request.*`). Shared by tests/records/test_query.py
and bench/filter_compile.py."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from shipyard.records.collections import Collection, collection_from_dict

NOW = datetime(2024, 2, 29, 12, 0, 0, tzinfo=UTC)  # a Thursday in a leap year


def make_collection(
    cid: str, name: str, fields: list[dict[str, Any]], ctype: str = "base"
) -> Collection:
    # public listRule: clients may read these collections through relations in their filters
    return collection_from_dict(
        {"id": cid, "name": name, "type": ctype, "fields": fields, "listRule": ""}, trusted=True
    )


TEAMS = make_collection(
    "pbc_teams",
    "teams",
    [
        {"name": "name", "type": "text"},
        {"name": "plan", "type": "select", "values": ["free", "pro"]},
    ],
)
USERS = make_collection(
    "pbc_users",
    "users",
    [
        {"name": "password", "type": "password", "hidden": True},
        {"name": "tokenKey", "type": "text", "hidden": True},
        {"name": "email", "type": "email"},
        {"name": "emailVisibility", "type": "bool"},
        {"name": "verified", "type": "bool"},
        {"name": "name", "type": "text"},
        {"name": "age", "type": "number"},
        {"name": "secret", "type": "text", "hidden": True},
        {
            "name": "roles",
            "type": "select",
            "values": ["admin", "editor", "viewer"],
            "maxSelect": 3,
        },
        {"name": "team", "type": "relation", "collectionId": "pbc_teams"},
        {"name": "meta", "type": "json"},
    ],
    "auth",
)
TAGS = make_collection(
    "pbc_tags",
    "tags",
    [
        {"name": "label", "type": "text"},
        {"name": "weight", "type": "number"},
        {"name": "owner", "type": "relation", "collectionId": "pbc_users"},
    ],
)
POSTS = make_collection(
    "pbc_posts",
    "posts",
    [
        {"name": "title", "type": "text"},
        {"name": "views", "type": "number"},
        {"name": "rating", "type": "number"},
        {"name": "published", "type": "bool"},
        {"name": "published_at", "type": "date"},
        {"name": "status", "type": "select", "values": ["draft", "live", "archived"]},
        {
            "name": "categories",
            "type": "select",
            "values": ["news", "tech", "life"],
            "maxSelect": 3,
        },
        {"name": "author", "type": "relation", "collectionId": "pbc_users"},
        {"name": "tags", "type": "relation", "collectionId": "pbc_tags", "maxSelect": 10},
        {"name": "attachments", "type": "file", "maxSelect": 5},
        {"name": "cover", "type": "file"},
        {"name": "data", "type": "json"},
        {"name": "parent", "type": "relation", "collectionId": "pbc_posts"},
        {"name": "secret_note", "type": "text", "hidden": True},
    ],
)
COMMENTS = make_collection(
    "pbc_comments",
    "comments",
    [
        {"name": "post", "type": "relation", "collectionId": "pbc_posts"},
        {"name": "author", "type": "relation", "collectionId": "pbc_users"},
        {"name": "text", "type": "text"},
        {"name": "likes", "type": "number"},
    ],
)
FAVORITES = make_collection(
    "pbc_favorites",
    "favorites",
    [
        {"name": "user", "type": "relation", "collectionId": "pbc_users"},
        {"name": "posts", "type": "relation", "collectionId": "pbc_posts", "maxSelect": 10},
    ],
)
MEMBERSHIPS = make_collection(
    "pbc_memberships",
    "memberships",
    [
        {"name": "user", "type": "relation", "collectionId": "pbc_users"},
        {"name": "team", "type": "relation", "collectionId": "pbc_teams"},
        {"name": "role", "type": "select", "values": ["member", "admin"]},
    ],
)
ALL = (TEAMS, USERS, TAGS, POSTS, COMMENTS, FAVORITES, MEMBERSHIPS)


class Registry:
    def __init__(self, *collections: Collection) -> None:
        self.by_key = {c.id: c for c in collections} | {c.name: c for c in collections}

    def get(self, id_or_name: str) -> Collection | None:
        return self.by_key.get(id_or_name)


REGISTRY = Registry(*ALL)

AUTH = {
    "id": "u1",
    "collectionId": "pbc_users",
    "collectionName": "users",
    "email": "alice@example.com",
    "name": "Alice",
    "verified": True,
    "age": 30,
    "roles": ["admin", "editor"],
    "team": "t1",
}  # "meta" left out on purpose: it is then read from the database
REQUEST: dict[str, Any] = {
    "auth": AUTH,
    "query": {"q": "post", "n": "10", "empty": ""},
    "headers": {"x_token": "abc", "X-Custom-Header": "v"},
    "method": "GET",
    "body": {
        "title": "New",
        "tags": ["g1", "g3"],
        "author": "u2",
        "views": "10",
        "categories": ["news"],
    },
}
ANON: dict[str, Any] = {"auth": {}, "query": {}, "headers": {}, "method": "GET", "body": {}}
