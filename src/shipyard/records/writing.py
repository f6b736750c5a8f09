"""Writing records: every field validated and all of a body's problems reported together,
then one transaction in which the rule check, relation checks, constraints and record
events all pass or nothing is written."""

from __future__ import annotations

import re
import secrets
from typing import TYPE_CHECKING, Any

from shipyard.kernel.errors import (
    ApiError,
    FieldError,
    bad_request,
    forbidden,
    not_found,
    validation_failed,
)
from shipyard.kernel.uploads import Upload
from shipyard.records import authids, passwords
from shipyard.records.auth import Auth
from shipyard.records.codecs import encode_stored
from shipyard.records.collections import Collection
from shipyard.records.context import RequestContext
from shipyard.records.events import all_keep_record
from shipyard.records.expand import Expander
from shipyard.records.fields import (
    AutodateField,
    Field,
    FileField,
    PasswordField,
    TextField,
    new_record_id,
    now_str,
)
from shipyard.records.listquery import ViewQuery
from shipyard.records.modifiers import (
    apply_modifiers,
    autogenerate,
    coerce_multipart,
    holds_upload,
    names_only,
    uploads_by_field,
    uploads_in,
)
from shipyard.records.reading import Reader
from shipyard.records.rules import ONLY_SUPERUSERS, Rules
from shipyard.records.schema import SchemaStore
from shipyard.tools.db import ConstraintKind, Executor, IntegrityError

if TYPE_CHECKING:
    from shipyard.records.events import RecordEvents

CLIENT_ID_RE = re.compile(r"^[a-zA-Z0-9_]{1,100}$")
# PocketBase's answer to an auth record id that an account of another auth collection has
_SHARED_ID = {
    "id": FieldError("validation_invalid_auth_id", "Invalid or duplicated auth record id.")
}


