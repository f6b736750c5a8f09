"""Rate limit rules in PocketBase's model: what they look like, how they are checked (with
PocketBase's error codes), and which rule a request falls under.

A rule is `{label, audience, duration, maxRequests}`: at most `maxRequests` requests per
`duration` seconds, per client, for the requests its label names:

- `METHOD /path` or `/path`: that exact path (with that method); ending with `/`, every
  path under it (`/api/` is the whole API, `POST /api/collections/` every collection POST);
- `collection:action` / `*:action`: an action of the records and auth API on one collection
  or on any (then counted per collection, as PocketBase does): list, view, create, update,
  delete, file, listAuthMethods, authRefresh, authWithPassword, authWithOAuth2, requestOTP,
  authWithOTP, requestPasswordReset, confirmPasswordReset, requestVerification,
  confirmVerification, requestEmailChange, confirmEmailChange; `auth` is every action that
  signs in (authWithPassword, authWithOAuth2, authWithOTP).

`audience` is "" (everyone), "@guest" or "@auth". One rule applies to a request: the first
found as PocketBase finds it (`FindRateLimitRule`): for each of the request's labels in turn
(its collection actions, its wildcard actions, `METHOD /path`, `/path`), a rule with exactly
that label, else a prefix rule that covers it; rules are tried in their order.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from shipyard.kernel.errors import FieldError

GUEST, AUTH = "@guest", "@auth"
AUDIENCES = ("", GUEST, AUTH)
# PocketBase's rateLimitRuleLabelRegex (Go's \w is ASCII)
LABEL_RE = re.compile(r"^(\w+ /[\w/-]*|/[\w/-]*|\w+:\w+|\*:\w+|\w+)$", re.ASCII)

# PocketBase's default rules, made to be left on: sign-ins and the account mails (each
# sends an e-mail) tightest, creates, batches, then the API as a whole
DEFAULT_RULES: list[dict[str, Any]] = [
    {"label": "*:auth", "audience": "", "duration": 3, "maxRequests": 2},
    {"label": "*:requestOTP", "audience": "", "duration": 60, "maxRequests": 5},
    {"label": "*:requestPasswordReset", "audience": "", "duration": 60, "maxRequests": 5},
    {"label": "*:requestVerification", "audience": "", "duration": 60, "maxRequests": 5},
    {"label": "*:requestEmailChange", "audience": "", "duration": 60, "maxRequests": 5},
    {"label": "*:create", "audience": "", "duration": 5, "maxRequests": 20},
    {"label": "/api/batch", "audience": "", "duration": 1, "maxRequests": 3},
    {"label": "/api/", "audience": "", "duration": 10, "maxRequests": 300},
]

_RECORD_ACTIONS = {
    (2, "GET"): ("list",),
    (2, "POST"): ("create",),
    (3, "GET"): ("view",),
    (3, "PATCH"): ("update",),
    (3, "DELETE"): ("delete",),
}
_AUTH_ACTIONS = {
    ("auth-methods", "GET"): ("listAuthMethods",),
    ("auth-refresh", "POST"): ("authRefresh",),
    ("auth-with-password", "POST"): ("authWithPassword", "auth"),
    ("auth-with-oauth2", "POST"): ("authWithOAuth2", "auth"),
    ("request-otp", "POST"): ("requestOTP",),
    ("auth-with-otp", "POST"): ("authWithOTP", "auth"),
    ("request-password-reset", "POST"): ("requestPasswordReset",),
    ("confirm-password-reset", "POST"): ("confirmPasswordReset",),
    ("request-verification", "POST"): ("requestVerification",),
    ("confirm-verification", "POST"): ("confirmVerification",),
    ("request-email-change", "POST"): ("requestEmailChange",),
    ("confirm-email-change", "POST"): ("confirmEmailChange",),
}
_COLLECTIONS = "/api/collections/"
_FILES = "/api/files/"


@dataclass(frozen=True, slots=True)
class Rule:
    label: str
    audience: str
    duration: int
    max_requests: int
    # made once: what the headers call it (an sf-string), its RateLimit-Policy item, its
    # part of a counter's key (a changed limit starts afresh), and whether `*:action`
    # counts each collection apart (PocketBase keys it by collection)
    name: str = field(init=False)
    policy: bytes = field(init=False)
    bucket: str = field(init=False)
    per_collection: bool = field(init=False)

    def __post_init__(self) -> None:
        name = self.label + self.audience
        item = f'"{name}";q={self.max_requests};w={self.duration}'
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "policy", item.encode())
        object.__setattr__(self, "bucket", f"{name}|{self.max_requests}/{self.duration}")
        object.__setattr__(self, "per_collection", self.label.startswith("*:"))


def rule_of(doc: dict[str, Any]) -> Rule:
    return Rule(doc["label"], doc["audience"], doc["duration"], doc["maxRequests"])


# ------------------------------------------------------------------ reading and checking


class ItemErrors(FieldError):
    """Errors of a list's items keyed by index, nested as PocketBase nests them."""

    def __init__(self, items: dict[str, Any]) -> None:
        super().__init__("validation_invalid_value", "Invalid items.")
        self.items = items

    def to_dict(self) -> dict[str, Any]:
        return self.items


