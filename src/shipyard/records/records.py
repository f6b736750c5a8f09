"""Records: list, view, create, update and delete with PocketBase's semantics.

Reads decode rows straight into response dicts (JSON columns pass through as
`orjson.Fragment`, never parsed); writes validate every field, then run in one
transaction so a failed rule check or constraint leaves nothing behind.
"""

from __future__ import annotations

import base64
import math
import re
import secrets
from collections.abc import Awaitable, Callable, Hashable, Iterable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Protocol

import orjson

from shipyard.kernel.errors import (
    ApiError,
    FieldError,
    bad_request,
    forbidden,
    not_found,
    validation_failed,
)
from shipyard.kernel.params import parse_int
from shipyard.records import authids, passwords, query
from shipyard.records.auth import Auth
from shipyard.records.collections import Collection
from shipyard.records.fields import (
    AutodateField,
    Field,
    PasswordField,
    RelationField,
    TextField,
    new_record_id,
    now_str,
)
from shipyard.records.passwords import PasswordHashing
from shipyard.records.schema import SchemaStore
from shipyard.settings import Settings
from shipyard.tools.db import ConstraintKind, Executor, IntegrityError

if TYPE_CHECKING:
    from shipyard.records.events import RecordEvents


class TotalsCache(Protocol):
    """Where list totals may be kept between writes (the response cache implements it)."""

    async def count(
        self,
        c: Collection,
        auth: Auth,
        filt: str,
        key: Hashable,
        compute: Callable[[], Awaitable[int]],
    ) -> int: ...


ID_RE = re.compile(r"^[a-z0-9]{15}$")
CLIENT_ID_RE = re.compile(r"^[a-zA-Z0-9_]{1,100}$")
_EXPAND_PART = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
MAX_BACK_RELATION_EXPAND = 1000
MAX_PAGE = 2**31 - 1  # keeps OFFSET inside a 64-bit integer on both engines
ONLY_SUPERUSERS = "Only superusers can perform this action."
_METHODS = {"list": "GET", "view": "GET", "create": "POST", "update": "PATCH", "delete": "DELETE"}
# PocketBase's answer to an auth record id that an account of another auth collection has
_SHARED_ID = {
    "id": FieldError("validation_invalid_auth_id", "Invalid or duplicated auth record id.")
}


# ---------------------------------------------------------------------- storage codecs


def encode_stored(f: Field, value: Any) -> Any:
    if f.storage == "json":
        return orjson.dumps(value).decode()
    if f.storage == "bool":
        return bool(value)
    if f.storage == "number":
        return float(value or 0)
    return "" if value is None else str(value)


def decode_stored(f: Field, raw: Any) -> Any:
    if f.storage == "json":
        try:
            return orjson.loads(raw) if raw not in (None, "") else f.zero()
        except orjson.JSONDecodeError:
            return f.zero()
    if f.storage == "bool":
        return bool(raw)
    if f.storage == "number":
        return float(raw or 0)
    return "" if raw is None else raw


def _json_out(f: Field) -> Any:
    if f.storage == "json":
        zero = f.zero()

        def out_json(raw: Any) -> Any:
            return orjson.loads(raw) if raw else zero

        return out_json
    if f.storage == "bool":
        return bool
    if f.storage == "number":
        return f.to_json
    return None  # text: as stored


@dataclass
class Shape:
    """How to select and decode one collection's rows for one audience; cached per schema."""

    columns: str
    names: list[str]
    decoders: list[Any]
    fields: list[Field]


_shapes: dict[tuple[int, str, bool | str], Shape] = {}


def shape(store: SchemaStore, c: Collection, superuser: bool | str) -> Shape:
    """Columns for an audience: False (public), True (superusers) or "internal" (auth checks,
    which also need the tokenKey that no response ever carries)."""
    key = (store.version, c.id, superuser)
    got = _shapes.get(key)
    if got is None:
        visible = [
            f
            for f in c.fields
            if not isinstance(f, PasswordField)
            and (superuser or not f.hidden)
            and (superuser == "internal" or not (c.type == "auth" and f.name == "tokenKey"))
        ]
        got = Shape(
            columns=", ".join(f'"_r"."{f.name}"' for f in visible),
            names=[f.name for f in visible],
            decoders=[_json_out(f) for f in visible],
            fields=visible,
        )
        if len(_shapes) > 2048:
            _shapes.clear()
        _shapes[key] = got
    return got


def decode_row(c: Collection, sh: Shape, row: tuple[Any, ...]) -> dict[str, Any]:
    rec: dict[str, Any] = {"collectionId": c.id, "collectionName": c.name}
    for name, dec, raw in zip(sh.names, sh.decoders, row, strict=False):
        rec[name] = raw if dec is None else dec(raw)
    return rec


def hide_emails(
    c: Collection, items: list[dict[str, Any]], auth: Auth, managed: frozenset[str] = frozenset()
) -> None:
    """Auth records show `email` only to superusers, to their owner, to those with manage
    access (`managed` ids), or when the owner made it visible (`emailVisibility`), as
    PocketBase does."""
    if c.type != "auth" or auth.is_superuser:
        return
    own = auth.id if auth.collection is not None and auth.collection.id == c.id else None
    for rec in items:
        rid = rec.get("id")
        if not rec.get("emailVisibility") and rid != own and rid not in managed:
            rec.pop("email", None)


# ---------------------------------------------------------------------- request parameters


