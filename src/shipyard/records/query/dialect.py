"""Where SQLite and PostgreSQL differ for the filter compiler: typed placeholders, casts
between kinds, reading JSON, counting and walking JSON arrays.

Everything here builds SQL text around terms that are already safe (quoted schema names
and placeholders); nothing a client typed reaches it.
"""

from __future__ import annotations

PG_TYPES = {"text": "TEXT", "number": "DOUBLE PRECISION", "bool": "BOOLEAN"}
ZERO = {"text": "''", "number": "0", "bool": "FALSE"}  # what PocketBase stores for "empty"

_PG_ESCAPED_BACKSLASH = r"E'\\\\'"  # the two characters \\ of JSON text
_PG_ESCAPED_NUL = r"E'\\u0000'"  # the six characters \u0000 of JSON text


def pg_jsonb(col: str) -> str:
    r"""Stored JSON text as JSONB, which cannot hold U+0000: its escape `\u0000` is dropped
    for the comparison (the stored text, and what the API returns, keep it). Without this
    one record holding it would make every filter reading the column fail, for everyone.
    Escaped backslashes are parked on U+0001 first (JSON text never holds it raw), so a
    literal backslash followed by `u0000` is left alone. Rows without the escape pay one
    STRPOS."""
    fixed = (
        f"REPLACE(REPLACE(REPLACE({col}, {_PG_ESCAPED_BACKSLASH}, CHR(1)), "
        f"{_PG_ESCAPED_NUL}, ''), CHR(1), {_PG_ESCAPED_BACKSLASH})"
    )
    return (
        f"CAST(CASE WHEN STRPOS({col}, {_PG_ESCAPED_NUL}) > 0 THEN {fixed} ELSE {col} END AS JSONB)"
    )


class Dialect:
    """The SQL of one engine; stateless, so one instance per engine serves every compile."""

    __slots__ = ("pg",)

    def __init__(self, pg: bool) -> None:
        self.pg = pg

    def ph(self, kind: str) -> str:
        """A placeholder; PostgreSQL needs its type to compare it with anything."""
        return f"CAST(? AS {PG_TYPES[kind]})" if self.pg else "?"

    @property
    def is_not(self) -> str:
        return "IS DISTINCT FROM" if self.pg else "IS NOT"

    @property
    def is_(self) -> str:
        return "IS NOT DISTINCT FROM" if self.pg else "IS"

    def convert(self, term: str, src: str, dst: str, loose: bool = False) -> str:
        """Cast a term between kinds. JSON values stay typed as SQLite's json_extract is
        (the number 5 is not the text '5'); `loose` text (for ~ and :lower) is any JSON
        scalar's text form."""
        if src == "json" and dst != "json":
            if not self.pg:
                if loose or dst == "bool":
                    return term
                types = "'integer', 'real'" if dst == "number" else "'text'"
                return f"(CASE WHEN typeof({term}) IN ({types}) THEN {term} END)"
            if dst == "text":
                if loose:
                    return f"({term} #>> '{{}}')"
                return f"(CASE WHEN jsonb_typeof({term}) = 'string' THEN {term} #>> '{{}}' END)"
            pg_type = PG_TYPES[dst]
            json_type = "number" if dst == "number" else "boolean"
            return (
                f"(CASE WHEN jsonb_typeof({term}) = '{json_type}' "
                f"THEN CAST({term} #>> '{{}}' AS {pg_type}) END)"
            )
        if src == dst:
            return term
        if dst == "text":
            if src == "bool":
                return f"(CASE WHEN {term} THEN 'true' WHEN NOT {term} THEN 'false' END)"
            return f"CAST({term} AS TEXT)"
        if src == "bool" and dst == "number" and self.pg:
            return f"CAST({term} AS INTEGER)"
        return term

    def json_extract(self, col: str, path: tuple[str, ...]) -> str:
        if self.pg:  # JSON null reads as SQL NULL, as with SQLite's json_extract
            value = pg_jsonb(col)
            if path:
                value = f"({value} #> '{{{','.join(path)}}}')"
            return f"NULLIF({value}, 'null')"
        jpath = "$" + "".join(f"[{k}]" if k.isdigit() else f'."{k}"' for k in path)
        return f"json_extract(CASE WHEN json_valid({col}) THEN {col} ELSE json_quote({col}) END, '{jpath}')"

    def length(self, col: str, array: bool) -> str:
        empty = f"{col} IS NULL OR {col} = ''"
        if not array:
            return f"(CASE WHEN {empty} THEN 0 ELSE 1 END)"
        if self.pg:
            counted = f"WHEN LEFT({col}, 1) = '[' THEN jsonb_array_length({pg_jsonb(col)})"
        else:
            counted = f"WHEN json_valid({col}) THEN json_array_length({col})"
        return f"(CASE WHEN {empty} THEN 0 {counted} ELSE 1 END)"

    def array_guard(self, col: str) -> str:
        """A JSON array whatever the column holds (legacy scalars become one item)."""
        if self.pg:
            return f"CASE WHEN LEFT({col}, 1) = '[' THEN {pg_jsonb(col)} ELSE jsonb_build_array({col}) END"
        return (
            f"CASE WHEN CASE WHEN json_valid({col}) THEN json_type({col}) = 'array' ELSE 0 END "
            f"THEN {col} ELSE json_array({col}) END"
        )

    def each_join(self, container: str, alias: str) -> str:
        """A join yielding one row per item of a JSON array column, as `"<alias>"."value"`."""
        guard = self.array_guard(container)
        if self.pg:
            return f'LEFT JOIN LATERAL jsonb_array_elements_text({guard}) AS "{alias}"("value") ON TRUE'
        return f'LEFT JOIN json_each({guard}) AS "{alias}" ON 1=1'

    def array_items(self, container: str, alias: str) -> str:
        """A subquery listing the items of a JSON array column (for `IN`)."""
        guard = self.array_guard(container)
        if self.pg:
            return f"SELECT jsonb_array_elements_text({guard})"
        return f'SELECT "{alias}"."value" FROM json_each({guard}) AS "{alias}"'


SQLITE = Dialect(pg=False)
POSTGRES = Dialect(pg=True)


def dialect_of(name: str) -> Dialect:
    if name == "sqlite":
        return SQLITE
    if name == "postgres":
        return POSTGRES
    raise ValueError(f"unknown dialect {name!r}")
