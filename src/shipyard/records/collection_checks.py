"""Checks of a collection definition that PocketBase also makes, with its codes: the
collection name, field ids, system fields kept, and the auth collections' system fields with
their protections."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from shipyard.records.fields import (
    NAME_RE,
    BoolField,
    EmailField,
    Field,
    PasswordField,
    TextField,
    default_field_id,
    field_from_dict,
)

if TYPE_CHECKING:
    from shipyard.records.collections import Collection

RESERVED_AUTH_NAMES = {"passwordConfirm", "oldPassword"}  # keys of the auth request bodies
AUTH_FIELD_NAMES = ("password", "tokenKey", "email", "emailVisibility", "verified")
MAX_NAME_LENGTH = 55


def err(code: str, message: str) -> dict[str, str]:
    return {"code": code, "message": message}


def name_error(name: Any, existing: Collection | None, trusted: bool) -> dict[str, str] | None:
    """PocketBase's codes for a bad collection name (Shipyard's rule is stricter: at most 55
    characters, no leading digit, and a leading _ is reserved for system collections)."""
    if name is None or name == "":
        return err("validation_required", "Cannot be blank.")
    if not isinstance(name, str):
        return err("validation_match_invalid", "Must be in a valid format.")
    if len(name) > MAX_NAME_LENGTH:
        return err(
            "validation_length_out_of_range",
            f"The length must be between 1 and {MAX_NAME_LENGTH}.",
        )
    if "_via_" in name.lower():  # would read as a back-relation in filters and expand
        return err("validation_found_via", 'The value cannot contain "_via_".')
    if not NAME_RE.match(name):
        return err("validation_match_invalid", "Must be in a valid format.")
    if existing is not None and existing.system and name != existing.name:
        return err(
            "validation_collection_system_name_change",
            "System collection name cannot be changed.",
        )
    if name.startswith("_") and not trusted and (existing is None or not existing.system):
        return err(
            "validation_collection_name_invalid",
            "Names starting with _ are reserved for system collections.",
        )
    return None


def auth_fields(
    given: dict[str, dict[str, Any]], existing: Collection | None, errors: dict[str, Any]
) -> list[Field]:
    """The auth system fields, in their fixed places after `id`, as PocketBase keeps them:
    one left out is kept as it is (or added); one listed takes the options it gives over
    the ones it has (so `{"name": "email", "type": "email"}` changes nothing); and whatever
    is given, all stay system, password and tokenKey stay hidden and required (a password
    change rotates the tokenKey, ending sessions and reset links), and email stays visible
    to the emailVisibility flag."""
    out: list[Field] = []
    for default in auth_system_fields():
        current = existing.field(default.name) if existing else None
        if current is None or current.type != default.type:
            current = default
        raw = given.get(default.name)
        if raw is None:
            fld = field_from_dict(current.to_dict())
        else:
            fld = field_from_dict({**current.to_dict(), **raw, "id": raw.get("id") or current.id})
            if fld.type != default.type:
                field_error(errors)[default.name] = err(
                    "validation_system_field_change",
                    f"The system field {default.name!r} must stay of type {default.type}.",
                )
            problems = fld.validate_options()
            if problems:
                field_error(errors)[default.name] = err(
                    "validation_invalid_field_options",
                    "; ".join(f"{k}: {v}" for k, v in problems.items()),
                )
        fld.system = True
        if default.name in ("password", "tokenKey"):
            fld.hidden = fld.required = True
        elif default.name == "email":
            fld.hidden = False
        out.append(fld)
    return out


def field_error(errors: dict[str, Any]) -> dict[str, Any]:
    """The per-field error map under "fields" (a fresh one if "fields" holds another error)."""
    current = errors.get("fields")
    if not isinstance(current, dict) or "code" in current:
        current = errors["fields"] = {}
    return current


def assign_default_ids(fields: list[Field], unnamed: list[Field]) -> None:
    """Fields given without an id get PocketBase's default (type + CRC-32 of the name),
    numbered on when another field of the collection already holds it."""
    without = {id(f) for f in unnamed}
    taken = {f.id for f in fields if id(f) not in without}
    for f in fields:
        if id(f) not in without:
            continue
        base = default_field_id(f.type, f.name)
        fid, n = base, 2
        while fid in taken:
            fid, n = f"{base}{n}", n + 1
        f.id = fid
        taken.add(fid)


def _system_change() -> dict[str, str]:
    return err("validation_system_field_change", "System fields cannot be deleted or renamed.")


def check_system_fields(
    fields: list[Field], existing: Collection | None, errors: dict[str, Any]
) -> None:
    """Field ids are unique, and an update keeps every system field (same id, name, type)."""
    by_id: dict[str, Field] = {}
    for f in fields:
        if f.id in by_id:
            old = existing.field(by_id[f.id].name) if existing else None
            if old is not None and old.system and old.id == f.id:
                errors.setdefault("fields", _system_change())
            else:
                errors.setdefault(
                    "fields",
                    err(
                        "validation_duplicated_field_id",
                        f"Duplicated or invalid field id {f.id!r}.",
                    ),
                )
            return
        by_id[f.id] = f
    for old in existing.fields if existing else []:
        new = by_id.get(old.id)
        if old.system and (new is None or new.name != old.name or new.type != old.type):
            errors.setdefault("fields", _system_change())
            return


def auth_system_fields() -> list[Field]:
    """The fields every auth collection has, as in PocketBase (password and tokenKey hidden),
    with the ids PocketBase gives them."""
    return [
        PasswordField(name="password", system=True, hidden=True, required=True),
        TextField(
            name="tokenKey",
            system=True,
            hidden=True,
            required=True,
            options={"min": 30, "max": 60, "autogeneratePattern": "[a-zA-Z0-9]{50}"},
        ),
        EmailField(name="email", system=True, required=True),
        BoolField(name="emailVisibility", system=True),
        BoolField(name="verified", system=True),
    ]


def with_stable_ids(existing: Collection, fields: Any) -> Any:
    """Give incoming fields without ids the id of the existing field with the same name."""
    if not isinstance(fields, list):
        return fields
    by_name = {f.name: f.id for f in existing.fields}
    out = []
    for f in fields:
        name = f.get("name") if isinstance(f, dict) else None
        if isinstance(name, str) and not f.get("id") and name in by_name:
            f = {**f, "id": by_name[f["name"]]}
        out.append(f)
    # files written by hand leave out the default created/updated dates: keep them
    given = {f.get("name") for f in out if isinstance(f, dict) and isinstance(f.get("name"), str)}
    for f in existing.fields:
        if f.type == "autodate" and f.name in ("created", "updated") and f.name not in given:
            out.append(f.to_dict())
    return out