def _int_param(params: dict[str, str], name: str, default: int) -> int:
    """A 64-bit integer, as PocketBase takes it (the caller clamps it to what it serves)."""
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    return parse_int(raw, f"{name} parameter")


def _cursor_value(value: Any, kind: str) -> Any:
    """A cursor position as the column holds it (a cursor is the client's to forge: a value of
    another type or out of range must be a 400, not a type error in the database)."""
    if kind == "text" and isinstance(value, str):
        return value
    if kind == "bool" and (isinstance(value, bool) or value in (0, 1)):
        return bool(value)
    if isinstance(value, bool):
        raise ValueError(value)
    if kind == "number" and isinstance(value, (int, float)) and math.isfinite(value):
        return float(value)
    if kind == "rowid" and isinstance(value, int) and 0 <= value < 2**63:
        return value
    raise ValueError(value)


def _truthy(raw: str | None) -> bool:
    return (raw or "").lower() in ("1", "true", "t", "yes")


def parse_expand(text: str, max_depth: int) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for path in text.split(","):
        path = path.strip()
        if not path:
            continue
        parts = path.split(".")
        if len(parts) > max_depth:
            raise bad_request(
                f"Invalid expand {path!r}: at most {max_depth} levels of relations can be expanded."
            )
        node = tree
        for part in parts:
            if not _EXPAND_PART.match(part):
                raise bad_request(f"Invalid expand {path!r}: {part!r} is not a field name.")
            node = node.setdefault(part, {})
    return tree


# `@request.headers.*` of the request being served. A context variable because every API
# entry point (the read gateway and the Starlette routes) sets it once, while the rules that
# read it are compiled deep inside nested expands; each asyncio task has its own copy.
REQUEST_HEADERS: ContextVar[Mapping[str, str]] = ContextVar(
    "REQUEST_HEADERS", default=MappingProxyType({})
)


def rule_headers(raw: Iterable[tuple[bytes, bytes]]) -> dict[str, str]:
    """Header names as rules see them (PocketBase): lower case, `-` as `_`; first value wins."""
    out: dict[str, str] = {}
    for k, v in raw:
        out.setdefault(k.decode("latin-1").lower().replace("-", "_"), v.decode("latin-1"))
    return out


