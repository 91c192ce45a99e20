"""gatekeeper.json_codec is json.loads / json.dumps (compact) without importing json.

Property: for generated values, `dumps` equals json.dumps byte for byte and
`loads` of any json.dumps text gives back what json.loads gives; text that is not
exactly one JSON value is refused by both. NaN and Infinity are refused by ours."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from gatekeeper.audit import encode
from gatekeeper.json_codec import dumps, indented, loads, record_line

finite = st.floats(allow_nan=False, allow_infinity=False)
values = st.recursive(
    st.none() | st.booleans() | st.integers() | finite | st.text(st.characters(exclude_categories=["Cs"])),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(), inner, max_size=5),
    max_leaves=20,
)


@given(values, st.booleans(), st.booleans())
@example({"b": "<&>\u2028", "a": [None, True, -0.0, 1e300, 10**40]}, True, False)
def test_dumps_is_json_dumps(value: object, sort_keys: bool, ensure_ascii: bool) -> None:
    expected = json.dumps(value, separators=(",", ":"), sort_keys=sort_keys, ensure_ascii=ensure_ascii)
    assert dumps(value, sort_keys=sort_keys, ensure_ascii=ensure_ascii) == expected


any_character = st.characters(exclude_categories=())  # lone surrogates too (surrogateescape'd bytes)
record_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(any_character),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(any_character), inner, max_size=5),
    max_leaves=20,
)


@given(record_values)
@example({"reason": "caf\udce9 \u2028\x00", "n": [float("nan"), float("inf"), -0.0, 10**40]})
def test_record_line_is_the_audit_encoder_s_line(value: object) -> None:
    """The proxy's records (C encoder) are byte for byte what gatekeeper.audit.encode writes."""
    assert record_line(value) == encode(value)


@given(values)
@example({"Id": "x", "Args": [], "Config": {}, "Env": ["A=\u00e9\u2028"], "Nested": [[{}], {"k": [1, 2.5]}]})
@example([])
def test_indented_is_json_dumps_indent_4(value: object) -> None:
    """What gatekeeper.redaction prints for docker inspect: docker's own layout."""
    assert indented(value) == json.dumps(value, indent=4, ensure_ascii=False)


@given(values, st.sampled_from(["", " ", "\n", "\t\r\n "]))
def test_loads_is_json_loads(value: object, space: str) -> None:
    text = space + json.dumps(value, indent=1) + space
    assert loads(text) == json.loads(text)


@given(st.text(max_size=30))
def test_loads_refuses_what_json_refuses(text: str) -> None:
    try:
        expected = json.loads(text)
    except ValueError:
        with pytest.raises(ValueError):
            loads(text)
        return
    if "NaN" in text or "Infinity" in text:
        return  # ours refuses them (below)
    assert loads(text) == expected


@pytest.mark.parametrize("text", ["", " ", "{", "[1,]", "1 2", "NaN", '{"a":Infinity}', "-Infinity",
                                  '"a\x01"', "{'a':1}", '{"a":1}}', "nul"])
def test_loads_refuses_non_json(text: str) -> None:
    with pytest.raises(ValueError):
        loads(text)


@pytest.mark.parametrize("value", [math.nan, math.inf, [1, -math.inf]])
def test_dumps_refuses_nan_and_infinity(value: object) -> None:
    with pytest.raises(ValueError):
        dumps(value)
