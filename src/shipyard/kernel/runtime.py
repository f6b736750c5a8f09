"""Runtime settings: values a superuser changes through `/api/settings` while the server
runs, kept in the database (`_params`, tools/params.py) so that every process and machine
applies a change from the next time it reads them.

Capabilities declare their own sections (`RuntimeSettings.declare(Section(...))`); this
module knows none of them. A field names the start-up setting behind it, and precedence
is, lowest first: that setting's default, the stored value, a value set explicitly at
start-up (`SHIPYARD_*`, shipyard.toml, an option). An explicitly set field is read-only
here: the operator's configuration must not be overridden from the API, and an API change
that silently had no effect would mislead. Secret fields are written, never read back.

Readers call `current()` (or `refresh()`) before each use: one indexed read of the
counter, and a reload only when it moved. A PATCH acknowledged by one process is
therefore seen by the next read in any other, with no notification to wait for.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import logging
import math
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar

from shipyard.kernel.errors import ApiError, FieldError
from shipyard.tools.params import Documents, ParamsStore

log = logging.getLogger("shipyard.runtime")

Kind = Literal["string", "integer", "number", "boolean", "array", "object"]
Check = Callable[[Any], FieldError | None]
S = TypeVar("S")

READ_ONLY_KEY = "readOnly"  # the response's map of read-only fields; ignored in a PATCH
LOADING = "An error occurred while loading the submitted data."  # PocketBase's messages
SAVING = "An error occurred while saving the new settings."
_TYPE_NAMES = {
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
    "array": "a list",
    "object": "an object",
}


@dataclass(frozen=True)
class Field:
    """One setting: `name` is its JSON key (PocketBase's spelling where it has one),
    `setting` the start-up setting that gives its default and, set explicitly, locks it."""

    name: str
    kind: Kind
    setting: str = ""
    description: str = ""
    _: dataclasses.KW_ONLY
    secret: bool = False  # never returned, never logged
    checks: tuple[Check, ...] = ()  # run on the value in effect; see the helpers below
    enum: tuple[str, ...] = ()  # the only values a string may take
    # when the field has no start-up setting of its own: what it is below stored values,
    # and which start-up settings, set explicitly, make it read-only
    base: Callable[[Any], Any] | None = None
    locked_by: tuple[str, ...] = ()
    # JSON → value when `kind` alone does not say it (e.g. an alternative spelling)
    parse: Callable[[Any], Any] | None = None
    # an "object" field: keys of its value never returned (secrets inside it); a PATCH
    # merges into the stored object, key by key, as PocketBase's nested settings do
    hidden: tuple[str, ...] = ()

    def base_value(self, settings: Any) -> Any:
        return self.base(settings) if self.base else getattr(settings, self.setting)

    @property
    def locks(self) -> tuple[str, ...]:
        return self.locked_by or ((self.setting,) if self.setting else ())

    def decode(self, raw: Any) -> Any:
        """The value of a submitted (or stored) JSON value; FieldError when it has the
        wrong type (whether it is allowed is `problem`'s question)."""
        if self.parse is not None:
            return self.parse(raw)
        ok = {
            "string": isinstance(raw, str),
            "integer": isinstance(raw, int) and not isinstance(raw, bool),
            "number": isinstance(raw, int | float) and not isinstance(raw, bool),
            "boolean": isinstance(raw, bool),
            "array": isinstance(raw, list),
            "object": isinstance(raw, dict),
        }[self.kind]
        if not ok or (self.kind == "number" and not math.isfinite(raw)):
            raise FieldError("validation_invalid_value", f"Must be {_TYPE_NAMES[self.kind]}.")
        return float(raw) if self.kind == "number" else raw

    def problem(self, value: Any) -> FieldError | None:
        """The first rule `value` breaks: not one of `enum`, or a check."""
        if self.enum and value not in self.enum:
            return FieldError("validation_in_invalid", "Must be a valid value.")
        for check in self.checks:
            problem = check(value)
            if problem is not None:
                return problem
        return None

    def schema(self, request: bool = False) -> dict[str, Any]:
        """Its JSON Schema (OpenAPI), as returned or, with `request`, as accepted (a field
        with its own `parse` may take other spellings: its description says which)."""
        out: dict[str, Any] = {} if request and self.parse else {"type": self.kind}
        if self.enum and "type" in out:
            out["enum"] = list(self.enum)
        if self.description:
            out["description"] = self.description
        if self.secret:
            out["writeOnly"] = True
        return out


@dataclass(frozen=True)
class Section:
    """A group of fields under one key of the settings object (`meta`, `smtp`)."""

    name: str
    fields: tuple[Field, ...]
    description: str = ""
    # rules across fields, on the values in effect: field name → error
    validate: Callable[[Mapping[str, Any]], dict[str, FieldError]] | None = None
    # the values in effect → start-up setting names and the values to give them; by
    # default each field with a `setting` gives its own
    overlay: Callable[[Mapping[str, Any]], dict[str, Any]] | None = None

    def field(self, name: str) -> Field | None:
        return next((f for f in self.fields if f.name == name), None)

    def settings_of(self, values: Mapping[str, Any]) -> dict[str, Any]:
        if self.overlay is not None:
            return self.overlay(values)
        return {f.setting: values[f.name] for f in self.fields if f.setting}


# ------------------------------------------------------------------ checks (PocketBase's codes)


def required(value: Any) -> FieldError | None:
    if value in ("", None):
        return FieldError("validation_required", "Cannot be blank.")
    return None


def length(low: int, high: int) -> Check:
    def check(value: Any) -> FieldError | None:
        if value and not low <= len(value) <= high:
            return FieldError(
                "validation_length_out_of_range", f"The length must be between {low} and {high}."
            )
        return None

    return check


def between(low: float, high: float) -> Check:
    def check(value: Any) -> FieldError | None:
        if value < low:
            return FieldError(
                "validation_min_greater_equal_than_required", f"Must be no less than {low:g}."
            )
        if value > high:
            return FieldError(
                "validation_max_less_equal_than_required", f"Must be no greater than {high:g}."
            )
        return None

    return check


def positive(value: Any) -> FieldError | None:
    if not value > 0:
        return FieldError("validation_min_greater_equal_than_required", "Must be greater than 0.")
    return None


def matches(pattern: re.Pattern[str], code: str, message: str) -> Check:
    """Empty strings pass (`required` is a check of its own), as in PocketBase."""

    def check(value: Any) -> FieldError | None:
        return FieldError(code, message) if value and not pattern.match(value) else None

    return check


def one_line(value: Any) -> FieldError | None:
    """No control characters: the value goes into mail headers or HTML titles."""
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
        return FieldError("validation_invalid_value", "Must not contain control characters.")
    return None


_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")


def host(value: Any) -> FieldError | None:
    """An IP address or a DNS name (PocketBase's `is.Host`)."""
    if not value:
        return None
    try:
        ipaddress.ip_address(value.strip("[]"))
        return None
    except ValueError:
        pass
    labels = value.removesuffix(".").split(".")
    if len(value) <= 253 and all(_LABEL.match(label) for label in labels):
        return None
    return FieldError("validation_is_host", "Must be a valid IP address or DNS name.")


# ------------------------------------------------------------------ the registry


class RuntimeSettings(Generic[S]):
    """The declared sections, their stored values, and the settings object in effect:
    `base` (a frozen dataclass such as Settings, with `sources` naming what was set
    explicitly) with the stored values of unlocked fields put in."""

    def __init__(self, params: ParamsStore, base: S) -> None:
        self.params = params
        self.base = base
        self.sources: Mapping[str, str] = getattr(base, "sources", {})
        self._sections: dict[str, Section] = {}
        self._version = -1
        self._checked = -math.inf  # monotonic time of the last refresh
        self._stored: Documents = {}
        self._values: dict[str, dict[str, Any]] = {}
        self._current: S = base
        # awaited before every write; one may refuse it by raising (backups: 503 while a
        # restore runs)
        self.write_gates: list[Callable[[], Awaitable[None]]] = []

    def __repr__(self) -> str:  # the values hold secrets
        return f"RuntimeSettings(sections={list(self._sections)}, version={self._version})"

    def declare(self, *sections: Section) -> None:
        """Add sections; a name taken or reserved, a field with neither a start-up setting
        nor a `base`, or a start-up setting another field already stands for is an error."""
        claimed = {f.setting for s in self._sections.values() for f in s.fields if f.setting}
        for section in sections:
            name = section.name
            if name in self._sections or name == READ_ONLY_KEY or name.startswith("_"):
                raise ValueError(f"runtime settings section {name!r}: taken or reserved")
            for f in section.fields:
                if not (f.setting or f.base):
                    raise ValueError(f"{name}.{f.name}: needs a setting or a base")
                if f.setting and f.setting in claimed:
                    raise ValueError(f"{name}.{f.name}: {f.setting} has a field already")
                claimed.add(f.setting)
            self._sections[name] = section
        self._apply(self._version, self._stored)

    @property
    def sections(self) -> list[Section]:
        return list(self._sections.values())

    async def open(self) -> None:
        await self.params.ensure_schema()
        self._apply(*await self.params.load())

    # -------------------------------------------------------------- reading

    async def refresh(self, max_age: float = 0.0) -> None:
        """Catch up with writes of any process: one indexed read, a reload when it moved.
        With `max_age`, nothing when this process refreshed less than that many seconds ago
        (a hot path, such as a download, reads the settings table once a second at most)."""
        now = time.monotonic()
        if max_age and now - self._checked < max_age:
            return
        self._checked = now
        if await self.params.version() != self._version:
            version, stored = await self.params.load()
            if version >= self._version:  # a PATCH here may have applied a newer one meanwhile
                self._apply(version, stored)

    async def current(self) -> S:
        """The settings object in effect now (after `refresh`)."""
        await self.refresh()
        return self._current

    def value(self, section: str, field: str) -> Any:
        """A value in effect as of the last refresh (secrets included: for internal use)."""
        return self._values[section][field]

    async def get(self, section: str, field: str) -> Any:
        """A value in effect now (after `refresh`): how a field with no start-up setting
        behind it (a team's own) is read."""
        await self.refresh()
        return self._values[section][field]

    def source(self, f: Field) -> str | None:
        """What set `f` at start-up (it is read-only then), or None."""
        return next((self.sources[name] for name in f.locks if name in self.sources), None)

    def read_only(self) -> dict[str, str]:
        return {
            f"{s.name}.{f.name}": src
            for s in self._sections.values()
            for f in s.fields
            if (src := self.source(f)) is not None
        }

    def public(self) -> dict[str, Any]:
        """What the API shows: the values in effect without secrets, and `readOnly`, each
        explicitly set field's path (`smtp.host`) with what set it."""
        out: dict[str, Any] = {
            s.name: {
                f.name: _shown(f, self._values[s.name][f.name]) for f in s.fields if not f.secret
            }
            for s in self._sections.values()
        }
        out[READ_ONLY_KEY] = self.read_only()
        return out

    def _effective(self, stored: Documents, candidate: bool = False) -> dict[str, dict[str, Any]]:
        """The values in effect with `stored`. A stored value of the wrong type or breaking
        its field's rules (written by hand, or by another version) is left out, with a
        warning; a `candidate` (a PATCH being checked) keeps its values for `_invalid`."""
        out: dict[str, dict[str, Any]] = {}
        for s in self._sections.values():
            doc = stored.get(s.name, {})
            values: dict[str, Any] = {}
            for f in s.fields:
                values[f.name] = f.base_value(self.base)
                if f.name not in doc or self.source(f) is not None:
                    continue
                try:
                    value = f.decode(doc[f.name])
                    problem = None if candidate else f.problem(value)
                    if problem is not None:
                        raise problem
                    values[f.name] = value
                except FieldError as exc:  # the value stays out of the log (secrets)
                    log.warning("stored setting %s.%s ignored: %s", s.name, f.name, exc)
            out[s.name] = values
        return out

    def _apply(self, version: int, stored: Documents) -> None:
        values = self._effective(stored)
        changes: dict[str, Any] = {}
        for s in self._sections.values():
            changes.update(s.settings_of(values[s.name]))
        self._current = dataclasses.replace(self.base, **changes)  # type: ignore[type-var]
        self._values, self._stored, self._version = values, stored, version

    # -------------------------------------------------------------- writing

    async def update(self, body: Mapping[str, Any]) -> None:
        """Apply a PATCH body: per section, fields to set, `null` to forget a stored value
        (a section `null`: all of them). Raises ApiError 400 in PocketBase's shape, with
        one entry per field in `data`, and writes nothing then."""
        changes, errors = self._parse(body)
        if errors:
            raise ApiError(400, LOADING, errors)
        for gate in self.write_gates:
            await gate()
        locked = self._locked_changes(changes)
        if not changes and not locked:
            await self.refresh()
            return

        def change(stored: Documents) -> dict[str, dict[str, Any] | None]:
            writes: dict[str, dict[str, Any] | None] = {}
            for name, fields in changes.items():
                doc = dict(stored.get(name, {}))
                for fname, value in fields.items():
                    if value is _FORGET:
                        doc.pop(fname, None)
                    elif isinstance(value, dict) and isinstance(doc.get(fname), dict):
                        doc[fname] = {**doc[fname], **value}  # an object field: merged
                    else:
                        doc[fname] = value
                writes[name] = doc or None
            problems = self._invalid(self._effective({**stored, **_present(writes)}, True))
            for name, fields in locked.items():  # every problem in one answer
                problems.setdefault(name, {}).update(fields)
            if problems:
                raise ApiError(400, SAVING, problems)
            return writes

        self._apply(*await self.params.update(change))

    def _parse(self, body: Mapping[str, Any]) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
        changes: dict[str, dict[str, Any]] = {}
        errors: dict[str, Any] = {}
        for key, raw in body.items():
            section = self._sections.get(key)
            if key == READ_ONLY_KEY:
                continue  # sent back with the rest of a GET: output only
            if section is None:
                errors[key] = _unknown("Shipyard has no settings of this name.")
                continue
            if raw is None:
                changes[key] = {f.name: _FORGET for f in section.fields}
                continue
            if not isinstance(raw, dict):
                errors[key] = FieldError("validation_invalid_value", "Must be an object.")
                continue
            fields, problems = {}, {}
            for fname, value in raw.items():
                f = section.field(fname)
                if f is None:
                    problems[fname] = _unknown("Shipyard has no such setting.")
                elif value is None:
                    fields[fname] = _FORGET
                else:
                    try:
                        decoded = f.decode(value)
                        # an object is stored as sent, merged key by key (update)
                        fields[fname] = value if f.kind == "object" else decoded
                    except FieldError as exc:
                        problems[fname] = exc
            if problems:
                errors[key] = problems
            if fields:
                changes[key] = fields
        return changes, _dicts(errors)

    def _locked_changes(self, changes: dict[str, dict[str, Any]]) -> dict[str, Any]:
        """A read-only field may be sent unchanged (a GET sent back whole), never changed;
        a secret one not at all (comparing would tell whether a guess was right)."""
        errors: dict[str, Any] = {}
        for name, fields in changes.items():
            section = self._sections[name]
            for fname, value in list(fields.items()):
                f = section.field(fname)
                assert f is not None  # noqa: S101  (narrows a type for mypy; established above)
                src = self.source(f)
                if src is None:
                    continue
                del fields[fname]  # the stored value is not used while the field is locked
                if value is _FORGET or (
                    not f.secret and value == _shown(f, f.base_value(self.base))
                ):
                    continue
                errors.setdefault(name, {})[fname] = FieldError(
                    "validation_read_only",
                    f"Read-only: set by {src}, which takes precedence over stored settings.",
                ).to_dict()
        for name in [n for n, fields in changes.items() if not fields]:
            del changes[name]
        return errors

    def _invalid(self, values: dict[str, dict[str, Any]]) -> dict[str, Any]:
        """Every rule broken by the values in effect, on fields the API may change."""
        errors: dict[str, Any] = {}
        for s in self._sections.values():
            problems: dict[str, FieldError] = {}
            for f in s.fields:
                problem = f.problem(values[s.name][f.name])
                if problem is not None:
                    problems[f.name] = problem
            if s.validate is not None:
                for fname, problem in s.validate(values[s.name]).items():
                    problems.setdefault(fname, problem)
            for fname, problem in problems.items():
                owner = s.field(fname)
                if owner is not None and self.source(owner) is None:  # else the operator's
                    errors.setdefault(s.name, {})[fname] = problem.to_dict()
        return errors


def _shown(f: Field, value: Any) -> Any:
    if f.hidden and isinstance(value, dict):
        return {k: v for k, v in value.items() if k not in f.hidden}
    return value


class _Forget:
    def __repr__(self) -> str:
        return "FORGET"


_FORGET: Any = _Forget()


def _unknown(message: str) -> FieldError:
    return FieldError("validation_unknown_field", message)


def _dicts(errors: dict[str, Any]) -> dict[str, Any]:
    return {k: v.to_dict() if isinstance(v, FieldError) else _dicts(v) for k, v in errors.items()}


def _present(writes: Mapping[str, dict[str, Any] | None]) -> Documents:
    return {k: v if v is not None else {} for k, v in writes.items()}
