"""Dockerfile lines read as docker's parser reads them (gatekeeper.vetting.images
dockerfile_lines, parser_directives, instructions), for every check on a Dockerfile at both
layers (ADD <url>, LABEL keys, FROM and ONBUILD bases, [images]). Trying to cheat: each shape
in tests/dockerfile_shapes.py hides `ADD <url>` from Python's own splitlines/strip/split (the
control) and is refused; tests/e2e/test_dockerfile_reading.py builds them on the engine."""

from __future__ import annotations

import pytest

from gatekeeper.errors import Denied
from gatekeeper.vetting.images import base_images, check_add_sources, instructions, label_keys
from tests.dockerfile_shapes import SHAPES, naive_instructions

URL = "http://127.0.0.1:8080/secret"


def fetches(pairs: list[tuple[str, list[str]]]) -> bool:
    return any(keyword == "ADD" and any("://" in word for word in words) for keyword, words in pairs)


@pytest.mark.parametrize("shape", SHAPES)
def test_hidden_adds_are_seen(shape: str) -> None:
    text = SHAPES[shape].format(url=URL, base="alpine")
    assert not fetches(naive_instructions(text))  # control: Python's own reading misses the ADD
    with pytest.raises(Denied) as refused:
        check_add_sources(text, "Dockerfile")
    assert refused.value.rule == "build-add-url"


ORDINARY = [
    "FROM alpine:3\nRUN apk add --no-cache curl \\\n    git\n\n# a comment\nCOPY . /app\nCMD [\"x\"]\n",
    "# syntax=docker/dockerfile:1\n# escape=`\nFROM alpine\nRUN echo a `\n  b\nLABEL a=b\r\n",
    "FROM alpine\nRUN a \\\n# comment inside\n\n    b\n",
    "  from alpine AS build\n\tCOPY --from=build /x /y\n",
]


@pytest.mark.parametrize("text", ORDINARY)
def test_ordinary_dockerfiles_read_as_before(text: str) -> None:
    from gatekeeper.vetting.images import parser_directives

    assert instructions(text, parser_directives(text)[0]) == naive_instructions(text)


def test_a_bom_does_not_hide_the_first_from_or_a_label() -> None:
    text = "\ufeffFROM evil/base\nLABEL\x0bgatekeeper.owner=x\n"
    assert base_images(text, {}, "Dockerfile") == [("evil/base", "")]
    assert label_keys(text) == ["gatekeeper.owner"]
    # control: Python's reading has no FROM, and a LABEL without keys
    assert [keyword for keyword, _words in naive_instructions(text)] == \
        ["\ufeffFROM", "LABEL", "GATEKEEPER.OWNER=X"]


HEREDOC_TERMINATOR = "FROM alpine\nRUN <<'A\\'\ntrue\nA\\\nADD {url} /secret\n"


def test_a_heredoc_terminator_ending_in_the_escape_does_not_hide_the_next_line() -> None:
    """BuildKit ends the heredoc at the line `A\\` (its delimiter, quoted) and reads the ADD
    after it as an instruction; a continuation reading joins the ADD to `A`."""
    text = HEREDOC_TERMINATOR.format(url=URL)
    assert not fetches(naive_instructions(text))  # control
    with pytest.raises(Denied) as refused:
        check_add_sources(text, "Dockerfile")
    assert refused.value.rule == "build-add-url"
    plain = "FROM alpine\nRUN apk add \\\n    curl\n"  # no heredoc: continuation lines stay parts
    assert instructions(plain, "\\") == [("FROM", ["alpine"]), ("RUN", ["apk", "add", "curl"])]
