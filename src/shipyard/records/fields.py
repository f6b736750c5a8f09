"""Field types with PocketBase's names, options, zero values and validation error codes.

Storage is the same on both engines so that one filter compiler serves both: scalars in
native columns, dates as PocketBase's fixed-width text (`2006-01-02 15:04:05.000Z`, which
sorts and compares as text), and JSON and multi-valued fields as JSON text.
"""

from __future__ import annotations

import math
import re
import zlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, ClassVar

import orjson

from shipyard.kernel.errors import FieldError
from shipyard.kernel.uploads import Upload
from shipyard.records.file_checks import check_names, check_uploads
from shipyard.tools.ids import random_string

NAME_RE = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]{0,99}$")
EMAIL_RE = re.compile(r"^[^@\s\x00-\x1f\x7f]+@[^@\s\x00-\x1f\x7f]+\.[^@\s\x00-\x1f\x7f]+$")
URL_RE = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://[^\s/?#\x00-\x1f\x7f]+[^\s\x00-\x1f\x7f]*$")
DATE_FMT = "%Y-%m-%d %H:%M:%S"

REQUIRED = FieldError("validation_required", "Cannot be blank.")


def format_date(dt: datetime) -> str:
    dt = dt.astimezone(UTC)
    return dt.strftime(DATE_FMT) + f".{dt.microsecond // 1000:03d}Z"


def now_str() -> str:
    return format_date(datetime.now(UTC))


def parse_date(value: Any) -> str:
    """Normalize a date-like input to PocketBase's storage format ("" stays "")."""
    if value is None or value == "":
        return ""
    if isinstance(value, datetime):
        return format_date(value if value.tzinfo else value.replace(tzinfo=UTC))
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            return format_date(datetime.fromtimestamp(float(value), UTC))
        except (OverflowError, OSError, ValueError):
            raise FieldError("validation_invalid_date", "Must be a valid date.") from None
    if not isinstance(value, str):
        raise FieldError("validation_invalid_date", "Must be a valid date.")
    text = value.strip().replace(" ", "T", 1)
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        raise FieldError("validation_invalid_date", "Must be a valid date.") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return format_date(dt)


def _as_list(value: Any) -> list[Any]:
    if value is None or value == "":
        return []
    if isinstance(value, list):
        return value
    return [value]


def _unique(values: list[Any]) -> list[Any]:
    seen: set[Any] = set()
    out = []
    for v in values:
        if v not in seen:
            seen.add(v)
            out.append(v)
    return out


def _num(value: Any) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


@dataclass
class Field:
    """Base of every field type; `options` holds the type-specific PocketBase options."""

    name: str
    type: ClassVar[str] = ""
    id: str = ""
    system: bool = False
    hidden: bool = False
    presentable: bool = False
    required: bool = False
    options: dict[str, Any] = field(default_factory=dict)

    # what the filter compiler needs to know
    storage: ClassVar[str] = "text"  # text | number | bool | json
    OPTION_DEFAULTS: ClassVar[dict[str, Any]] = {}

    def __post_init__(self) -> None:
        if not self.id:
            self.id = default_field_id(self.type, self.name)
        merged = dict(self.OPTION_DEFAULTS)
        merged.update({k: v for k, v in self.options.items() if k in self.OPTION_DEFAULTS})
        self.options = merged

    @property
    def is_multi(self) -> bool:
        return False

    def column_type(self, dialect: str) -> str:
        return "TEXT DEFAULT '' NOT NULL"

    def zero(self) -> Any:
        return ""

    def normalize(self, value: Any) -> Any:
        """Coerce an input (JSON or multipart string) to the stored value, or raise FieldError."""
        if value is None:
            return ""
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise FieldError("validation_invalid_value", "Must be a string.")
        if isinstance(value, str) and "\x00" in value:
            raise FieldError("validation_invalid_value", "Must not contain NUL characters.")
        return value if isinstance(value, str) else _num(value)

    def validate(self, value: Any) -> None:
        if self.required and self.is_blank(value):
            raise REQUIRED

    def is_blank(self, value: Any) -> bool:
        return value in ("", None, 0, [], {})

    def to_json(self, stored: Any) -> Any:
        return "" if stored is None else stored

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "name": self.name,
            "type": self.type,
            "system": self.system,
            "hidden": self.hidden,
            "presentable": self.presentable,
            "required": self.required,
        }
        out.update(self.options)
        return out

    def validate_options(self) -> dict[str, str]:
        """Problems with the field definition itself, keyed by option name."""
        return {}


