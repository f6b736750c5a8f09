"""Rules as PocketBase reads, checks and matches them (core/settings_model.go), and how a
request's labels are built (apis/middlewares_rate_limit.go)."""

from __future__ import annotations

from typing import Any

import pytest

from shipyard.kernel.errors import FieldError
from shipyard.ratelimit.rules import (
    DEFAULT_RULES,
    Rules,
    decode_rules,
    parse_rules,
    request_labels,
    rules_problem,
)


def rule(label: str, audience: str = "", duration: int = 10, most: int = 5) -> dict[str, Any]:
    return {"label": label, "audience": audience, "duration": duration, "maxRequests": most}


def name(segment: str) -> str:
    return {"pbc_1": "posts"}.get(segment, segment)


@pytest.mark.parametrize(
    "label",
    ["/", "/api/", "/api/batch", "GET /", "POST /api/collections/", "users:create", "*:auth",
     "abc", "GET /api/x-y_z/1"],
)  # fmt: skip
def test_labels_pocketbase_accepts(label: str) -> None:
    assert rules_problem([rule(label)]) is None


@pytest.mark.parametrize(
    "label", ["a:b:c", "GET  /x", "bad label!", "GET /a b", "/é", "get", "*:", "/api/?x"]
)
def test_labels_pocketbase_refuses(label: str) -> None:
    if label == "get":  # a plain tag is a valid label
        assert rules_problem([rule(label)]) is None
        return
    problem = rules_problem([rule(label)])
    assert problem is not None
    assert problem.to_dict() == {
        "0": {
            "label": {"code": "validation_match_invalid", "message": "Must be in a valid format."}
        }
    }


def test_every_field_of_every_bad_rule_is_reported_before_conflicts() -> None:
    bad = {"label": "bad label!", "audience": "x", "duration": 0, "maxRequests": 0}
    problem = rules_problem([bad, rule("/api/"), rule("/api/"), rule("/x", duration=-1)])
    assert problem is not None
    assert problem.to_dict() == {
        "0": {
            "audience": {"code": "validation_in_invalid", "message": "Must be a valid value."},
            "duration": {"code": "validation_required", "message": "Cannot be blank."},
            "label": {"code": "validation_match_invalid", "message": "Must be in a valid format."},
            "maxRequests": {"code": "validation_required", "message": "Cannot be blank."},
        },
        "3": {
            "duration": {
                "code": "validation_min_greater_equal_than_required",
                "message": "Must be no less than 1.",
                "params": {"threshold": 1},
            }
        },
    }


def test_conflicts_as_pocketbase_finds_them() -> None:
    for rules, index in (
        ([rule("/api/"), rule("/api/")], "1"),
        ([rule("/api/"), rule("/api/", "@guest")], "1"),  # everyone and guests: a conflict
        ([rule("/x"), rule("/api/", "@auth"), rule("/api/")], "2"),
    ):
        problem = rules_problem(rules)
        assert problem is not None
        label = rules[int(index)]["label"]
        assert problem.to_dict() == {
            index: {
                "label": {
                    "code": "validation_conflicting_rate_limit_rule",
                    "message": f"Rate limit rule configuration with label {label} already "
                    "exists or conflicts with another rule.",
                    "params": {"label": label},
                }
            }
        }
    # guests and users apart, and labels that only share a beginning, do not conflict
    assert rules_problem([rule("/api/", "@guest"), rule("/api/", "@auth")]) is None
    assert (
        rules_problem([rule("/api/"), rule("/api/x"), rule("*:auth"), rule("*:authRefresh")])
        is None
    )
    assert rules_problem(DEFAULT_RULES) is None


def test_decoding_takes_what_pocketbase_takes() -> None:
    assert decode_rules([{"label": "/api/", "maxRequests": 3, "extra": 1}]) == [
        {"label": "/api/", "audience": "", "duration": 0, "maxRequests": 3}
    ]
    for raw in ("x", [1], [{"maxRequests": 1.5}], [{"duration": "1"}], [{"label": 3}],
                [{"maxRequests": True}], {"label": "/"}):  # fmt: skip
        with pytest.raises(FieldError):
            decode_rules(raw)


def test_start_up_rules_are_checked() -> None:
    assert parse_rules("") == DEFAULT_RULES
    assert parse_rules('[{"label": "/api/", "duration": 1, "maxRequests": 2}]') == [
        rule("/api/", "", 1, 2)
    ]
    with pytest.raises(ValueError, match="JSON list"):
        parse_rules("{")
    with pytest.raises(ValueError, match="validation_match_invalid"):
        parse_rules('[{"label": "no way", "duration": 1, "maxRequests": 2}]')