class Records:
    def __init__(
        self,
        store: SchemaStore,
        db: Executor,
        settings: Settings,
        *,
        totals: TotalsCache | None = None,
        events: RecordEvents | None = None,
        passwords: PasswordHashing | None = None,
    ) -> None:
        self.store = store
        self.db = db
        self.settings = settings
        self._filter_limits = query.FilterLimits(
            max_length=settings.max_filter_length,
            max_expressions=settings.max_filter_expressions,
            max_relation_depth=settings.max_expand_depth,
            max_collection_joins=settings.max_filter_collection_joins,
            max_back_relations=settings.max_filter_back_relations,
        )
        self.passwords = passwords or PasswordHashing(settings.password_hash_concurrency)
        self.cache = totals  # keeps list totals between writes
        self.events = events  # the record-event bus (records/events.py)
        # insertion order: the default sort and every sort's tie-breaker
        self._rowid = '"_r"."_rowid"' if store.dialect == "postgres" else '"_r".rowid'

    # ------------------------------------------------------------------ access rules

    def _request_info(
        self,
        auth: Auth,
        params: dict[str, str] | None = None,
        body: dict[str, Any] | None = None,
        method: str = "GET",
    ) -> dict[str, Any]:
        """What `@request.*` resolves to in rules and filters."""
        return {
            "auth": (
                {
                    **auth.record,
                    "collectionId": auth.collection.id,
                    "collectionName": auth.collection.name,
                }
                if auth.collection
                else {}
            ),
            "query": params or {},
            "headers": REQUEST_HEADERS.get(),
            "body": body or {},
            "method": method,
        }

    def _rule_sql(
        self,
        c: Collection,
        action: str,
        auth: Auth,
        params: dict[str, str] | None = None,
        body: dict[str, Any] | None = None,
    ) -> tuple[str, list[Any]] | None:
        """The SQL condition a rule adds; None when no condition applies (superuser or "")."""
        if auth.is_superuser:
            return None
        rule = c.rule(action)
        if rule is None:
            raise forbidden(ONLY_SUPERUSERS)
        if rule.strip() == "":
            return None
        return query.compile_filter(
            rule,
            c,
            self.store,
            self.store.dialect,
            request=self._request_info(auth, params, body, _METHODS[action]),
            limits=None,
            allow_hidden=True,
        )

    async def _managed(
        self,
        c: Collection,
        ids: list[str],
        auth: Auth,
        params: dict[str, str],
        body: dict[str, Any] | None = None,
        db: Executor | None = None,
    ) -> frozenset[str]:
        """Which of `ids` the requester manages by the auth collection's manageRule
        (PocketBase: lets e.g. an admin role see and change others' e-mail, password and
        verified state)."""
        manage = c.options.get("manageRule") if c.type == "auth" else None
        if not ids or not isinstance(manage, str) or not manage.strip() or auth.collection is None:
            return frozenset()
        rule = query.compile_filter(
            manage,
            c,
            self.store,
            self.store.dialect,
            request=self._request_info(auth, params, body, "GET" if body is None else "PATCH"),
            allow_hidden=True,
        )
        marks = ", ".join("?" for _ in ids)
        rows = await (db or self.db).fetchall(
            f'SELECT "_r"."id" FROM "{c.table}" AS "_r" WHERE "_r"."id" IN ({marks}) '
            f"AND ({rule[0]})",
            [*ids, *rule[1]],
        )
        return frozenset(str(r[0]) for r in rows)

    async def _manages(
        self,
        c: Collection,
        rid: str,
        auth: Auth,
        params: dict[str, str],
        body: dict[str, Any],
        db: Executor,
    ) -> bool:
        if auth.is_superuser:
            return True
        return rid in await self._managed(c, [rid], auth, params, body, db)

    # ------------------------------------------------------------------ reading

    async def list_page(self, c: Collection, params: dict[str, str], auth: Auth) -> dict[str, Any]:
        s = self.settings
        page = min(max(_int_param(params, "page", 1), 1), MAX_PAGE)
        per_page = _int_param(params, "perPage", s.default_per_page)
        if per_page <= 0:
            per_page = s.default_per_page
        per_page = min(per_page, s.max_per_page)
        skip_total = _truthy(params.get("skipTotal"))

        where: list[str] = []
        args: list[Any] = []
        rule = self._rule_sql(c, "list", auth, params)
        if rule is not None:
            where.append(f"({rule[0]})")
            args += rule[1]
        filt = params.get("filter", "")
        if filt.strip():
            sql, fargs = query.compile_filter(
                filt,
                c,
                self.store,
                self.store.dialect,
                request=self._request_info(auth, params),
                limits=self._filter_limits,
                allow_hidden=auth.is_superuser,
            )
            where.append(f"({sql})")
            args += fargs
        where_sql = (" WHERE " + " AND ".join(where)) if where else ""

        if "cursor" in params:
            return await self._cursor_page(c, params, auth, where, args, per_page)

        sorts = query.parse_sort(params.get("sort", ""), s.max_sort_fields)
        order = query.compile_sort(
            sorts, c, self.store, self.store.dialect, allow_hidden=auth.is_superuser
        )
        # the insertion-order tie-breaker follows the last key's direction, which lets SQLite
        # walk an index backwards instead of adding a sort step
        last_desc = bool(sorts) and sorts[-1].descending
        order_sql = (
            f" ORDER BY {order + ', ' if order else ''}{self._rowid}{' DESC' if last_desc else ''}"
        )
        if query.is_random(sorts):
            order_sql = f" ORDER BY {order}"

        sh = shape(self.store, c, auth.is_superuser)
        offset = (page - 1) * per_page
        fetch = per_page + 1 if skip_total else per_page
        rows = await self.db.fetchall(
            f'SELECT {sh.columns} FROM "{c.table}" AS "_r"{where_sql}{order_sql} LIMIT ? OFFSET ?',
            (*args, fetch, offset),
        )
        if skip_total:
            total, pages = -1, -1
            rows = rows[:per_page]
        elif page == 1 and len(rows) < per_page:
            total = len(rows)
            pages = 1 if total else 0
        else:
            count_sql = f'SELECT COUNT(*) FROM "{c.table}" AS "_r"{where_sql}'

            async def count() -> int:
                row = await self.db.fetchone(count_sql, args)
                return int(row[0]) if row else 0

            if self.cache is None:
                total = await count()
            else:
                total = await self.cache.count(c, auth, filt, (count_sql, *args), count)
            pages = math.ceil(total / per_page) if per_page else 0
        items = [decode_row(c, sh, r) for r in rows]
        await self._expand_and_project(c, items, params, auth)
        return {
            "items": items,
            "page": page,
            "perPage": per_page,
            "totalItems": total,
            "totalPages": pages,
        }

    async def _cursor_page(
        self,
        c: Collection,
        params: dict[str, str],
        auth: Auth,
        where: list[str],
        args: list[Any],
        per_page: int,
    ) -> dict[str, Any]:
        """Keyset pagination (a Shipyard extension): `?cursor=` starts, each page returns
        `nextCursor` (null on the last page). Cost per page stays flat however deep, because
        the database seeks to the last row seen instead of counting past OFFSET rows.
        Sorting is limited to the collection's own fields; totals are not computed."""
        sort_text = params.get("sort", "")
        keys = query.parse_sort(sort_text, self.settings.max_sort_fields)
        cols: list[tuple[str, bool]] = []
        kinds: list[str] = []  # what each position holds, to check a cursor's values
        for name, desc, kind, _ in keys:
            f = c.field(name) if kind is query.SortKind.FIELD else None
            hidden = f is not None and (f.hidden or (c.type == "auth" and name == "email"))
            if f is None or f.type == "password" or (hidden and not auth.is_superuser):
                raise bad_request(
                    f"Invalid sort for cursor pagination: {name!r} — only the collection's "
                    "own visible fields can be used."
                )
            cols.append((f'"_r"."{name}"', desc))
            kinds.append(f.storage)
        last_desc = cols[-1][1] if cols else False
        cols.append((self._rowid, last_desc))  # the tie-breaker makes every position unique
        kinds.append("rowid")
        cursor = params["cursor"]
        if cursor:
            try:
                signed, values = orjson.loads(base64.urlsafe_b64decode(cursor + "=="))
                if signed != sort_text or len(values) != len(cols):
                    raise ValueError(cursor)
                values = [_cursor_value(v, k) for v, k in zip(values, kinds, strict=True)]
            except (ValueError, TypeError, orjson.JSONDecodeError):
                raise bad_request(
                    "Invalid cursor: pass back the nextCursor of the previous page with the "
                    "same sort."
                ) from None
            ors: list[str] = []
            for i, (col, desc) in enumerate(cols):
                eqs = [f"{cols[j][0]} = ?" for j in range(i)]
                ors.append("(" + " AND ".join([*eqs, f"{col} {'<' if desc else '>'} ?"]) + ")")
                args = [*args, *values[:i], values[i]]
            where = [*where, "(" + " OR ".join(ors) + ")"]
        where_sql = (" WHERE " + " AND ".join(where)) if where else ""
        order_sql = ", ".join(f"{col}{' DESC' if desc else ''}" for col, desc in cols)
        sh = shape(self.store, c, auth.is_superuser)
        extra = ", ".join(col for col, _ in cols)
        rows = await self.db.fetchall(
            f'SELECT {sh.columns}, {extra} FROM "{c.table}" AS "_r"{where_sql} '
            f"ORDER BY {order_sql} LIMIT ?",
            (*args, per_page + 1),
        )
        more = len(rows) > per_page
        rows = rows[:per_page]
        n = len(cols)
        next_cursor = None
        if more and rows:
            last = [v if not isinstance(v, bool) else bool(v) for v in rows[-1][-n:]]
            next_cursor = (
                base64.urlsafe_b64encode(orjson.dumps([sort_text, last])).decode().rstrip("=")
            )
        items = [decode_row(c, sh, r[:-n]) for r in rows]
        await self._expand_and_project(c, items, params, auth)
        return {
            "items": items,
            "page": 1,
            "perPage": per_page,
            "totalItems": -1,
            "totalPages": -1,
            "nextCursor": next_cursor,
        }

    async def view(
        self, c: Collection, rid: str, params: dict[str, str], auth: Auth
    ) -> dict[str, Any]:
        rule = self._rule_sql(c, "view", auth, params)
        rec = await self._fetch_one(c, rid, auth, rule)
        if rec is None:
            raise not_found()
        items = [rec]
        await self._expand_and_project(c, items, params, auth)
        return items[0]

    async def _fetch_one(
        self,
        c: Collection,
        rid: str,
        auth: Auth,
        rule: tuple[str, list[Any]] | None,
        db: Executor | None = None,
        superuser_shape: bool | str | None = None,
    ) -> dict[str, Any] | None:
        sh = shape(self.store, c, auth.is_superuser if superuser_shape is None else superuser_shape)
        sql = f'SELECT {sh.columns} FROM "{c.table}" AS "_r" WHERE "_r"."id" = ?'
        args: list[Any] = [rid]
        if rule is not None:
            sql += f" AND ({rule[0]})"
            args += rule[1]
        row = await (db or self.db).fetchone(sql, args)
        return decode_row(c, sh, row) if row else None

    async def _expand_and_project(
        self, c: Collection, items: list[dict[str, Any]], params: dict[str, str], auth: Auth
    ) -> None:
        managed = frozenset[str]()
        if c.type == "auth" and not auth.is_superuser and items:
            hidden = [i["id"] for i in items if not i.get("emailVisibility") and i["id"] != auth.id]
            managed = await self._managed(c, hidden, auth, params)
        hide_emails(c, items, auth, managed)
        expand = params.get("expand", "")
        if expand.strip() and items:
            tree = parse_expand(expand, self.settings.max_expand_depth)
            await self._expand(c, items, tree, auth, params)
        fields = params.get("fields", "")
        if fields.strip():
            from shipyard.records.projection import project

            spec = fields
            for i, item in enumerate(items):
                items[i] = project(item, spec)

    async def _expand(
        self,
        c: Collection,
        items: list[dict[str, Any]],
        tree: dict[str, Any],
        auth: Auth,
        params: dict[str, str],
    ) -> None:
        for key, subtree in tree.items():
            f = c.field(key)
            if isinstance(f, RelationField):
                await self._expand_forward(f, items, key, subtree, auth, params)
            elif "_via_" in key:
                await self._expand_back(c, items, key, subtree, auth, params)
            else:
                raise bad_request(f"Invalid expand: {key!r} is not a relation field of {c.name!r}.")

    def _expand_rule(
        self, target: Collection, auth: Auth, params: dict[str, str]
    ) -> tuple[str, list[Any]] | bool | None:
        """The view rule for expanded records; False when they may not be seen at all."""
        try:
            return self._rule_sql(target, "view", auth, params)
        except ApiError:
            return False

    async def _expand_forward(
        self,
        f: RelationField,
        items: list[dict[str, Any]],
        key: str,
        subtree: dict[str, Any],
        auth: Auth,
        params: dict[str, str],
    ) -> None:
        target = self.store.get(str(f.options.get("collectionId")))
        if target is None:
            return
        ids: list[str] = []
        per_item: list[list[str]] = []
        for item in items:
            raw = item.get(key)
            got = raw if isinstance(raw, list) else ([raw] if raw else [])
            per_item.append(got)
            ids += got
        rule = self._expand_rule(target, auth, params)
        if rule is False or not ids:
            return
        found = await self._fetch_many(
            target, list(dict.fromkeys(ids)), auth, rule if isinstance(rule, tuple) else None
        )
        if subtree and found:
            await self._expand(target, list(found.values()), subtree, auth, params)
        for item, got in zip(items, per_item, strict=True):
            recs = [found[i] for i in got if i in found]
            if not recs:
                continue
            exp: dict[str, Any] = item.setdefault("expand", {})
            exp[key] = recs if f.is_multi else recs[0]

    async def _fetch_many(
        self,
        c: Collection,
        ids: list[str],
        auth: Auth,
        rule: tuple[str, list[Any]] | None,
    ) -> dict[str, dict[str, Any]]:
        sh = shape(self.store, c, auth.is_superuser)
        out: dict[str, dict[str, Any]] = {}
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ", ".join("?" for _ in chunk)
            sql = f'SELECT {sh.columns} FROM "{c.table}" AS "_r" WHERE "_r"."id" IN ({marks})'
            args: list[Any] = list(chunk)
            if rule is not None:
                sql += f" AND ({rule[0]})"
                args += rule[1]
            for row in await self.db.fetchall(sql, args):
                rec = decode_row(c, sh, row)
                out[rec["id"]] = rec
        hide_emails(c, list(out.values()), auth)
        return out

    async def _expand_back(
        self,
        c: Collection,
        items: list[dict[str, Any]],
        key: str,
        subtree: dict[str, Any],
        auth: Auth,
        params: dict[str, str],
    ) -> None:
        coll_name, _, field_name = key.partition("_via_")
        target = self.store.get(coll_name)
        rel = target.field(field_name) if target else None
        if (
            target is None
            or not isinstance(rel, RelationField)
            or rel.options.get("collectionId") != c.id
        ):
            raise bad_request(f"Invalid expand: {key!r} is not a back-relation of {c.name!r}.")
        rule = self._expand_rule(target, auth, params)
        if rule is False:
            return
        ids = [item["id"] for item in items]
        marks = ", ".join("?" for _ in ids)
        col = f'"_r"."{rel.name}"'
        if rel.is_multi:
            each = (
                f"jsonb_array_elements_text({col}::jsonb)"
                if self.store.dialect == "postgres"
                else f"json_each({col})"
            )
            val = "je" if self.store.dialect == "postgres" else "je.value"
            cond = f"EXISTS (SELECT 1 FROM {each} AS je WHERE {val} IN ({marks}))"
        else:
            cond = f"{col} IN ({marks})"
        sh = shape(self.store, target, auth.is_superuser)
        sql = f'SELECT {sh.columns} FROM "{target.table}" AS "_r" WHERE {cond}'
        args: list[Any] = list(ids)
        if isinstance(rule, tuple):
            sql += f" AND ({rule[0]})"
            args += rule[1]
        sql += f" ORDER BY {self._rowid} LIMIT {MAX_BACK_RELATION_EXPAND}"
        found = [decode_row(target, sh, r) for r in await self.db.fetchall(sql, args)]
        hide_emails(target, found, auth)
        if subtree and found:
            await self._expand(target, found, subtree, auth, params)
        for item in items:
            matches = []
            for rec in found:
                raw = rec.get(rel.name)
                vals = raw
                if (isinstance(vals, list) and item["id"] in vals) or vals == item["id"]:
                    matches.append(rec)
            if matches:
                item.setdefault("expand", {})[key] = matches

    # ------------------------------------------------------------------ writing

    def _prepare(
        self,
        c: Collection,
        body: dict[str, Any],
        old: dict[str, Any] | None,
        auth: Auth,
        privileged: bool | None = None,
    ) -> tuple[dict[str, Any], dict[str, FieldError]]:
        """Values for every field the write sets (all of them on create), and the errors of
        those that failed, so that all of a body's problems are reported together.
        `privileged` (superuser, or manage access to an auth record) may set `verified`,
        change `email` and set a password without the old one."""
        if privileged is None:
            privileged = auth.is_superuser
        creating = old is None
        values: dict[str, Any] = {}
        errors: dict[str, FieldError] = {}
        now = now_str()
        body = _apply_modifiers(c, body, old)
        for f in c.data_fields:
            if isinstance(f, AutodateField):
                if (creating and f.options.get("onCreate")) or f.options.get("onUpdate"):
                    values[f.name] = now
                elif creating:
                    values[f.name] = ""
                continue
            if isinstance(f, PasswordField):
                self._prepare_password(
                    f, body, creating, values, errors, old, privileged=privileged
                )
                continue
            if (
                c.type == "auth"
                and not privileged
                and f.name in ("verified", "email")
                and not self._may_set_protected(f, body, old, values, errors)
            ):
                continue
            if f.system and f.hidden and f.name == "tokenKey":
                if creating or "password" in values:
                    values[f.name] = secrets.token_urlsafe(38)[:50]
                continue
            if f.name in body:
                try:
                    value = f.normalize(_coerce_multipart(f, body[f.name]))
                    f.validate(value)
                except FieldError as err:
                    errors[f.name] = err
                    continue
                values[f.name] = value
            elif creating:
                value = _autogenerate(f) if isinstance(f, TextField) else f.zero()
                try:
                    f.validate(value)
                except FieldError as err:
                    errors[f.name] = err
                    continue
                values[f.name] = value
        if (
            not creating
            and c.type == "auth"
            and "email" in values
            and values["email"] != (old or {}).get("email")
        ):
            values["tokenKey"] = secrets.token_urlsafe(38)[:50]  # as PocketBase: sessions end
        if creating:
            rid = body.get("id")
            if rid not in (None, ""):
                if not isinstance(rid, str) or not CLIENT_ID_RE.match(rid):
                    errors["id"] = FieldError(
                        "validation_invalid_format",
                        "Must be 1-100 characters of letters, digits and _.",
                    )
                else:
                    values["id"] = rid
            else:
                values["id"] = new_record_id()
        elif "id" in body and body["id"] != old["id"]:  # type: ignore[index]
            errors["id"] = FieldError(
                "validation_pk_change", "The record primary key cannot be changed."
            )
        return values, errors

    def _prepare_password(
        self,
        f: PasswordField,
        body: dict[str, Any],
        creating: bool,
        values: dict[str, Any],
        errors: dict[str, FieldError],
        old: dict[str, Any] | None = None,
        privileged: bool = True,
    ) -> None:
        """PocketBase's rules: a confirmation always, and the old password when someone
        without manage access changes their own."""
        pw = body.get(f.name)
        if pw in (None, "") and not creating:
            return
        if not isinstance(pw, str) or pw == "":
            errors[f.name] = FieldError("validation_required", "Cannot be blank.")
            return
        lo, hi = int(f.options.get("min") or 8), int(f.options.get("max") or 71)
        if len(pw) < lo:
            errors[f.name] = FieldError(
                "validation_min_text_constraint", f"Must be at least {lo} character(s)."
            )
            return
        if len(pw.encode()) > hi:
            errors[f.name] = FieldError(
                "validation_max_text_constraint", f"Must be no more than {hi} character(s)."
            )
            return
        if body.get("passwordConfirm") in (None, ""):
            errors["passwordConfirm"] = FieldError("validation_required", "Cannot be blank.")
            return
        if body["passwordConfirm"] != pw:
            errors["passwordConfirm"] = FieldError(
                "validation_values_mismatch", "Values don't match."
            )
            return
        given, check_old = body.get("oldPassword"), not creating and not privileged
        values[f.name] = passwords.NewPassword(  # hashed off the event loop by hash_new_passwords
            pw,
            str((old or {}).get(f.name) or "") if check_old else None,
            given if isinstance(given, str) else "",
        )

    def _may_set_protected(
        self,
        f: Field,
        body: dict[str, Any],
        old: dict[str, Any] | None,
        values: dict[str, Any],
        errors: dict[str, FieldError],
    ) -> bool:
        """Without manage access, `verified` keeps its value and `email` is set only on
        sign-up (changing it goes through the confirmed e-mail change flow)."""
        if f.name not in body:
            return True
        if f.name == "email" and old is None:
            return True
        try:
            wanted = f.normalize(body[f.name])
        except FieldError as err:
            errors[f.name] = err
            return False
        current = (old or {}).get(f.name, f.zero())
        if wanted != current:
            errors[f.name] = FieldError("validation_values_mismatch", "Values don't match.")
            return False
        return True

    async def _check_relations(
        self,
        c: Collection,
        values: dict[str, Any],
        db: Executor,
        errors: dict[str, FieldError],
        action: str,
    ) -> None:
        """Add missing relation targets to `errors`, then raise if anything failed."""
        for f in c.relation_fields():
            if f.name not in values or f.name in errors:
                continue
            ids = values[f.name] if isinstance(values[f.name], list) else [values[f.name]]
            ids = [i for i in ids if i]
            if not ids:
                continue
            target = self.store.get(str(f.options.get("collectionId")))
            if target is None:
                errors[f.name] = FieldError(
                    "validation_missing_rel_collection",
                    "Relation connection is missing or cannot be accessed",
                )
                continue
            marks = ", ".join("?" for _ in ids)
            row = await db.fetchone(
                f'SELECT COUNT(*) FROM "{target.table}" WHERE "id" IN ({marks})', ids
            )
            if not row or int(row[0]) != len(ids):
                errors[f.name] = FieldError(
                    "validation_missing_rel_records",
                    "Failed to find all relation records with the provided ids",
                )
        if errors:
            raise validation_failed(f"Failed to {action} record.", errors)

    def _unique_error(self, c: Collection, exc: IntegrityError, action: str) -> ApiError:
        fields: list[str] = []
        if exc.kind is ConstraintKind.UNIQUE:
            for idef in c.index_defs():
                cols = [col for col, _, _ in idef.columns]
                if idef.unique and (
                    exc.constraint == idef.name
                    or (exc.table == c.table and set(exc.columns) == set(cols))
                ):
                    fields = cols
                    break
            if not fields and exc.table == c.table and exc.columns == ("id",):
                fields = ["id"]  # the primary key
        if not fields:
            return bad_request(f"Failed to {action} record: a constraint rejected the values.")
        err = FieldError("validation_not_unique", "Value must be unique.")
        return validation_failed(f"Failed to {action} record.", {f: err for f in fields})

    async def create(
        self, c: Collection, body: dict[str, Any], auth: Auth, params: dict[str, str]
    ) -> dict[str, Any]:
        if not auth.is_superuser and c.createRule is None:
            raise forbidden(ONLY_SUPERUSERS)
        values, errors = self._prepare(c, body, None, auth)
        # Protected fields refused only for lack of manage access: retry privileged, then
        # insist on the manageRule against the new record inside the transaction.
        refused = errors
        needs_manage = (
            c.type == "auth"
            and not auth.is_superuser
            and bool((c.options.get("manageRule") or "").strip())
            and any(k in errors for k in ("verified", "email"))
        )
        if needs_manage:
            values, errors = self._prepare(c, body, None, auth, privileged=True)
        await passwords.hash_new_passwords(self.passwords, values, errors, None)
        cols = list(values)
        fields = {f.name: f for f in c.fields}
        row = [encode_stored(fields[k], values[k]) if k != "id" else values[k] for k in cols]
        async with self.store.db.transaction() as tx:
            await self._check_relations(c, values, tx, errors, "create")
            try:
                await tx.execute(
                    f'INSERT INTO "{c.table}" ({", ".join(f"{chr(34)}{k}{chr(34)}" for k in cols)}) '
                    f"VALUES ({', '.join('?' for _ in cols)})",
                    row,
                )
            except IntegrityError as exc:
                if c.type == "auth" and authids.is_conflict(exc):
                    # another auth collection's account has this id (core/authids.py)
                    raise validation_failed("Failed to create record.", _SHARED_ID) from exc
                raise self._unique_error(c, exc, "create") from exc
            if needs_manage and not await self._manages(c, values["id"], auth, params, body, tx):
                raise validation_failed("Failed to create record.", refused)
            if not auth.is_superuser and (c.createRule or "").strip():
                rule = self._rule_sql(c, "create", auth, params, _apply_modifiers(c, body, None))
                ok = await self._fetch_one(c, values["id"], auth, rule, db=tx)
                if ok is None:
                    raise bad_request("Failed to create record.")
            await self._emit(tx, c, "create", values["id"], None, auth)
            rec = await self._fetch_one(c, values["id"], auth, None, db=tx)
        assert rec is not None
        items = [rec]
        await self._expand_and_project(c, items, params, auth)
        return items[0]

    async def update(
        self, c: Collection, rid: str, body: dict[str, Any], auth: Auth, params: dict[str, str]
    ) -> dict[str, Any]:
        # a password change's argon2 work runs outside the transaction (passwords.py)
        return await passwords.outside_transaction(
            self.passwords, lambda argon2: self._update(c, rid, body, auth, params, argon2)
        )

    async def _update(
        self,
        c: Collection,
        rid: str,
        body: dict[str, Any],
        auth: Auth,
        params: dict[str, str],
        argon2: passwords.Done | None,
    ) -> dict[str, Any]:
        if not auth.is_superuser and c.updateRule is None:
            raise forbidden(ONLY_SUPERUSERS)
        async with self.store.db.transaction() as tx:
            old = await self._fetch_one(c, rid, auth, None, db=tx, superuser_shape="internal")
            if old is None:
                raise not_found()
            # rules see the body as it will be written: `owner+`, `views-`… already applied,
            # so a modifier cannot slip past an `@request.body.owner` guard (as PocketBase)
            effective = _apply_modifiers(c, body, old)
            rule = self._rule_sql(c, "update", auth, params, effective)
            if rule is not None and await self._fetch_one(c, rid, auth, rule, db=tx) is None:
                raise not_found()
            decoded = {f.name: old.get(f.name) for f in c.fields if f.name in old}
            if c.type == "auth":
                row = await tx.fetchone(
                    f'SELECT "password" FROM "{c.table}" WHERE "id" = ?', (rid,)
                )
                decoded["password"] = row[0] if row else ""
            privileged = c.type == "auth" and await self._manages(c, rid, auth, params, body, tx)
            values, errors = self._prepare(c, body, decoded, auth, privileged=privileged)
            await passwords.hash_new_passwords(self.passwords, values, errors, argon2)
            fields = {f.name: f for f in c.fields}
            await self._check_relations(c, values, tx, errors, "update")
            if values:
                sets = ", ".join(f'"{k}" = ?' for k in values)
                args = [encode_stored(fields[k], v) for k, v in values.items()]
                try:
                    await tx.execute(f'UPDATE "{c.table}" SET {sets} WHERE "id" = ?', (*args, rid))
                except IntegrityError as exc:
                    raise self._unique_error(c, exc, "update") from exc
            await self._emit(tx, c, "update", rid, old, auth)
            rec = await self._fetch_one(c, rid, auth, None, db=tx)
        assert rec is not None
        items = [rec]
        await self._expand_and_project(c, items, params, auth)
        return items[0]

    async def delete(self, c: Collection, rid: str, auth: Auth, params: dict[str, str]) -> None:
        rule = self._rule_sql(c, "delete", auth, params)
        async with self.store.db.transaction() as tx:
            found = await self._fetch_one(c, rid, auth, rule, db=tx)
            if found is None:
                raise not_found()
            await self._delete_cascade(tx, c, [rid], depth=0, auth=auth)

    async def truncate(self, c: Collection) -> None:
        async with self.store.db.transaction() as tx:
            ids = [r[0] for r in await tx.fetchall(f'SELECT "id" FROM "{c.table}"')]
            for start in range(0, len(ids), 500):
                # like PocketBase, truncating fires no per-record events
                await self._delete_cascade(tx, c, ids[start : start + 500], depth=0, emit=False)

    async def _emit(
        self,
        tx: Executor,
        c: Collection,
        action: str,
        rid: str,
        old: dict[str, Any] | None,
        auth: Auth | None,
    ) -> None:
        """Record-change triggers, in this transaction (core/events.py)."""
        if self.events is None:
            return
        subs = await self.events.subscribers(tx, c, action)
        if not subs:
            return
        rec = await self._fetch_one(c, rid, auth or Auth(), None, db=tx, superuser_shape="internal")
        if rec is None:
            return
        await self.events.emit(tx, subs, c, action, rec, old, auth)

    async def _emit_deletes(
        self, tx: Executor, c: Collection, ids: list[str], auth: Auth | None
    ) -> None:
        """Delete events for records about to be deleted (explicitly or by cascade)."""
        if self.events is None:
            return
        subs = await self.events.subscribers(tx, c, "delete")
        if not subs:
            return
        sh = shape(self.store, c, "internal")
        marks = ", ".join("?" for _ in ids)
        rows = await tx.fetchall(
            f'SELECT {sh.columns} FROM "{c.table}" AS "_r" WHERE "_r"."id" IN ({marks})', ids
        )
        for row in rows:
            rec = decode_row(c, sh, row)
            await self.events.emit(tx, subs, c, "delete", rec, None, auth)

    async def _delete_cascade(
        self,
        tx: Executor,
        c: Collection,
        ids: list[str],
        depth: int,
        auth: Auth | None = None,
        emit: bool = True,
    ) -> None:
        """Delete records and fix up every relation pointing at them, as PocketBase does."""
        if depth > 32:
            raise bad_request("Cascade delete is nested too deeply.")
        for ref_c, f in self.store.references_to(c):
            marks = ", ".join("?" for _ in ids)
            col = f'"{f.name}"'
            if f.is_multi:
                rows = await tx.fetchall(
                    f'SELECT "id", {col} FROM "{ref_c.table}" WHERE {col} <> ? ', ("[]",)
                )
                for ref_id, raw in rows:
                    vals = orjson.loads(raw) if raw else []
                    kept = [v for v in vals if v not in ids]
                    if len(kept) == len(vals):
                        continue
                    if not kept and f.required:
                        if f.options.get("cascadeDelete"):
                            await self._delete_cascade(tx, ref_c, [ref_id], depth + 1, auth, emit)
                            continue
                        raise bad_request(
                            "The record cannot be deleted because it is part of a required reference in another record."
                        )
                    await tx.execute(
                        f'UPDATE "{ref_c.table}" SET {col} = ? WHERE "id" = ?',
                        (orjson.dumps(kept).decode(), ref_id),
                    )
            else:
                rows = await tx.fetchall(
                    f'SELECT "id" FROM "{ref_c.table}" WHERE {col} IN ({marks})', ids
                )
                ref_ids = [r[0] for r in rows if not (ref_c.id == c.id and r[0] in ids)]
                if not ref_ids:
                    continue
                if f.options.get("cascadeDelete"):
                    await self._delete_cascade(tx, ref_c, ref_ids, depth + 1, auth, emit)
                elif f.required:
                    raise bad_request(
                        "The record cannot be deleted because it is part of a required reference in another record."
                    )
                else:
                    rmarks = ", ".join("?" for _ in ref_ids)
                    await tx.execute(
                        f'UPDATE "{ref_c.table}" SET {col} = ? WHERE "id" IN ({rmarks})',
                        ("", *ref_ids),
                    )
        if emit:
            await self._emit_deletes(tx, c, ids, auth)
        marks = ", ".join("?" for _ in ids)
        await tx.execute(f'DELETE FROM "{c.table}" WHERE "id" IN ({marks})', ids)