@dataclass
class TextField(Field):
    type: ClassVar[str] = "text"
    OPTION_DEFAULTS: ClassVar[dict[str, Any]] = {
        "min": 0,
        "max": 0,
        "pattern": "",
        "autogeneratePattern": "",
        "primaryKey": False,
    }

    def validate(self, value: str) -> None:
        super().validate(value)
        if value == "":
            return
        n = len(value)
        lo, hi = int(self.options["min"] or 0), int(self.options["max"] or 0)
        if lo and n < lo:
            raise FieldError(
                "validation_min_text_constraint", f"Must be at least {lo} character(s)."
            )
        max_len = hi or 5000
        if n > max_len:
            raise FieldError(
                "validation_max_text_constraint", f"Must be no more than {max_len} character(s)."
            )
        pattern = self.options["pattern"]
        if pattern and not re.search(pattern, value):
            raise FieldError("validation_invalid_format", "Invalid value format.")

    def validate_options(self) -> dict[str, str]:
        if self.options["pattern"]:
            try:
                re.compile(self.options["pattern"])
            except re.error as exc:
                return {"pattern": f"Invalid regular expression: {exc}"}
        return {}


@dataclass
class EditorField(Field):
    type: ClassVar[str] = "editor"
    OPTION_DEFAULTS: ClassVar[dict[str, Any]] = {"maxSize": 0, "convertURLs": False}

    def validate(self, value: str) -> None:
        super().validate(value)
        limit = int(self.options["maxSize"] or 5 * 1024 * 1024)
        if len(value.encode()) > limit:
            raise FieldError(
                "validation_content_size_limit",
                f"The maximum allowed content size is {limit} bytes",
            )


@dataclass
class NumberField(Field):
    type: ClassVar[str] = "number"
    storage: ClassVar[str] = "number"
    OPTION_DEFAULTS: ClassVar[dict[str, Any]] = {"min": None, "max": None, "onlyInt": False}

    def column_type(self, dialect: str) -> str:
        return ("DOUBLE PRECISION" if dialect == "postgres" else "NUMERIC") + " DEFAULT 0 NOT NULL"

    def zero(self) -> Any:
        return 0

    def normalize(self, value: Any) -> Any:
        if value is None or value == "":
            return 0
        if isinstance(value, bool):
            raise FieldError(
                "validation_not_a_number", "The submitted number is not properly formatted"
            )
        if isinstance(value, str):
            try:
                value = float(value.strip())
            except ValueError:
                raise FieldError(
                    "validation_not_a_number", "The submitted number is not properly formatted"
                ) from None
        if not isinstance(value, (int, float)) or not math.isfinite(value):
            raise FieldError(
                "validation_not_a_number", "The submitted number is not properly formatted"
            )
        return float(value)

    def validate(self, value: float) -> None:
        super().validate(value)
        if self.options["onlyInt"] and not float(value).is_integer():
            raise FieldError("validation_only_int_constraint", "Decimal numbers are not allowed")
        lo, hi = self.options["min"], self.options["max"]
        if lo is not None and value < lo:
            raise FieldError(
                "validation_min_number_constraint", f"Must be greater or equal than {lo}"
            )
        if hi is not None and value > hi:
            raise FieldError("validation_max_number_constraint", f"Must be less or equal than {hi}")

    def to_json(self, stored: Any) -> Any:
        if stored is None:
            return 0
        f = float(stored)
        return int(f) if f.is_integer() and abs(f) < 2**53 else f


@dataclass
class BoolField(Field):
    type: ClassVar[str] = "bool"
    storage: ClassVar[str] = "bool"

    def column_type(self, dialect: str) -> str:
        return "BOOLEAN DEFAULT FALSE NOT NULL"

    def zero(self) -> Any:
        return False

    def normalize(self, value: Any) -> Any:
        if value is None or value == "":
            return False
        if isinstance(value, bool):
            return value
        if isinstance(value, (int, float)) and value in (0, 1):
            return bool(value)
        if isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0"):
            return value.strip().lower() in ("true", "1")
        raise FieldError("validation_invalid_bool", "Must be a boolean.")

    def to_json(self, stored: Any) -> Any:
        return bool(stored)


@dataclass
class EmailField(Field):
    type: ClassVar[str] = "email"
    OPTION_DEFAULTS: ClassVar[dict[str, Any]] = {"exceptDomains": None, "onlyDomains": None}

    def validate(self, value: str) -> None:
        super().validate(value)
        if value == "":
            return
        if len(value) > 255 or not EMAIL_RE.match(value):
            raise FieldError("validation_is_email", "Must be a valid email address.")
        domain = value.rsplit("@", 1)[1].lower()
        only, excl = self.options["onlyDomains"] or [], self.options["exceptDomains"] or []
        if (only and domain not in only) or domain in excl:
            raise FieldError("validation_email_domain_not_allowed", "Email domain is not allowed")