def _loading() -> FieldError:
    return FieldError("validation_invalid_value", "Must be a list of rule objects.")


def _int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _loading()
    return value


def decode_rules(raw: Any) -> list[dict[str, Any]]:
    """Submitted (or stored) rules as PocketBase reads them: a list of objects whose known
    keys have the right types (missing ones are zero values); FieldError otherwise."""
    if not isinstance(raw, list):
        raise _loading()
    out = []
    for item in raw:
        if not isinstance(item, dict):
            raise _loading()
        label, audience = item.get("label", ""), item.get("audience", "")
        if not isinstance(label, str) or not isinstance(audience, str):
            raise _loading()
        duration, most = _int(item.get("duration", 0)), _int(item.get("maxRequests", 0))
        out.append(
            {"label": label, "audience": audience, "duration": duration, "maxRequests": most}
        )
    return out


def _required() -> dict[str, str]:
    return {"code": "validation_required", "message": "Cannot be blank."}


def _rule_errors(doc: dict[str, Any]) -> dict[str, Any]:
    errors: dict[str, Any] = {}
    if not doc["label"]:
        errors["label"] = _required()
    elif not LABEL_RE.match(doc["label"]):
        errors["label"] = {
            "code": "validation_match_invalid",
            "message": "Must be in a valid format.",
        }
    for name in ("maxRequests", "duration"):
        if doc[name] == 0:
            errors[name] = _required()
        elif doc[name] < 1:
            errors[name] = {
                "code": "validation_min_greater_equal_than_required",
                "message": "Must be no less than 1.",
                "params": {"threshold": 1},
            }
    if doc["audience"] not in AUDIENCES:
        errors["audience"] = {"code": "validation_in_invalid", "message": "Must be a valid value."}
    return errors


def rules_problem(rules: Sequence[dict[str, Any]]) -> FieldError | None:
    """PocketBase's checks: each rule's fields, then labels that conflict (the same label
    and audience, or the same label for everyone and for one audience)."""
    errors = {str(i): e for i, doc in enumerate(rules) if (e := _rule_errors(doc))}
    if errors:
        return ItemErrors(errors)
    seen: list[str] = []
    for i, doc in enumerate(rules):
        key = doc["label"] + "@@" + doc["audience"]
        if any(key.startswith(k) or k.startswith(key) for k in seen):
            message = (
                f"Rate limit rule configuration with label {doc['label']} already exists or "
                "conflicts with another rule."
            )
            conflict = {
                "code": "validation_conflicting_rate_limit_rule",
                "message": message,
                "params": {"label": doc["label"]},
            }
            return ItemErrors({str(i): {"label": conflict}})
        seen.append(key)
    return None


def parse_rules(text: str) -> list[dict[str, Any]]:
    """SHIPYARD_RATELIMIT_RULES (a JSON list; empty: the defaults), checked; ValueError
    saying what is wrong."""
    import orjson

    if not text.strip():
        return [dict(r) for r in DEFAULT_RULES]
    try:
        rules = decode_rules(orjson.loads(text))
    except (orjson.JSONDecodeError, FieldError):
        raise ValueError(
            'expected a JSON list of {"label", "audience", "duration", "maxRequests"} objects'
        ) from None
    problem = rules_problem(rules)
    if problem is not None:
        raise ValueError(f"{problem.to_dict()}")
    return rules


