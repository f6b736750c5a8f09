"""Collections: the model, its PocketBase JSON shape, and validation of a definition."""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field
from typing import Any

from shipyard.kernel.errors import bad_request
from shipyard.records.collection_checks import (
    AUTH_FIELD_NAMES,
    RESERVED_AUTH_NAMES,
    assign_default_ids,
    auth_fields,
    check_system_fields,
    err,
    name_error,
)
from shipyard.records.fields import (
    NAME_RE,
    AutodateField,
    Field,
    FileField,
    RelationField,
    field_from_dict,
    id_field,
    now_str,
)
from shipyard.tools.ids import random_string

RULES = ("listRule", "viewRule", "createRule", "updateRule", "deleteRule")
COLLECTION_TYPES = ("base", "auth")
RESERVED_NAMES = {"expand", "collectionId", "collectionName"}
SUPERUSERS_ID = "pbc_3142635823"  # the id the JS SDK's authStore.isSuperuser falls back to
SUPERUSERS = "_superusers"

_INDEX_RE = re.compile(
    r"""^\s*CREATE\s+(?P<unique>UNIQUE\s+)?INDEX\s+(?:IF\s+NOT\s+EXISTS\s+)?
        [`"\[]?(?P<name>[A-Za-z_][A-Za-z0-9_]*)[`"\]]?\s+ON\s+
        [`"\[]?(?P<table>[A-Za-z_][A-Za-z0-9_]*)[`"\]]?\s*
        \((?P<cols>[^()]*)\)\s*;?\s*$""",
    re.IGNORECASE | re.VERBOSE,
)
_INDEX_COL_RE = re.compile(
    r"""^\s*[`"\[]?(?P<col>[A-Za-z_][A-Za-z0-9_]*)[`"\]]?
        (?:\s+COLLATE\s+(?P<collate>NOCASE|BINARY))?
        (?:\s+(?P<dir>ASC|DESC))?\s*$""",
    re.IGNORECASE | re.VERBOSE,
)


@dataclass
class IndexDef:
    """A parsed index; regenerated per engine so no raw SQL from users is executed."""

    name: str
    unique: bool
    columns: list[tuple[str, bool, bool]]  # (column, descending, nocase)

    def sql(self, table: str, dialect: str) -> str:
        cols = []
        for col, desc, nocase in self.columns:
            expr = f'"{col}"'
            if nocase:
                expr = f'LOWER("{col}")' if dialect == "postgres" else f'"{col}" COLLATE NOCASE'
            cols.append(expr + (" DESC" if desc else ""))
        unique = "UNIQUE " if self.unique else ""
        # no IF NOT EXISTS: a name taken meanwhile must fail, not leave the index uncreated
        return f'CREATE {unique}INDEX "{self.name}" ON "{table}" ({", ".join(cols)})'


def parse_index(text: str) -> IndexDef:
    m = _INDEX_RE.match(text or "")
    if not m:
        raise ValueError(
            "Invalid index: expected CREATE [UNIQUE] INDEX name ON table (column [ASC|DESC], …)."
        )
    cols = []
    for part in m.group("cols").split(","):
        cm = _INDEX_COL_RE.match(part)
        if not cm:
            raise ValueError(f"Invalid index column {part.strip()!r}.")
        cols.append(
            (
                cm.group("col"),
                (cm.group("dir") or "").upper() == "DESC",
                (cm.group("collate") or "").upper() == "NOCASE",
            )
        )
    return IndexDef(name=m.group("name"), unique=bool(m.group("unique")), columns=cols)


def quote_ident(name: str) -> str:
    """An SQL identifier, quoted so that no name can end the quoting."""
    return '"' + name.replace('"', '""') + '"'


def new_collection_id() -> str:
    return "pbc_" + random_string(10, "0123456789")


@dataclass
class Collection:
    id: str
    name: str
    type: str = "base"
    system: bool = False
    fields: list[Field] = field(default_factory=list)
    indexes: list[str] = field(default_factory=list)
    listRule: str | None = None
    viewRule: str | None = None
    createRule: str | None = None
    updateRule: str | None = None
    deleteRule: str | None = None
    created: str = ""
    updated: str = ""
    options: dict[str, Any] = field(default_factory=dict)  # auth options (secrets kept here)

    def __post_init__(self) -> None:
        self._by_name = {f.name: f for f in self.fields}

    @property
    def table(self) -> str:
        return self.name

    def field(self, name: str) -> Field | None:
        return self._by_name.get(name)

    @property
    def data_fields(self) -> list[Field]:
        """Every field but `id`: the columns written on create."""
        return [f for f in self.fields if f.name != "id"]

    def relation_fields(self) -> list[RelationField]:
        return [f for f in self.fields if isinstance(f, RelationField)]

    def index_defs(self) -> list[IndexDef]:
        return [parse_index(i) for i in self.indexes]

    def rule(self, action: str) -> str | None:
        value: str | None = getattr(self, action + "Rule")
        return value

    def to_dict(self, include_secrets: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "name": self.name,
            "type": self.type,
            "system": self.system,
            "listRule": self.listRule,
            "viewRule": self.viewRule,
            "createRule": self.createRule,
            "updateRule": self.updateRule,
            "deleteRule": self.deleteRule,
            "fields": [f.to_dict() for f in self.fields],
            "indexes": list(self.indexes),
            "created": self.created,
            "updated": self.updated,
        }
        if self.type == "auth":
            opts = {k: v for k, v in self.options.items() if include_secrets or k != "secrets"}
            out.update(opts)
        return out