@dataclass
class URLField(Field):
    type: ClassVar[str] = "url"
    OPTION_DEFAULTS: ClassVar[dict[str, Any]] = {"exceptDomains": None, "onlyDomains": None}

    def validate(self, value: str) -> None:
        super().validate(value)
        if value == "":
            return
        if len(value) > 2048 or not URL_RE.match(value):
            raise FieldError("validation_invalid_url", "Must be a valid url")
        host = value.split("://", 1)[1].split("/", 1)[0].split(":", 1)[0].lower()
        only, excl = self.options["onlyDomains"] or [], self.options["exceptDomains"] or []
        if (only and host not in only) or host in excl:
            raise FieldError("validation_url_domain_not_allowed", "Url domain is not allowed")


@dataclass
class DateField(Field):
    type: ClassVar[str] = "date"
    OPTION_DEFAULTS: ClassVar[dict[str, Any]] = {"min": "", "max": ""}

    def normalize(self, value: Any) -> Any:
        return parse_date(value)

    def validate(self, value: str) -> None:
        super().validate(value)
        if value == "":
            return
        lo, hi = self.options["min"], self.options["max"]
        if lo and value < parse_date(lo):
            raise FieldError("validation_min_date_constraint", f"Must be no earlier than {lo}.")
        if hi and value > parse_date(hi):
            raise FieldError("validation_max_date_constraint", f"Must be no later than {hi}.")


@dataclass
class AutodateField(Field):
    type: ClassVar[str] = "autodate"
    OPTION_DEFAULTS: ClassVar[dict[str, Any]] = {"onCreate": True, "onUpdate": False}

    def validate(self, value: Any) -> None:  # set by the server, never required from clients
        return None


@dataclass
class SelectField(Field):
    type: ClassVar[str] = "select"
    OPTION_DEFAULTS: ClassVar[dict[str, Any]] = {"values": [], "maxSelect": 1}

    @property
    def is_multi(self) -> bool:
        return int(self.options["maxSelect"] or 1) > 1

    @property
    def storage(self) -> str:  # type: ignore[override]
        return "json" if self.is_multi else "text"

    def column_type(self, dialect: str) -> str:
        return "TEXT DEFAULT '[]' NOT NULL" if self.is_multi else super().column_type(dialect)

    def zero(self) -> Any:
        return [] if self.is_multi else ""

    def normalize(self, value: Any) -> Any:
        items = [str(v) for v in _as_list(value) if v not in ("", None)]
        if any(isinstance(v, (dict, list)) for v in _as_list(value)):
            raise FieldError("validation_invalid_value", "Invalid value.")
        items = _unique(items)
        if self.is_multi:
            return items
        return items[-1] if items else ""

    def validate(self, value: Any) -> None:
        super().validate(value)
        items = value if isinstance(value, list) else ([value] if value else [])
        limit = int(self.options["maxSelect"] or 1)
        if len(items) > limit:
            raise FieldError("validation_too_many_values", f"Select no more than {limit}")
        allowed = self.options["values"] or []
        for item in items:
            if item not in allowed:
                raise FieldError("validation_invalid_value", f"Invalid value {item}")

    def validate_options(self) -> dict[str, str]:
        vals = self.options["values"]
        if not isinstance(vals, list) or not vals or not all(isinstance(v, str) for v in vals):
            return {"values": "Must be a non-empty list of strings."}
        return {}


@dataclass
class JSONField(Field):
    type: ClassVar[str] = "json"
    storage: ClassVar[str] = "json"
    OPTION_DEFAULTS: ClassVar[dict[str, Any]] = {"maxSize": 0}

    def column_type(self, dialect: str) -> str:
        return "TEXT DEFAULT 'null' NOT NULL"

    def zero(self) -> Any:
        return None

    def normalize(self, value: Any) -> Any:
        return value

    def validate(self, value: Any) -> None:
        if self.required and value in (None, "", [], {}):
            raise REQUIRED
        limit = int(self.options["maxSize"] or 1024 * 1024)
        if len(orjson.dumps(value)) > limit:
            raise FieldError(
                "validation_json_size_limit", f"The maximum allowed JSON size is {limit} bytes"
            )


@dataclass
class RelationField(Field):
    type: ClassVar[str] = "relation"
    OPTION_DEFAULTS: ClassVar[dict[str, Any]] = {
        "collectionId": "",
        "cascadeDelete": False,
        "minSelect": 0,
        "maxSelect": 1,
    }

    @property
    def is_multi(self) -> bool:
        return int(self.options["maxSelect"] or 1) > 1

    @property
    def storage(self) -> str:  # type: ignore[override]
        return "json" if self.is_multi else "text"

    def column_type(self, dialect: str) -> str:
        return "TEXT DEFAULT '[]' NOT NULL" if self.is_multi else super().column_type(dialect)

    def zero(self) -> Any:
        return [] if self.is_multi else ""

    def normalize(self, value: Any) -> Any:
        raw = _as_list(value)
        if any(not isinstance(v, str) or "\x00" in v for v in raw):
            raise FieldError("validation_invalid_value", "Relation ids must be strings.")
        items = _unique([v for v in raw if v])
        if self.is_multi:
            return items
        return items[-1] if items else ""

    def validate(self, value: Any) -> None:
        super().validate(value)
        items = value if isinstance(value, list) else ([value] if value else [])
        lo, hi = int(self.options["minSelect"] or 0), int(self.options["maxSelect"] or 1)
        if items and lo and len(items) < lo:
            raise FieldError("validation_not_enough_values", f"Select at least {lo}")
        if len(items) > hi:
            raise FieldError("validation_too_many_values", f"Select no more than {hi}")