# ------------------------------------------------------------------ matching


def request_actions(method: str, path: str) -> tuple[str, Sequence[str]]:
    """The collection (as the path names it: id or name) and the actions of a request of
    the records or auth API; ("", ()) for any other."""
    if path.startswith(_COLLECTIONS):
        parts = path[len(_COLLECTIONS) :].split("/")
        if len(parts) in (2, 3) and parts[1] == "records":
            return parts[0], _RECORD_ACTIONS.get((len(parts), method), ())
        if len(parts) == 2:
            return parts[0], _AUTH_ACTIONS.get((parts[1], method), ())
    elif path.startswith(_FILES) and method == "GET" and path.count("/") == 5:
        return path[len(_FILES) :].split("/", 1)[0], ("file",)
    return "", ()


def request_labels(
    method: str, path: str, collection_name: Callable[[str], str]
) -> tuple[str | None, list[str]]:
    """The request's collection (its name, as `collection_name(segment)` finds it) and its
    labels, most specific first, as PocketBase builds them."""
    segment, actions = request_actions(method, path)
    own = [method + " " + path, path]
    if not actions or not segment:
        return None, own
    name = collection_name(segment)
    return name, [*(f"{name}:{a}" for a in actions), *(f"*:{a}" for a in actions), *own]


class Rules:
    """Compiled rules: exact labels in a dict, prefix labels (ending with `/`) in a list."""

    def __init__(self, docs: Sequence[dict[str, Any]]) -> None:
        self.rules = [rule_of(d) for d in docs]
        self.exact: dict[str, list[Rule]] = {}
        self.prefix: list[Rule] = []
        for rule in self.rules:
            self.exact.setdefault(rule.label, []).append(rule)
            if rule.label.endswith("/"):
                self.prefix.append(rule)
        # the actions some rule names (`posts:create`, `*:auth`)
        self.actions = {r.label.split(":", 1)[1] for r in self.rules if ":" in r.label}
        # whether any rule tells guests from users (else who asks does not pick the rule)
        self.by_audience = any(r.audience for r in self.rules)

    def __bool__(self) -> bool:
        return bool(self.rules)

    def find(self, labels: Sequence[str], audience: str | None) -> Rule | None:
        """The first rule for `labels` among those for `audience` ("@guest" / "@auth"), or
        among all when None: PocketBase's FindRateLimitRule."""
        for label in labels:
            for rule in self.exact.get(label, ()):
                if audience is None or rule.audience in ("", audience):
                    return rule
            if label[0] == "/" or " " in label:  # only paths can fall under a prefix
                found = self._prefix(label, audience)
                if found is not None:
                    return found
        return None

    def match(
        self, method: str, path: str, collection_name: Callable[[str], str], audience: str | None
    ) -> tuple[Rule | None, str | None]:
        """`find(request_labels(...))` and the collection's name, without making labels no
        rule has: what every request pays (tests check that both agree)."""
        if self.actions:
            segment, actions = request_actions(method, path)
            if segment and not self.actions.isdisjoint(actions):
                name = collection_name(segment)
                for owner in (name, "*"):
                    for action in actions:
                        for rule in self.exact.get(f"{owner}:{action}", ()):
                            if audience is None or rule.audience in ("", audience):
                                return rule, name
        exact = self.exact
        for label in (method + " " + path, path):
            for rule in exact.get(label, ()):
                if audience is None or rule.audience in ("", audience):
                    return rule, None
            found = self._prefix(label, audience) if self.prefix else None
            if found is not None:
                return found, None
        return None, None

    def _prefix(self, label: str, audience: str | None) -> Rule | None:
        covered = label + "/"
        for rule in self.prefix:
            if covered.startswith(rule.label) and (
                audience is None or rule.audience in ("", audience)
            ):
                return rule
        return None
