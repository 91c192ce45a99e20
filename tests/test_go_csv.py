"""The CSV reader docker and buildx use for --mount, -o, --secret, --cache-*:
Go's encoding/csv semantics, a round trip for our rewrites, and no crash on
any input (only Denied)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gatekeeper.errors import Denied
from gatekeeper.vetting.go_csv import read_fields, write_fields

READS = [
    ("type=bind,src=/,dst=/h", ["type=bind", "src=/", "dst=/h"]),
    ('type=bind,"src=/",dst=/h', ["type=bind", "src=/", "dst=/h"]),
    ('"type=bind,src=/",dst=/h', ["type=bind,src=/", "dst=/h"]),
    ('a,"b ""q"" c"', ["a", 'b "q" c']),
    ("a,", ["a", ""]),
    (",a", ["", "a"]),
    ('""', [""]),
    (" a, b", [" a", " b"]),  # no trimming: TrimLeadingSpace is off
]


@pytest.mark.parametrize(("value", "fields"), READS, ids=[v for v, _ in READS])
def test_reads_like_go(value: str, fields: list[str]) -> None:
    assert read_fields(value, "--mount") == fields


REFUSED = [
    'type=bind,src="/",dst=/h',  # bare quote inside an unquoted field
    '"src=/"x,dst=/h',  # text after the closing quote
    '"src=/',  # unterminated
    ' "src=/"',  # a quote after a space is a bare quote in Go
    "",  # Go's reader returns EOF: docker errors
    "type=bind\nsrc=/",  # a second record docker would silently drop
    "src=/\r",
]


@pytest.mark.parametrize("value", REFUSED)
def test_refuses_what_go_refuses_or_could_misread(value: str) -> None:
    with pytest.raises(Denied):
        read_fields(value, "--mount")


field_text = st.text(alphabet=st.characters(blacklist_characters="\r\n\x00"), max_size=12)


@given(st.lists(field_text, min_size=1, max_size=6).filter(lambda f: f != [""]))
def test_written_fields_read_back(fields: list[str]) -> None:
    assert read_fields(write_fields(fields), "--mount") == fields


@given(st.text(max_size=40))
def test_never_crashes(value: str) -> None:
    try:
        fields = read_fields(value, "--mount")
    except Denied:
        return
    assert fields