def _rule_value(data: dict[str, Any], key: str, errors: dict[str, Any]) -> str | None:
    value = data.get(key)
    if value is None or isinstance(value, str):
        return value
    errors[key] = {"code": "validation_invalid_rule", "message": "Must be a string or null."}
    return None


CREATE_FAILED = "Failed to create collection."
UPDATE_FAILED = "Failed to update collection."


def failure_message(existing: Collection | None) -> str:
    """PocketBase's message of a refused create or update (the JS SDK shows it)."""
    return CREATE_FAILED if existing is None else UPDATE_FAILED


def collection_from_dict(  # noqa: C901  (one independent check per collection property, in PocketBase's order)
    data: Any, existing: Collection | None = None, *, trusted: bool = False
) -> Collection:
    """Validate a PocketBase-shaped definition into a Collection (400 with per-key errors).

    `existing` supplies what a partial update leaves unchanged; system fields and ids are
    kept stable so that renames are detected by field id. An auth collection always has its
    system fields with their protections (see `_auth_fields`), however it is given.
    """
    if not isinstance(data, dict):
        raise bad_request("Failed to load the collection data.", {})
    errors: dict[str, Any] = {}
    base = existing.to_dict(include_secrets=True) if existing else {}
    merged = {**base, **data}

    name = merged.get("name")
    problem = name_error(name, existing, trusted)
    if problem is not None:
        errors["name"] = problem
    if not isinstance(name, str) or not NAME_RE.match(name):
        name = "invalid"

    ctype = merged.get("type") or "base"
    if existing and ctype != existing.type:
        errors["type"] = err(
            "validation_collection_type_change", "Collection type cannot be changed."
        )
    elif ctype not in COLLECTION_TYPES:
        errors["type"] = err("validation_in_invalid", "Must be a valid value.")

    fields: list[Field] = []
    auth_given: dict[str, dict[str, Any]] = {}  # auth system fields as listed
    unnamed: list[Field] = []  # fields given without an id: they get PocketBase's default
    raw_fields = merged.get("fields")
    if raw_fields is None:
        raw_fields = merged.get("schema", [])  # PocketBase < 0.23
    if not isinstance(raw_fields, list):
        errors["fields"] = err("validation_invalid_fields", "Must be a list.")
        raw_fields = []
    old_by_id = {f.id: f for f in existing.fields} if existing else {}
    seen: set[str] = set()
    field_errors: dict[str, Any] = {}
    for i, raw in enumerate(raw_fields):
        raw_name = raw.get("name") if isinstance(raw, dict) else None
        if isinstance(raw_name, str) and "_via_" in raw_name.lower():
            field_errors[str(i)] = err("validation_found_via", 'The value cannot contain "_via_".')
            continue
        try:
            fld = field_from_dict(raw)
        except ValueError as exc:
            field_errors[str(i)] = err("validation_invalid_field", str(exc))
            continue
        old = old_by_id.get(fld.id)
        if old is not None and old.system and not trusted:
            fld.system = True
        if fld.name.lower() in seen:
            field_errors[str(i)] = err(
                "validation_duplicated_field_name", f"Duplicated field name {fld.name!r}."
            )
            continue
        reserved = RESERVED_NAMES | (RESERVED_AUTH_NAMES if ctype == "auth" else set())
        if fld.name in reserved:
            field_errors[str(i)] = err(
                "validation_reserved_field_name", f"The field name {fld.name!r} is reserved."
            )
            continue
        opt_errors = fld.validate_options()
        if opt_errors:
            field_errors[str(i)] = err(
                "validation_invalid_field_options",
                "; ".join(f"{k}: {v}" for k, v in opt_errors.items()),
            )
            continue
        if isinstance(fld, FileField) and fld.options.get("maxSelect", 1) < 1:
            fld.options["maxSelect"] = 1
        seen.add(fld.name.lower())
        if ctype == "auth" and fld.name in AUTH_FIELD_NAMES and fld.name != "id":
            auth_given[fld.name] = raw
            continue
        if not raw.get("id"):
            unnamed.append(fld)
        fields.append(fld)
    if field_errors:
        errors["fields"] = field_errors

    # system fields every collection has
    if not any(f.name == "id" for f in fields):
        fields.insert(0, id_field())
    else:
        idx = next(i for i, f in enumerate(fields) if f.name == "id")
        given = fields.pop(idx)
        stable = id_field()
        stable.hidden = False
        if given.type != "text":
            errors["fields"] = {"id": err("validation_invalid_id", "id is text.")}
        fields.insert(0, stable)
    if ctype == "auth":
        fields[1:1] = auth_fields(auth_given, existing, errors)
    if existing is None:
        names = {f.name for f in fields}
        for auto in ("created", "updated"):
            if auto not in names:
                fields.append(
                    AutodateField(
                        name=auto, options={"onCreate": True, "onUpdate": auto == "updated"}
                    )
                )
    assign_default_ids(fields, unnamed)
    check_system_fields(fields, existing, errors)

    rules = {key: _rule_value(merged, key, errors) for key in RULES}

    indexes = merged.get("indexes") or []
    if not isinstance(indexes, list) or not all(isinstance(i, str) for i in indexes):
        errors["indexes"] = err("validation_invalid_indexes", "Must be strings.")
        indexes = []
    names_now = {f.name for f in fields}
    index_errors: dict[str, Any] = {}
    index_names: set[str] = set()
    for i, text in enumerate(indexes):
        try:
            idef = parse_index(text)
        except ValueError as exc:
            index_errors[str(i)] = err("validation_invalid_index_expression", str(exc))
            continue
        if idef.name.lower() in index_names:  # SQLite's names ignore case: so do ours
            index_errors[str(i)] = err(
                "validation_duplicated_index_name", "The index name already exists."
            )
            continue
        index_names.add(idef.name.lower())
        missing = [c for c, _, _ in idef.columns if c not in names_now]
        if missing:
            index_errors[str(i)] = err(
                "validation_invalid_index_expression", f"Unknown column(s): {', '.join(missing)}."
            )
    if index_errors:
        errors["indexes"] = index_errors

    failed = failure_message(existing)
    if errors:
        raise bad_request(failed, errors)

    now = now_str()
    cid = existing.id if existing else (merged.get("id") or new_collection_id())
    if not isinstance(cid, str) or not re.match(r"^[A-Za-z0-9_]{3,50}$", cid):
        raise bad_request(
            failed,
            {"id": err("validation_match_invalid", "Must be in a valid format.")},
        )
    options = dict(existing.options) if existing else {}
    index_list = [_normalize_index(i, name) for i in indexes]
    if ctype == "auth":
        index_list = _auth_indexes(index_list, cid, name, existing)
        options = _auth_options(merged, options, errors)
        _check_identity_fields(options["passwordAuth"], fields, index_list, errors)
        if errors:
            raise bad_request(failed, errors)
    return Collection(
        id=cid,
        name=name,
        type=ctype,
        system=existing.system if existing else bool(trusted and merged.get("system")),
        fields=fields,
        indexes=index_list,
        created=existing.created if existing else now,
        updated=now,
        options=options,
        **rules,
    )