def _coerce_multipart(f: Field, value: Any) -> Any:
    """Multipart values arrive as strings; JSON fields get their JSON parsed when it is JSON."""
    if f.type == "json" and isinstance(value, str):
        try:
            return orjson.loads(value)
        except orjson.JSONDecodeError:
            return value
    return value


def _apply_modifiers(
    c: Collection, body: dict[str, Any], old: dict[str, Any] | None
) -> dict[str, Any]:
    """PocketBase's `field+` / `+field` (append, prepend) and `field-` (remove) for multi-valued
    fields, and `number+`/`number-` (increment) for numbers."""
    if not any(k.endswith(("+", "-")) or k.startswith("+") for k in body):
        return body
    out = {k: v for k, v in body.items() if not (k.endswith(("+", "-")) or k.startswith("+"))}
    for key, value in body.items():
        if key.startswith("+"):
            name, op = key[1:], "prepend"
        elif key.endswith("+"):
            name, op = key[:-1], "append"
        elif key.endswith("-"):
            name, op = key[:-1], "remove"
        else:
            continue
        f = c.field(name)
        if f is None:
            continue
        current = out.get(name, (old or {}).get(name, f.zero()))
        if f.type == "number":
            try:
                delta = float(value)
                base = float(current or 0)
                if isinstance(value, bool) or isinstance(current, bool):
                    raise TypeError(value)
            except (TypeError, ValueError):
                raise validation_failed(
                    "Failed to save record.",
                    {
                        name: FieldError(
                            "validation_not_a_number",
                            "The submitted number is not properly formatted",
                        )
                    },
                ) from None
            out[name] = base + (-delta if op == "remove" else delta)
            continue
        cur = current if isinstance(current, list) else ([current] if current else [])
        items = value if isinstance(value, list) else [value]
        if not all(isinstance(i, str) for i in [*items, *cur]):
            raise validation_failed(
                "Failed to save record.",
                {name: FieldError("validation_invalid_value", "Values must be strings.")},
            )
        if op == "append":
            out[name] = cur + [i for i in items if i not in cur]
        elif op == "prepend":  # as PocketBase: the given values first, then the rest
            out[name] = list(dict.fromkeys([*items, *cur]))
        else:
            out[name] = [i for i in cur if i not in items]
    return out


_CLASS_RE = re.compile(r"^\[([^\]]+)\]\{(\d+)\}$")


def _autogenerate(f: TextField) -> str:
    pattern = f.options.get("autogeneratePattern") or ""
    m = _CLASS_RE.match(pattern)
    if not m:
        return ""
    chars = ""
    spec = m.group(1)
    i = 0
    while i < len(spec):
        if i + 2 < len(spec) and spec[i + 1] == "-":
            chars += "".join(chr(x) for x in range(ord(spec[i]), ord(spec[i + 2]) + 1))
            i += 3
        else:
            chars += spec[i]
            i += 1
    return "".join(secrets.choice(chars) for _ in range(int(m.group(2))))
