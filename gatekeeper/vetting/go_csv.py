"""One CSV record the way Go's encoding/csv (and tonistiigi/go-csvvalue, its
buildx twin) reads it, and the inverse for rewrites.

docker reads `--mount`, `--network name=...` and buildx reads `-o`, `--secret`,
`--cache-to/--cache-from` with a default csv.Reader: fields split on ',', a
field that *starts* with '"' is quoted ('""' inside is one quote), a quote
anywhere else or text after a closing quote is an error. If we split these
values any other way, `'type=bind,"src=/",dst=/h'` would hide its source.
"""

from __future__ import annotations

from gatekeeper.errors import Denied

# Line breaks end a csv record (the rest would be silently dropped by docker),
# NUL never reaches docker intact: both make a value mean two things.
AMBIGUOUS = ("\r", "\n", "\x00")


def read_fields(value: str, what: str) -> list[str]:
    """The fields of one record, or Denied where Go's reader would fail."""
    if not value or any(c in value for c in AMBIGUOUS):
        raise Denied(f"{what}: empty value or line break in {value!r}", rule="csv-syntax")
    fields: list[str] = []
    i = 0
    while True:
        if i < len(value) and value[i] == '"':
            field, i = quoted_field(value, i + 1, what)
        else:
            field, i = bare_field(value, i, what)
        fields.append(field)
        if i >= len(value):
            return fields
        i += 1  # the comma


def bare_field(value: str, start: int, what: str) -> tuple[str, int]:
    end = value.find(",", start)
    end = len(value) if end < 0 else end
    field = value[start:end]
    if '"' in field:
        raise Denied(f"{what}: bare '\"' in field {field!r} (docker refuses it)", rule="csv-syntax")
    return field, end


def quoted_field(value: str, start: int, what: str) -> tuple[str, int]:
    out: list[str] = []
    i = start
    while True:
        close = value.find('"', i)
        if close < 0:
            raise Denied(f"{what}: unterminated quote in {value!r}", rule="csv-syntax")
        out.append(value[i:close])
        after = value[close + 1 : close + 2]
        if after == '"':
            out.append('"')
            i = close + 2
        elif after in ("", ","):
            return "".join(out), close + 1
        else:
            raise Denied(f"{what}: text after a closing quote in {value!r}", rule="csv-syntax")


def write_fields(fields: list[str]) -> str:
    """The record csv.Writer would produce; read_fields(write_fields(f)) == f."""
    return ",".join(quote_field(field) for field in fields)


def quote_field(field: str) -> str:
    if "," in field or '"' in field or field.startswith(" "):
        return '"' + field.replace('"', '""') + '"'
    return field
