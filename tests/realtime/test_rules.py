"""Each subscriber sees what its rules let it see: the list rule for `posts/*`, the view
rule for `posts/ID`, evaluated against its own auth and the record; hidden fields and
`emailVisibility` applied; a delete only for those who could see the record; the topic's
`filter`, `expand` and `fields` options."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from tests.helpers.realtime import ON_BACKENDS, Pair, Stream

pytestmark = ON_BACKENDS


RULE = "owner = @request.auth.id || public = true"


@pytest.fixture
def world(pair: Pair) -> dict[str, Any]:
    """Users (one hides its e-mail, one shows it) and posts they own, some private; made
    once per pair (the pair is shared by the whole run)."""
    if "world" not in pair.cache:
        pair.cache["world"] = _world(pair)
    return dict(pair.cache["world"])


def _world(pair: Pair) -> dict[str, Any]:
    users = "u" + uuid.uuid4().hex[:8]
    posts = "p" + uuid.uuid4().hex[:8]
    pair.collection(
        {
            "name": users,
            "type": "auth",
            "listRule": "",
            "viewRule": "",
            "fields": [{"name": "name", "type": "text"}],
        }
    )
    pair.collection(
        {
            "name": posts,
            "type": "base",
            "listRule": RULE,
            "viewRule": RULE,
            "fields": [
                {"name": "title", "type": "text"},
                {"name": "public", "type": "bool"},
                {"name": "secret", "type": "text", "hidden": True},
                {
                    "name": "owner",
                    "type": "relation",
                    "collectionId": users,
                    "maxSelect": 1,
                },
            ],
        }
    )
    people = {}
    for who, visible in (("alice", False), ("bob", True)):
        rec = pair.create(
            users,
            {
                "email": f"{who}@example.com",
                "password": "password123",
                "passwordConfirm": "password123",
                "emailVisibility": visible,
                "name": who,
            },
        )
        people[who] = {"id": rec["id"], "token": pair.impersonate(users, rec["id"])}
    return {"users": users, "posts": posts, **people}


def _streams(pair: Pair, world: dict[str, Any], *topics: str) -> dict[str, Stream]:
    out = {
        "anon": Stream(pair.a.url),
        "alice": Stream(pair.a.url),
        "bob": Stream(pair.a.url),
        "su": Stream(pair.a.url),
    }
    tokens = {"anon": "", "alice": world["alice"]["token"], "bob": world["bob"]["token"]}
    tokens["su"] = pair.token
    for who, s in out.items():
        r = s.subscribe(*topics, token=tokens[who])
        assert r.status_code == 204, r.text
    return out


def _close(streams: dict[str, Stream]) -> None:
    for s in streams.values():
        s.close()


def test_list_rule_per_subscriber(pair: Pair, world: dict[str, Any]) -> None:
    posts, alice = world["posts"], world["alice"]
    streams = _streams(pair, world, f"{posts}/*")
    try:
        private = pair.create(posts, {"title": "mine", "owner": alice["id"], "secret": "s1"})
        public = pair.create(posts, {"title": "all", "public": True, "secret": "s2"})
        pair.update(posts, private["id"], {"title": "mine2"})
        pair.delete(posts, private["id"])
        marker = pair.create(posts, {"title": "end", "public": True})

        def seen(who: str, n: int) -> list[tuple[str, str]]:
            got = streams[who].wait(n)
            assert got[-1]["record"]["id"] == marker["id"]
            return [(e["action"], e["record"]["title"]) for e in got]

        assert seen("alice", 5) == [
            ("create", "mine"), ("create", "all"), ("update", "mine2"), ("delete", "mine2"),
            ("create", "end"),
        ]  # fmt: skip
        assert seen("su", 5) == seen("alice", 5)
        # the others never see alice's private post, not even its deletion
        assert seen("anon", 2) == [("create", "all"), ("create", "end")]
        assert seen("bob", 2) == [("create", "all"), ("create", "end")]
        # hidden fields: superusers only
        assert streams["su"].records()[1]["record"]["secret"] == "s2"
        assert "secret" not in streams["anon"].records()[0]["record"]
        assert "secret" not in streams["alice"].records()[0]["record"]
        assert public["id"] == streams["bob"].records()[0]["record"]["id"]
    finally:
        _close(streams)


def test_a_record_turning_visible_or_invisible(pair: Pair, world: dict[str, Any]) -> None:
    posts, bob = world["posts"], world["bob"]
    streams = _streams(pair, world, f"{posts}/*")
    try:
        rec = pair.create(posts, {"title": "p", "owner": bob["id"]})
        pair.update(posts, rec["id"], {"public": True})
        pair.update(posts, rec["id"], {"public": False})
        end = pair.create(posts, {"title": "end", "public": True})
        got = streams["anon"].wait(2)
        assert [(e["action"], e["record"]["id"]) for e in got] == [
            ("update", rec["id"]),
            ("create", end["id"]),
        ]
        assert len(streams["bob"].wait(4)) == 4
    finally:
        _close(streams)


def test_view_rule_for_one_record(pair: Pair, world: dict[str, Any]) -> None:
    posts, alice = world["posts"], world["alice"]
    rec = pair.create(posts, {"title": "one", "owner": alice["id"]})
    streams = _streams(pair, world, f"{posts}/{rec['id']}")
    try:
        pair.update(posts, rec["id"], {"title": "two"})
        pair.update(posts, rec["id"], {"title": "three", "public": True})
        got = streams["alice"].wait(2, f"{posts}/{rec['id']}")
        assert [e["record"]["title"] for e in got] == ["two", "three"]
        assert [e["record"]["title"] for e in streams["bob"].wait(1)] == ["three"]
        assert streams["bob"].quiet(1) == streams["bob"].records()
    finally:
        _close(streams)


def test_options_filter_expand_fields(pair: Pair, world: dict[str, Any]) -> None:
    posts, alice, bob = world["posts"], world["alice"], world["bob"]
    options = {
        "query": {"filter": "title ~ 'keep'", "expand": "owner", "fields": "id,title,expand"}
    }
    topic = f"{posts}/*?options={json.dumps(options)}"
    streams = _streams(pair, world, topic, f"{posts}/*")
    try:
        pair.create(posts, {"title": "drop", "public": True, "owner": alice["id"]})
        pair.create(posts, {"title": "keep a", "public": True, "owner": alice["id"]})
        pair.create(posts, {"title": "keep b", "public": True, "owner": bob["id"]})
        for who in streams:
            assert len(streams[who].wait(3, f"{posts}/*")) == 3
            got = streams[who].wait(2, topic)
            assert [e["record"]["title"] for e in got] == ["keep a", "keep b"]
            assert set(got[0]["record"]) == {"id", "title", "expand"}
        anon = streams["anon"].records(topic)
        # e-mails: shown when the owner made them visible, to the owner and to superusers
        assert "email" not in anon[0]["record"]["expand"]["owner"]
        assert anon[1]["record"]["expand"]["owner"]["email"] == "bob@example.com"
        own = streams["alice"].records(topic)[0]["record"]["expand"]["owner"]
        assert own["email"] == "alice@example.com"
        su = streams["su"].records(topic)[0]["record"]["expand"]["owner"]
        assert su["email"] == "alice@example.com"
    finally:
        _close(streams)


def test_auth_records_show_email_by_visibility(pair: Pair, world: dict[str, Any]) -> None:
    users = world["users"]
    streams = _streams(pair, world, f"{users}/*")
    try:
        pair.update(users, world["alice"]["id"], {"name": "alice2"})
        pair.update(users, world["bob"]["id"], {"name": "bob2"})
        anon = streams["anon"].wait(2)
        assert "email" not in anon[0]["record"]
        assert anon[1]["record"]["email"] == "bob@example.com"
        assert streams["alice"].wait(2)[0]["record"]["email"] == "alice@example.com"
        for e in streams["su"].wait(2):
            assert "password" not in e["record"]
            assert "tokenKey" not in e["record"]
    finally:
        _close(streams)


def test_superuser_only_collections(pair: Pair) -> None:
    name = "s" + uuid.uuid4().hex[:8]
    pair.collection({"name": name, "type": "base", "fields": [{"name": "t", "type": "text"}]})
    anon, su = Stream(pair.a.url), Stream(pair.a.url)
    try:
        assert anon.subscribe(f"{name}/*").status_code == 204
        assert su.subscribe(f"{name}/*", token=pair.token).status_code == 204
        pair.create(name, {"t": "x"})
        assert su.wait(1)[0]["record"]["t"] == "x"
        assert anon.quiet(0) == []
    finally:
        anon.close()
        su.close()
