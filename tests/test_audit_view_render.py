"""Hostile strings from the agent are shown visibly escaped and never interpreted.

Every command, key, rule and reason in the log came from the agent (or from
anyone who could append to it). Each case below is rendered through the real
rich console with colours on, and the bytes it writes are checked: the only
escape sequences are rich's own colour codes, no control, bidi, zero-width or
surrogate character gets through, and markup typed by the agent stays text.
"""

from __future__ import annotations

import io
import json
import re
import unicodedata

import pytest

from gatekeeper.operator.views import plain, render
from gatekeeper.operator.views.escape import shown, visible
from gatekeeper.operator.views.records import Event
from gatekeeper.operator.views.rows import row_of
from gatekeeper.operator.views.summary import Tally

HOSTILE = {
    "ansi-colour": "docker ps \x1b[31mred\x1b[0m",
    "clear-screen-and-home": "docker ps \x1b[2J\x1b[H",
    "osc8-hyperlink": "docker ps \x1b]8;;https://evil.example/\x07click\x1b]8;;\x07",
    "osc-window-title": "docker ps \x1b]0;pwned\x07",
    "c1-csi": "docker ps \x9b31m",
    "bell": "docker ps \x07",
    "backspaces-hide-exec": "docker exec\x08\x08\x08\x08ps x",
    "carriage-return-overwrites": "docker exec x sh\rdocker ps       ",
    "newline-forges-a-row": "docker ps\n2026-11-25 08:00:00  ALLOW  docker ps",
    "nul-and-del": "docker ps\x00\x7f",
    "rich-markup-colour": "docker ps [bold red]ALLOW[/bold red]",
    "rich-markup-link": "docker ps [link=https://evil.example]docs[/link]",
    "rich-bare-close-tag": "docker ps [/]",
    "rich-emoji-code": "docker ps :smile: :warning:",
    "bidi-override": "docker ps \u202egnp.exe",
    "bidi-isolates": "docker \u2066exec\u2069 ps",
    "zero-width-space": "docker e\u200bxec",
    "zero-width-joiner-and-bom": "docker\u200d \ufeffps",
    "combining-overlay": "docker e\u0338xec",
    "line-separator": "docker ps\u2028docker exec",
    "nbsp": "docker\u00a0ps",
    "invalid-utf8-byte": "docker ps \udcff\udcfe",
    "lone-surrogate": "docker ps \ud800",
    "private-use": "docker ps \ue000",
    "huge": "docker ps " + "A" * 100_000,
}

ROGUE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
RICH_SGR = re.compile(r"\x1b\[[0-9;]*m")
RED = re.compile(r"\x1b\[(?:[0-9;]*;)?(?:31|91)(?:;[0-9;]*)?m")


def hostile_record(text: str) -> dict[str, object]:
    return {
        "v": 1,
        "ts": "2026-11-25T08:00:00.000000Z",
        "event": "decision",
        "session": "h1",
        "user": text,
        "client": f"{text} 1 2 3",
        "key": text,
        "cmd": text,
        "canonical": text,
        "decision": "allow",  # allowed rows use no red: any red would come from the agent
        "rule": text,
        "reason": text,
    }


def rendered(draw: object) -> str:
    """What a colour terminal receives when ``draw(console)`` prints."""
    out = io.StringIO()
    draw(render.make_console(out, force_terminal=True, color_system="truecolor"))  # type: ignore[operator]
    return out.getvalue()


def assert_terminal_safe(output: str) -> None:
    text = RICH_SGR.sub("", output)
    assert not ROGUE.search(text.replace("\n", "")), repr(ROGUE.search(text.replace("\n", "")))
    assert not RED.search(output), "red appeared: agent markup or ANSI was interpreted"
    hidden = {c for c in text if unicodedata.category(c) in {"Cf", "Co", "Cs", "Zl", "Zp", "Mn", "Me"}}
    assert not hidden, f"invisible characters reached the terminal: {hidden!r}"
    output.encode("utf-8")  # no lone surrogates


@pytest.mark.parametrize("text", HOSTILE.values(), ids=HOSTILE.keys())
def test_listing_table_is_terminal_safe(text: str) -> None:
    row = row_of(Event(hostile_record(text), {"event": "exit", "exit": text}))
    output = rendered(lambda console: render.print_events([row], console))
    assert_terminal_safe(output)


@pytest.mark.parametrize("text", HOSTILE.values(), ids=HOSTILE.keys())
def test_follow_line_is_terminal_safe(text: str) -> None:
    row = row_of(Event(hostile_record(text), None))
    assert_terminal_safe(rendered(lambda console: render.print_row_line(row, console)))