def _auth_options(
    merged: dict[str, Any], current: dict[str, Any], errors: dict[str, Any]
) -> dict[str, Any]:
    """Auth settings of an auth collection: token lifetime, password login, manageRule."""
    out = dict(current)
    out.setdefault("secrets", {"authToken": secrets.token_urlsafe(48)})
    token = merged.get("authToken") or out.get("authToken") or {}
    duration = token.get("duration", 604800) if isinstance(token, dict) else None
    if (
        not isinstance(duration, int)
        or isinstance(duration, bool)
        or not 60 <= duration <= 31536000
    ):
        errors["authToken"] = {
            "code": "validation_invalid_duration",
            "message": "duration must be 60..31536000 seconds.",
        }
        duration = 604800
    out["authToken"] = {"duration": duration}
    pw = merged.get("passwordAuth") or out.get("passwordAuth") or {}
    idents = pw.get("identityFields", ["email"]) if isinstance(pw, dict) else None
    if not isinstance(idents, list) or not all(isinstance(i, str) for i in idents):
        errors["passwordAuth"] = {
            "code": "validation_invalid_identity_fields",
            "message": "identityFields must be a list of field names.",
        }
        idents = ["email"]
    out["passwordAuth"] = {
        "enabled": bool(pw.get("enabled", True)) if isinstance(pw, dict) else True,
        "identityFields": idents,
    }
    manage = merged.get("manageRule", out.get("manageRule"))
    if manage is not None and not isinstance(manage, str):
        errors["manageRule"] = {
            "code": "validation_invalid_rule",
            "message": "Must be a string or null.",
        }
        manage = None
    out["manageRule"] = manage
    return out