def test_request_labels() -> None:
    assert request_labels("GET", "/api/health", name) == (None, ["GET /api/health", "/api/health"])
    coll, labels = request_labels("GET", "/api/collections/pbc_1/records", name)
    assert coll == "posts"  # by id or name: PocketBase labels by name
    assert labels == [
        "posts:list", "*:list", "GET /api/collections/pbc_1/records", "/api/collections/pbc_1/records"
    ]  # fmt: skip
    assert request_labels("PATCH", "/api/collections/posts/records/r1", name)[1][:2] == [
        "posts:update",
        "*:update",
    ]
    assert request_labels("POST", "/api/collections/users/auth-with-password", name)[1][:4] == [
        "users:authWithPassword", "users:auth", "*:authWithPassword", "*:auth"
    ]  # fmt: skip
    assert request_labels("POST", "/api/collections/users/request-otp", name)[1][:2] == [
        "users:requestOTP",
        "*:requestOTP",
    ]
    assert request_labels("GET", "/api/files/posts/r1/a.png", name)[1][:2] == [
        "posts:file",
        "*:file",
    ]
    # no action: only the path's labels
    assert request_labels("PUT", "/api/collections/posts/records", name)[0] is None
    assert request_labels("GET", "/api/collections/posts", name)[0] is None


def find(rules: Rules, method: str, path: str, audience: str | None = None) -> str | None:
    found = rules.find(request_labels(method, path, name)[1], audience)
    return found.name if found else None


def test_matching_as_pocketbase_finds_rules() -> None:
    rules = Rules(
        [
            rule("/api/"),
            rule("POST /api/collections/"),
            rule("GET /api/health"),
            rule("posts:create"),
            rule("*:create"),
            rule("*:auth", "@guest"),
            rule("/api/collections/posts/records/", "@auth"),
        ]
    )
    # the collection's own action, then the wildcard, then the path
    assert find(rules, "POST", "/api/collections/posts/records") == "posts:create"
    assert find(rules, "POST", "/api/collections/tags/records") == "*:create"
    # an exact path, then a prefix covering it with the method, then without
    assert find(rules, "GET", "/api/health") == "GET /api/health"
    assert find(rules, "POST", "/api/collections/tags/auth-refresh") == "POST /api/collections/"
    assert find(rules, "GET", "/api/logs") == "/api/"
    assert find(rules, "GET", "/metrics") is None
    # a prefix covers the path itself without its slash (PocketBase appends one)
    assert find(Rules([rule("/api/health/")]), "GET", "/api/health") == "/api/health/"
    # audiences: the first rule for who asks
    assert (
        find(rules, "POST", "/api/collections/users/auth-with-password", "@guest") == "*:auth@guest"
    )
    assert find(rules, "POST", "/api/collections/users/auth-with-password", "@auth") == (
        "POST /api/collections/"
    )
    # prefixes are tried in the rules' order: the earlier `/api/` wins over a longer one
    assert find(rules, "GET", "/api/collections/posts/records/x", "@auth") == "/api/"
    narrow_first = Rules([rule("/api/collections/posts/records/", "@auth"), rule("/api/")])
    assert find(narrow_first, "GET", "/api/collections/posts/records/x", "@auth") == (
        "/api/collections/posts/records/@auth"
    )
    assert find(narrow_first, "GET", "/api/collections/posts/records/x", "@guest") == "/api/"
    assert rules.by_audience
    assert not Rules([rule("/api/")]).by_audience


def test_the_fast_match_agrees_with_pocketbases_search() -> None:
    """`Rules.match` (what each request runs) finds what `find(request_labels(…))` finds,
    for every request, audience and rule set here."""
    rule_sets = [
        DEFAULT_RULES,
        [rule("/api/"), rule("posts:list", "@guest"), rule("*:list", "@auth"), rule("/api/health")],
        [rule("GET /api/collections/"), rule("/api/collections/posts/"), rule("*:view")],
        [rule("users:auth"), rule("*:authWithPassword", "@guest"), rule("POST /"), rule("/")],
        [rule("*:file"), rule("posts:delete", "@auth"), rule("/api/files/", "@guest")],
        [rule("/never/"), rule("abc")],
    ]
    requests = [
        ("GET", "/api/collections/posts/records"),
        ("POST", "/api/collections/posts/records"),
        ("GET", "/api/collections/pbc_1/records/r1"),
        ("PATCH", "/api/collections/tags/records/r1"),
        ("DELETE", "/api/collections/posts/records/r1"),
        ("POST", "/api/collections/users/auth-with-password"),
        ("POST", "/api/collections/users/request-otp"),
        ("GET", "/api/collections/users/auth-methods"),
        ("GET", "/api/files/posts/r1/a.png"),
        ("GET", "/api/health"),
        ("POST", "/api/batch"),
        ("GET", "/metrics"),
        ("GET", "/"),
    ]
    for docs in rule_sets:
        rules = Rules(docs)
        for method, path in requests:
            coll, labels = request_labels(method, path, name)
            for audience in (None, "@guest", "@auth"):
                want = rules.find(labels, audience)
                got, got_coll = rules.match(method, path, name, audience)
                assert got == want, (docs, method, path, audience)
                if got is not None and got.per_collection:
                    assert got_coll == coll
