"""JSON through the standard library's C accelerator alone.

The engine's answers (gatekeeper.engine_api) and the lines the vetters read back
from them are JSON, and `import json` costs about 1.2 ms on the ForceCommand path
(json.decoder, json.scanner, json.encoder and their regular expressions) for two
function calls. `_json`, the C module `json` itself uses, costs about 0.2 ms:
`loads` and `dumps` here drive it the way json.loads and json.dumps do, with the
same results (tests/test_json_codec.py compares both on generated values).

`indented` is json.dumps(value, indent=4, ensure_ascii=False), the way docker
prints inspect output (gatekeeper.redaction shows redacted objects with it): json
writes indented JSON in Python, not C, and json.encoder imports `re`.

Differences, on purpose: NaN and Infinity are refused (ValueError) in both
directions; Go's encoder never writes them, and nothing here needs them.
If this interpreter's `_json` does not take the arguments used here, both
functions fall back to the json module (same answers, its import cost).
"""

from __future__ import annotations

import _json

WHITESPACE = " \t\n\r"


class ScanContext:
    """What `_json.make_scanner` reads from a json.JSONDecoder (strict defaults)."""

    __slots__ = ("strict", "object_hook", "object_pairs_hook", "parse_float", "parse_int", "parse_constant",
                 "memo")

    def __init__(self) -> None:
        self.strict = True
        self.object_hook = None
        self.object_pairs_hook = None
        self.parse_float = float
        self.parse_int = int
        self.parse_constant = refuse_constant
        self.memo: dict[str, str] = {}


def refuse_constant(name: str) -> float:
    raise ValueError(f"{name} is not a JSON number")


def refuse_type(value: object) -> object:
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def loads(text: str) -> object:
    """json.loads(text), NaN/Infinity refused; ValueError when it is not one JSON value."""
    try:
        # the C scanner reads only the attributes a JSONDecoder has; ScanContext has exactly those
        scan = _json.make_scanner(ScanContext())  # type: ignore[arg-type]  # duck-typed decoder
    except (AttributeError, TypeError):  # an interpreter whose _json differs
        import json

        return json.loads(text, parse_constant=refuse_constant)
    start = len(text) - len(text.lstrip(WHITESPACE))
    try:
        value, end = scan(text, start)
    except StopIteration:
        raise ValueError("not JSON") from None
    if text[end:].strip(WHITESPACE):
        raise ValueError("extra data after the JSON value")
    return value


def record_line(value: object) -> str:
    """gatekeeper.audit.encode's line (json.dumps(value, separators=(",", ":")), ASCII, NaN as
    NaN) by the C encoder: the proxy writes a record per request; on the ForceCommand path the
    import of _json is not worth it for two records."""
    try:
        encode = _json.make_encoder(None, refuse_type, _json.encode_basestring_ascii, None, ":", ",",
                                    False, False, True)
    except (AttributeError, TypeError):  # an interpreter whose _json differs
        from gatekeeper.audit import encode as encode_line

        return encode_line(value)
    return "".join(encode(value, 0))


def dumps(value: object, *, sort_keys: bool = False, ensure_ascii: bool = True) -> str:
    """json.dumps(value, separators=(",", ":"), sort_keys=..., ensure_ascii=..., allow_nan=False)."""
    escape = _json.encode_basestring_ascii if ensure_ascii else _json.encode_basestring
    try:
        encode = _json.make_encoder({}, refuse_type, escape, None, ":", ",", sort_keys, False, False)
    except (AttributeError, TypeError):  # an interpreter whose _json differs
        import json

        return json.dumps(value, separators=(",", ":"), sort_keys=sort_keys, ensure_ascii=ensure_ascii,
                          allow_nan=False)
    return "".join(encode(value, 0))


def indented(value: object, indent: int = 4) -> str:
    """json.dumps(value, indent=indent, ensure_ascii=False, allow_nan=False) for the types
    JSON gives back (dict with str keys, list, str, int, float, bool, None)."""
    parts: list[str] = []
    write_indented(value, parts, "\n", " " * indent)
    return "".join(parts)


def write_indented(value: object, parts: list[str], newline: str, step: str) -> None:
    if isinstance(value, dict):
        if not value:
            parts.append("{}")
            return
        inner = newline + step
        opener = "{"
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"keys must be str, not {type(key).__name__}")
            parts.append(opener + inner + _json.encode_basestring(key) + ": ")
            write_indented(item, parts, inner, step)
            opener = ","
        parts.append(newline + "}")
    elif isinstance(value, list | tuple):
        if not value:
            parts.append("[]")
            return
        inner = newline + step
        opener = "["
        for item in value:
            parts.append(opener + inner)
            write_indented(item, parts, inner, step)
            opener = ","
        parts.append(newline + "]")
    else:
        parts.append(dumps(value, ensure_ascii=False))  # a scalar: the same as compact
