"""The grouping rules, the scrubber and the envelope reader on events as SDKs shape them
(no database: these are pure functions; the SDK tests run them end to end)."""

from __future__ import annotations

from typing import Any

import pytest

from shipyard.errors.envelope import BadInput, parse_envelope
from shipyard.errors.grouping import components, group, user_key
from shipyard.errors.scrub import scrub_event


def _exc(etype: str, frames: list[tuple[str, str, int, bool]], value: str = "v") -> dict[str, Any]:
    return {
        "exception": {
            "values": [
                {
                    "type": etype,
                    "value": value,
                    "stacktrace": {
                        "frames": [
                            {"module": m, "function": f, "lineno": n, "in_app": a}
                            for m, f, n, a in frames
                        ]
                    },
                }
            ]
        }
    }


def test_exceptions_group_by_type_and_in_app_frames_not_lines() -> None:
    a = _exc("KeyError", [("lib", "get", 10, False), ("app.views", "show", 20, True)], "'x'")
    b = _exc("KeyError", [("lib", "get", 99, False), ("app.views", "show", 31, True)], "'y'")
    c = _exc("KeyError", [("lib", "get", 10, False), ("app.views", "edit", 20, True)])
    assert group(a).fingerprint == group(b).fingerprint
    assert group(a).fingerprint != group(c).fingerprint
    assert group(a).title == "KeyError: 'x'"
    assert group(a).culprit == "app.views in show"


def test_javascript_frames_group_by_file_without_query() -> None:
    def js(url: str) -> dict[str, Any]:
        frame = {"filename": url, "function": "renderCart", "in_app": True, "lineno": 3}
        return {"exception": {"values": [{"type": "TypeError", "stacktrace": {"frames": [frame]}}]}}

    assert (
        group(js("https://a.example/app.js?v=1")).fingerprint
        == group(js("https://a.example/app.js?v=2")).fingerprint
    )


def test_fingerprint_with_default() -> None:
    base = _exc("ValueError", [("app", "run", 1, True)])
    plain = group(base).fingerprint
    assert group({**base, "fingerprint": ["{{ default }}"]}).fingerprint == plain
    tenant = group({**base, "fingerprint": ["{{default}}", "tenant-a"]}).fingerprint
    assert tenant != plain
    assert components({**base, "fingerprint": ["{{ default }}", "t"]}) == [
        *components(base),
        "fp:t",
    ]
    custom = {"message": "anything", "fingerprint": ["db-down"]}
    assert (
        group(custom).fingerprint
        == group({"message": "else", "fingerprint": ["db-down"]}).fingerprint
    )


def test_messages_group_with_numbers_and_ids_normalised() -> None:
    one = group({"message": "order 17 failed for 3f2b9c1d-aaaa-bbbb-cccc-0123456789ab"})
    two = group({"message": "order 18 failed for 00000000-1111-2222-3333-444444444444"})
    assert one.fingerprint == two.fingerprint
    assert one.fingerprint != group({"message": "order 17 shipped"}).fingerprint
    # logging's template wins over the formatted text
    t = group({"logentry": {"message": "user %s logged in", "formatted": "user ann logged in"}})
    assert t.title == "user ann logged in"
    assert (
        t.fingerprint
        == group(
            {"logentry": {"message": "user %s logged in", "formatted": "user bob logged in"}}
        ).fingerprint
    )
    assert group({}).title == "<unlabeled event>"
    assert group({"level": "warn"}).level == "warning"
    assert group({"level": 5}).level == "error"


def test_user_key() -> None:
    assert user_key({"user": {"id": 7, "email": "a@b.c"}}, "1.2.3.4") == "id:7"
    assert user_key({"user": {"email": "a@b.c"}}, "") == "email:a@b.c"
    assert user_key({"user": {"ip_address": "{{auto}}"}}, "1.2.3.4") == "ip_address:1.2.3.4"
    assert user_key({"user": "nobody"}, "1.2.3.4") == ""


def test_scrubbing_keeps_shape() -> None:
    event = {
        "request": {"headers": [["Authorization", "Bearer x"], ["Accept", "*/*"]],
                    "cookies": {"sid": "1"}, "url": "https://a/b?q=1&access_token=zz"},
        "breadcrumbs": {"values": [{"data": {"client_secret": "cs", "n": 1}}]},
        "exception": {"values": [{"stacktrace": {"frames": [{"vars": {"passwd": "p", "i": 2}}]}}]},
    }  # fmt: skip
    out = scrub_event(event)
    assert out["request"]["headers"] == [["Authorization", "[Filtered]"], ["Accept", "*/*"]]
    assert out["request"]["cookies"] == "[Filtered]"
    assert out["request"]["url"] == "https://a/b?q=1&access_token=[Filtered]"
    assert out["breadcrumbs"]["values"][0]["data"] == {"client_secret": "[Filtered]", "n": 1}
    assert out["exception"]["values"][0]["stacktrace"]["frames"][0]["vars"] == {
        "passwd": "[Filtered]",
        "i": 2,
    }
    assert event["request"]["cookies"] == {"sid": "1"}  # the input is left alone


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"[]\n",
        b"{}\nnot json\n",
        b'{}\n{"type":"event","length":-1}\n',
        b'{}\n{"type":"event","length":true}\n',
    ],
)
def test_envelope_garbage_is_bad_input(body: bytes) -> None:
    with pytest.raises(BadInput):
        parse_envelope(body).events()


def test_envelope_items_without_length_and_trailing_newlines() -> None:
    env = parse_envelope(
        b'{"event_id":"a"}\n{"type":"event"}\n{"message":"m"}\n\n{"type":"client_report"}\n{}'
    )
    assert env.events() == [{"message": "m"}]
    assert [h["type"] for h, _ in env.items] == ["event", "client_report"]