def unique_index(indexes: list[str], column: str) -> IndexDef | None:
    """The UNIQUE index on exactly `column`, if any: what makes a field an identity (its
    COLLATE NOCASE says whether lookups ignore case)."""
    for text in indexes:
        idef = parse_index(text)
        if idef.unique and [col for col, _, _ in idef.columns] == [column]:
            return idef
    return None


def email_index(name: str, table: str, nocase: bool = True) -> str:
    collate = " COLLATE NOCASE" if nocase else ""
    return f"CREATE UNIQUE INDEX `{name}` ON `{table}` (`email`{collate})"


def legacy_email_index(indexes: list[str]) -> bool:
    """Whether an auth collection predates e-mails unique regardless of case: its email
    index is case-sensitive, or was dropped (SchemaStore migrates it at start-up when the
    stored addresses allow)."""
    idef = unique_index(indexes, "email")
    return idef is None or not idef.columns[0][2]


def _auth_indexes(
    indexes: list[str], cid: str, table: str, existing: Collection | None
) -> list[str]:
    """An auth collection always keeps its UNIQUE `tokenKey` and `email` indexes (re-added
    when left out, as PocketBase does), and e-mails are unique regardless of letter case:
    the email index is COLLATE NOCASE, so `Ann@x.io` cannot sign up beside `ann@x.io`.
    Only a collection whose stored index is still case-sensitive (its addresses clash in
    case, see SchemaStore.upgrade_email_indexes) keeps the index as given."""
    legacy = existing is not None and legacy_email_index(existing.indexes)
    out = list(indexes)
    current = unique_index(out, "email")
    if current is None:
        out.append(email_index(f"idx_email_{cid}", table, nocase=not legacy))
    elif not current.columns[0][2] and not legacy:
        out = [email_index(current.name, table) if parse_index(i) == current else i for i in out]
    if unique_index(out, "tokenKey") is None:
        out.append(f"CREATE UNIQUE INDEX `idx_tokenKey_{cid}` ON `{table}` (`tokenKey`)")
    return out


def _check_identity_fields(
    pw: dict[str, Any], fields: list[Field], indexes: list[str], errors: dict[str, Any]
) -> None:
    """Identity fields must be fields with a UNIQUE index of their own (PocketBase's rule
    and error codes): a login finds at most one record, by a name known to be a column."""
    if "passwordAuth" in errors:
        return
    names = {f.name for f in fields}
    problem: dict[str, Any] | None = None
    if pw["enabled"] and not pw["identityFields"]:
        problem = {"code": "validation_required", "message": "Cannot be blank."}
    for name in pw["identityFields"]:
        if problem is not None:
            break
        if name not in names:
            problem = {
                "code": "validation_missing_field",
                "message": f"Invalid or missing field {name}.",
            }
        elif unique_index(indexes, name) is None:
            problem = {
                "code": "validation_missing_unique_constraint",
                "message": f"The field {name} doesn't have a UNIQUE constraint.",
            }
        if problem is not None:
            problem["params"] = {"fieldName": name}
    if problem is not None:
        errors["passwordAuth"] = {"identityFields": problem}


def _normalize_index(text: str, table: str) -> str:
    """Store indexes in PocketBase's textual form, pointing at the (possibly renamed) table."""
    idef = parse_index(text)
    cols = ", ".join(
        f"`{c}`" + (" COLLATE NOCASE" if nocase else "") + (" DESC" if desc else "")
        for c, desc, nocase in idef.columns
    )
    unique = "UNIQUE " if idef.unique else ""
    return f"CREATE {unique}INDEX `{idef.name}` ON `{table}` ({cols})"


def collection_from_stored(data: dict[str, Any]) -> Collection:
    """Rebuild a collection from its stored JSON (already validated when written)."""
    fields = [field_from_dict(f) for f in data.get("fields", [])]
    return Collection(
        id=data["id"],
        name=data["name"],
        type=data.get("type", "base"),
        system=bool(data.get("system")),
        fields=fields,
        indexes=list(data.get("indexes", [])),
        listRule=data.get("listRule"),
        viewRule=data.get("viewRule"),
        createRule=data.get("createRule"),
        updateRule=data.get("updateRule"),
        deleteRule=data.get("deleteRule"),
        created=data.get("created", ""),
        updated=data.get("updated", ""),
        options=data.get("options", {}),
    )


def stored_dict(c: Collection) -> dict[str, Any]:
    out = c.to_dict(include_secrets=True)
    out["options"] = c.options
    return out