@dataclass
class FileField(Field):
    """Stored file names; new files arrive as uploads (kernel/uploads.py), stored by files/."""

    type: ClassVar[str] = "file"
    OPTION_DEFAULTS: ClassVar[dict[str, Any]] = {
        "maxSelect": 1,
        "maxSize": 0,
        "mimeTypes": [],
        "thumbs": [],
        "protected": False,
    }

    @property
    def is_multi(self) -> bool:
        return int(self.options["maxSelect"] or 1) > 1

    @property
    def max_size(self) -> int:  # PocketBase's 5 MiB when maxSize is 0
        return int(self.options.get("maxSize") or 0) or 5 << 20

    @property
    def storage(self) -> str:  # type: ignore[override]
        return "json" if self.is_multi else "text"

    def column_type(self, dialect: str) -> str:
        return "TEXT DEFAULT '[]' NOT NULL" if self.is_multi else super().column_type(dialect)

    def zero(self) -> Any:
        return [] if self.is_multi else ""

    def normalize(self, value: Any) -> Any:
        raw = _as_list(value)
        if any(not isinstance(v, str | Upload) for v in raw):
            raise FieldError("validation_invalid_value", "File names must be strings.")
        items = _unique([v for v in raw if v != ""])
        if self.is_multi:
            return items
        return items[-1] if items else ""

    def validate(self, value: Any) -> None:
        super().validate(value)
        items = value if isinstance(value, list) else ([value] if value else [])
        limit = int(self.options["maxSelect"] or 1)
        if len(items) > limit:
            raise FieldError("validation_too_many_files", f"The maximum allowed files is {limit}")
        check_uploads(self.options, self.max_size, items)

    def check_names(self, value: Any, old: Any) -> None:
        """Plain names must be files the record has already (PocketBase refuses others)."""
        check_names(_as_list(value), _as_list(old))


@dataclass
class PasswordField(Field):
    """Auth collections' password hash; never serialized."""

    type: ClassVar[str] = "password"
    OPTION_DEFAULTS: ClassVar[dict[str, Any]] = {"min": 8, "max": 71, "pattern": "", "cost": 0}


FIELD_TYPES: dict[str, type[Field]] = {
    cls.type: cls
    for cls in (
        TextField,
        EditorField,
        NumberField,
        BoolField,
        EmailField,
        URLField,
        DateField,
        AutodateField,
        SelectField,
        JSONField,
        RelationField,
        FileField,
        PasswordField,
    )
}

_BASE_KEYS = {"id", "name", "type", "system", "hidden", "presentable", "required"}


def default_field_id(ftype: str, name: str) -> str:
    """PocketBase's id for a field given none: its type and the CRC-32 of its name, so the
    same definition gets the same id in every collection and on every server."""
    return f"{ftype}{zlib.crc32(name.encode())}"


def field_from_dict(data: dict[str, Any]) -> Field:
    """Build a field from PocketBase's JSON shape; raises ValueError with a message."""
    if not isinstance(data, dict):
        raise ValueError("Each field must be an object.")
    ftype = data.get("type")
    cls = FIELD_TYPES.get(ftype) if isinstance(ftype, str) else None
    if cls is None:
        raise ValueError(f"Unknown field type {ftype!r}.")
    name = data.get("name")
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise ValueError(f"Invalid field name {name!r}.")
    options = {k: v for k, v in data.items() if k not in _BASE_KEYS}
    # PocketBase < 0.23 nested options under "options"
    if isinstance(data.get("options"), dict):
        options.update(data["options"])
    fid = data.get("id") or ""
    return cls(
        name=name,
        id=str(fid),
        system=bool(data.get("system", False)),
        hidden=bool(data.get("hidden", False)),
        presentable=bool(data.get("presentable", False)),
        required=bool(data.get("required", False)),
        options=options,
    )


def id_field() -> TextField:
    return TextField(
        name="id",
        id="text3208210256",
        system=True,
        required=True,
        options={
            "min": 15,
            "max": 15,
            "pattern": "^[a-z0-9]+$",
            "autogeneratePattern": "[a-z0-9]{15}",
            "primaryKey": True,
        },
    )


def new_record_id() -> str:
    return random_string(15)