@pytest.mark.parametrize("text", HOSTILE.values(), ids=HOSTILE.keys())
def test_summary_is_terminal_safe(text: str) -> None:
    tally = Tally()
    tally.add({**hostile_record(text), "decision": "deny"})
    result = tally.result()
    output = rendered(lambda console: render.print_summary(result, console))
    assert_terminal_safe(output)


@pytest.mark.parametrize(
    "text", [HOSTILE["ansi-colour"], HOSTILE["bidi-override"], HOSTILE["osc8-hyperlink"]]
)
def test_the_check_itself_catches_an_unescaped_render(text: str) -> None:
    """Meta-test: printing the raw string (what we must never do) fails the check."""
    from rich.text import Text

    output = rendered(lambda console: console.print(Text.from_ansi(text) if "\x1b[" in text else Text(text)))
    with pytest.raises(AssertionError):
        assert_terminal_safe(output)


def test_colours_are_on_so_the_red_check_means_something() -> None:
    row = row_of(Event({**hostile_record("docker exec x sh"), "decision": "deny"}, None))
    assert RED.search(rendered(lambda console: render.print_events([row], console)))


@pytest.mark.parametrize(
    ("text", "literal"),
    [
        pytest.param("docker ps [bold red]ALLOW[/bold red]", "[bold red]ALLOW[/bold red]", id="colour-tag"),
        pytest.param(
            "docker ps [link=https://evil.example]docs[/link]", "[link=https://evil.example]", id="link"
        ),
        pytest.param("docker ps [/]", "[/]", id="bare-close"),
        pytest.param("docker ps :smile:", ":smile:", id="emoji-code"),
    ],
)
def test_markup_is_shown_as_typed(text: str, literal: str) -> None:
    row = row_of(Event(hostile_record(text), None))
    output = rendered(lambda console: render.print_row_line(row, console))
    assert literal in RICH_SGR.sub("", output)
    assert "\x1b]8;" not in output, "no hyperlink"


# ---------------------------------------------------------------- the escaping itself

ESCAPES = [
    ("docker ps", "docker ps", "plain-ascii-untouched"),
    ("caf\u00e9 \u4e2d\u6587", "caf\u00e9 \u4e2d\u6587", "printable-unicode-untouched"),
    ("a\\b", "a\\\\b", "backslash-doubled-so-escapes-are-unambiguous"),
    ("\\x1b", "\\\\x1b", "literal-backslash-x-is-not-an-escape"),
    ("\x1b[31m", "\\x1b[31m", "esc"),
    ("\n\r\t", "\\n\\r\\t", "newline-return-tab"),
    ("\x00\x7f", "\\x00\\x7f", "nul-del"),
    ("\x9b", "\\u009b", "c1-control"),
    ("\u202e", "\\u202e", "bidi"),
    ("\u200b\ufeff", "\\u200b\\ufeff", "zero-width"),
    ("e\u0301", "e\\u0301", "combining"),
    ("\u00a0", "\\u00a0", "nbsp"),
    ("\udcff", "\\xff", "invalid-byte-shown-as-the-byte"),
    ("\ud800", "\\ud800", "lone-surrogate"),
    ("\U000e0041", "\\U000e0041", "tag-character"),
]


@pytest.mark.parametrize(("raw", "escaped"), [pytest.param(r, e, id=i) for r, e, i in ESCAPES])
def test_visible(raw: str, escaped: str) -> None:
    assert visible(raw) == escaped


def test_long_text_is_clipped_before_escaping() -> None:
    assert shown("\x1b" * 10, 3) == "\\x1b\\x1b\\x1b…[+7 chars]"
    assert shown("abc", 3) == "abc"


# ---------------------------------------------------------------- pipes and scripts


@pytest.mark.parametrize("text", HOSTILE.values(), ids=HOSTILE.keys())
def test_plain_text_is_one_clean_line(text: str) -> None:
    out = io.StringIO()
    plain.write_plain([Event(hostile_record(text), None)], out)
    line = out.getvalue()
    assert line.endswith("\n")
    assert line.count("\n") == 1
    assert not ROGUE.search(line[:-1].replace("\t", "")), "only our tabs and newline"
    assert len(line.split("\t")) == 6, "fields cannot be split or merged by the agent"


@pytest.mark.parametrize("text", HOSTILE.values(), ids=HOSTILE.keys())
def test_json_lines_are_printable_ascii_and_round_trip(text: str) -> None:
    out = io.StringIO()
    record = hostile_record(text)
    plain.write_json_lines([Event(record, None)], out)
    line = out.getvalue()
    assert line.isascii()
    assert all(" " <= c <= "~" for c in line[:-1])
    assert json.loads(line) == record