class Writer:
    def __init__(
        self,
        store: SchemaStore,
        hashing: passwords.PasswordHashing,
        rules: Rules,
        reader: Reader,
        expander: Expander,
        events: RecordEvents | None,
    ) -> None:
        self.store = store
        self.passwords = hashing
        self.rules = rules
        self.reader = reader
        self.expander = expander
        self.events = events  # the record-event bus (records/events.py)

    def _prepare(  # noqa: C901  (one branch per field kind of a write (files, passwords, relations, modifiers))
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
        body = apply_modifiers(c, body, old)
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
                    if not isinstance(f, FileField) and holds_upload(body[f.name]):
                        raise FieldError("validation_invalid_value", "Not a file field.")
                    value = f.normalize(coerce_multipart(f, body[f.name]))
                    f.validate(value)
                    if isinstance(f, FileField):
                        f.check_names(value, (old or {}).get(f.name))
                except FieldError as err:
                    errors[f.name] = err
                    continue
                values[f.name] = value
            elif creating:
                value = autogenerate(f) if isinstance(f, TextField) else f.zero()
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
        self, c: Collection, body: dict[str, Any], ctx: RequestContext, q: ViewQuery
    ) -> dict[str, Any]:
        auth = ctx.auth
        if not auth.is_superuser and c.createRule is None:
            raise forbidden(ONLY_SUPERUSERS)
        values, errors = self._prepare(c, body, None, auth)
        await self._inspect_uploads(c, str(values.get("id") or ""), body, "create")
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
        uploads = uploads_in(values)
        values = names_only(values)
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
                    # another auth collection's account has this id (records/authids.py)
                    raise validation_failed("Failed to create record.", _SHARED_ID) from exc
                raise self._unique_error(c, exc, "create") from exc
            if needs_manage and not await self.rules.manages(tx, c, values["id"], ctx, body):
                raise validation_failed("Failed to create record.", refused)
            if not auth.is_superuser and (c.createRule or "").strip():
                rule = self.rules.sql(c, "create", ctx, names_only(apply_modifiers(c, body, None)))
                ok = await self.reader.fetch_one(c, values["id"], ctx, rule, db=tx)
                if ok is None:
                    raise bad_request("Failed to create record.")
            rec = await self._emit(tx, c, "create", values["id"], None, ctx, uploads)
            if rec is None:
                rec = await self.reader.fetch_one(c, values["id"], ctx, None, db=tx)
        assert rec is not None  # noqa: S101  (narrows a type for mypy; established above)
        items = [rec]
        await self.expander.finish(c, items, q, ctx)
        return items[0]

    async def update(
        self, c: Collection, rid: str, body: dict[str, Any], ctx: RequestContext, q: ViewQuery
    ) -> dict[str, Any]:
        # a password change's argon2 work runs outside the transaction (passwords.py)
        return await passwords.outside_transaction(
            self.passwords, lambda argon2: self._update(c, rid, body, ctx, q, argon2)
        )

    async def _update(
        self,
        c: Collection,
        rid: str,
        body: dict[str, Any],
        ctx: RequestContext,
        q: ViewQuery,
        argon2: passwords.Done | None,
    ) -> dict[str, Any]:
        auth = ctx.auth
        if not auth.is_superuser and c.updateRule is None:
            raise forbidden(ONLY_SUPERUSERS)
        await self._inspect_uploads(c, rid, body, "update")
        reader = self.reader
        async with self.store.db.transaction() as tx:
            old = await reader.fetch_one(c, rid, ctx, None, db=tx, audience="internal")
            if old is None:
                raise not_found()
            # rules see the body as it will be written: `owner+`, `views-`… already applied,
            # so a modifier cannot slip past an `@request.body.owner` guard (as PocketBase)
            effective = names_only(apply_modifiers(c, body, old))
            rule = self.rules.sql(c, "update", ctx, effective)
            if rule is not None and await reader.fetch_one(c, rid, ctx, rule, db=tx) is None:
                raise not_found()
            decoded = {f.name: old.get(f.name) for f in c.fields if f.name in old}
            if c.type == "auth":
                row = await tx.fetchone(
                    f'SELECT "password" FROM "{c.table}" WHERE "id" = ?', (rid,)
                )
                decoded["password"] = row[0] if row else ""
            privileged = c.type == "auth" and await self.rules.manages(tx, c, rid, ctx, body)
            values, errors = self._prepare(c, body, decoded, auth, privileged=privileged)
            await passwords.hash_new_passwords(self.passwords, values, errors, argon2)
            uploads = uploads_in(values)
            values = names_only(values)
            fields = {f.name: f for f in c.fields}
            await self._check_relations(c, values, tx, errors, "update")
            if values:
                sets = ", ".join(f'"{k}" = ?' for k in values)
                args = [encode_stored(fields[k], v) for k, v in values.items()]
                try:
                    await tx.execute(f'UPDATE "{c.table}" SET {sets} WHERE "id" = ?', (*args, rid))
                except IntegrityError as exc:
                    raise self._unique_error(c, exc, "update") from exc
            rec = await self._emit(tx, c, "update", rid, old, ctx, uploads)
            if rec is None:
                rec = await reader.fetch_one(c, rid, ctx, None, db=tx)
        assert rec is not None  # noqa: S101  (narrows a type for mypy; established above)
        items = [rec]
        await self.expander.finish(c, items, q, ctx)
        return items[0]

    async def _inspect_uploads(
        self, c: Collection, rid: str, body: dict[str, Any], action: str
    ) -> None:
        """Capabilities' checks of the new files (records/events.py), outside any transaction."""
        if self.events is None:
            return
        errors = await self.events.inspect_uploads(c, rid, uploads_by_field(c, body))
        if errors:
            raise validation_failed(f"Failed to {action} record.", errors)

    async def _emit(
        self,
        tx: Executor,
        c: Collection,
        action: str,
        rid: str,
        old: dict[str, Any] | None,
        ctx: RequestContext,
        uploads: list[Upload],
    ) -> dict[str, Any] | None:
        """Record-change events, in this transaction (records/events.py); the uploads must
        be stored by a listener (the files capability) or the write fails. Answers the
        record as `ctx` sees it when the event's read of it still stands (no listener may
        have changed it), else None: the caller reads it again."""
        subs = await self.events.subscribers(tx, c, action) if self.events else None
        seen = None
        if subs:
            rec = await self.reader.fetch_one(c, rid, ctx, None, db=tx, audience="internal")
            if rec is not None and self.events is not None:
                await self.events.emit(tx, subs, c, action, rec, old, ctx.auth, uploads)
                if all_keep_record(subs):
                    seen = self._as_seen(c, rec, ctx)
        if any(not u.stored for u in uploads):
            raise bad_request("File uploads are not supported: the files capability is off.")
        return seen

    def _as_seen(
        self, c: Collection, internal: dict[str, Any], ctx: RequestContext
    ) -> dict[str, Any]:
        """What `reader.fetch_one(c, id, ctx, None)` answers, from the internal read of the
        same row: the asker's columns, in the same order."""
        names = self.reader.shapes.of(c, ctx.auth.is_superuser).names
        rec = {"collectionId": c.id, "collectionName": c.name}
        rec.update((n, internal[n]) for n in names)
        return rec
