"""``-o short`` and ``-o verbose``: streaming text for people (no rich, no table in memory).

Short is one line per command, fitted to the terminal: time, decision,
profile, (key prefix on wide terminals), the command, then for a refusal the
rule id and as much of the reason as fits, for an allowed command its exit
status once it arrived. Every column has a fixed width for a given terminal
width, so rows line up without knowing the rows that come later.

Verbose is every field of the record, one ``name=value`` per line (escaped),
a blank line between records, like ``journalctl -o verbose``.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final, TextIO

from gatekeeper.operator.views.escape import shown
from gatekeeper.operator.views.records import Event, text_field
from gatekeeper.operator.views.rows import Row, row_of, with_exit

WIDE_AT: Final = 100  # from this width on, short lines also show a key prefix
KEY_SHOWN: Final = 8
PROFILE_SHOWN: Final = 8
TIME_SHOWN: Final = 14  # MM-DD HH:MM:SS
DECISION_SHOWN: Final = 5
MIN_COMMAND: Final = 16
UNLIMITED_COMMAND: Final = 48  # column width when not fitting a terminal (lines are never cut)
ELLIPSIS: Final = "…"

RESET: Final = "\x1b[0m"
COLOURS: Final = {"deny": "\x1b[1;31m", "allow": "\x1b[32m", "dim": "\x1b[2m"}


@dataclass(frozen=True)
class Layout:
    """Column widths for one terminal width (None: do not cut, e.g. in a pipe)."""

    width: int | None
    colour: bool = False

    @property
    def show_key(self) -> bool:
        return self.width is None or self.width >= WIDE_AT

    def left_width(self) -> int:
        key = KEY_SHOWN + 1 if self.show_key else 0
        return TIME_SHOWN + 1 + DECISION_SHOWN + 1 + PROFILE_SHOWN + 1 + key

    def command_width(self) -> int:
        if self.width is None:
            return UNLIMITED_COMMAND
        rest = self.width - self.left_width() - 1
        return max(MIN_COMMAND, rest * 55 // 100)

    def tail_width(self) -> int | None:
        if self.width is None:
            return None
        return max(self.width - self.left_width() - self.command_width() - 1, 0)

    def header(self) -> str:
        return self.line("TIME (UTC)", "WHAT", "PROFILE", "KEY", "COMMAND", "RULE / EXIT", "")

    def line(
        self,
        time: str,
        decision: str,
        profile: str,
        key: str,
        command: str,
        tail: str,
        kind: str,
    ) -> str:
        cells = [
            self.paint(pad(clip(time, TIME_SHOWN), TIME_SHOWN), "dim"),
            self.paint(pad(clip(decision, DECISION_SHOWN), DECISION_SHOWN), kind),
            pad(clip(profile, PROFILE_SHOWN), PROFILE_SHOWN),
        ]
        if self.show_key:
            cells.append(pad(clip(key, KEY_SHOWN), KEY_SHOWN))
        width = self.command_width()
        tail_width = self.tail_width()
        cells.append(pad(command if self.width is None else clip(command, width), width))
        cells.append(tail if tail_width is None else clip(tail, tail_width))
        return " ".join(cells).rstrip()

    def paint(self, text: str, kind: str) -> str:
        colour = COLOURS.get(kind)
        return f"{colour}{text}{RESET}" if self.colour and colour else text


def short_line(row: Row, layout: Layout) -> str:
    kind = "allow" if row.decision == "allow" else "deny"
    word = "allow" if kind == "allow" else ("deny" if row.decision == "deny" else row.decision)
    tail = row.outcome if kind == "allow" else row.why
    time = row.time[5:] if len(row.time) == 19 else row.time
    key = row.key.removeprefix("SHA256:")[:KEY_SHOWN]  # a prefix --key accepts
    return layout.line(time, word, row.profile, key, row.command, tail, kind)


def write_short(events: Iterable[Event], out: TextIO, layout: Layout, *, header: bool = False) -> None:
    write = out.write
    if header:
        write(layout.header() + "\n")
    for event in events:
        write(short_line(row_of(event), layout) + "\n")


def write_verbose(events: Iterable[Event], out: TextIO) -> None:
    write = out.write
    for event in events:
        record = with_exit(event)
        lines = [f"    {shown(str(name), 40)}={shown(text_field(record, name), 4096)}" for name in record]
        write(shown(text_field(record, "ts"), 40) + "\n" + "\n".join(lines) + "\n\n")


# ---------------------------------------------------------------- display width


def char_width(char: str) -> int:
    return 2 if unicodedata.east_asian_width(char) in ("W", "F") else 1


def display_width(text: str) -> int:
    if text.isascii():
        return len(text)
    return sum(map(char_width, text))


def clip(text: str, width: int) -> str:
    """``text`` cut to ``width`` terminal cells, ending in … when cut."""
    if display_width(text) <= width:
        return text
    if width <= 0:
        return ""
    used, kept = 0, []
    for char in text:
        cells = char_width(char)
        if used + cells > width - 1:
            break
        kept.append(char)
        used += cells
    return "".join(kept) + ELLIPSIS


def pad(text: str, width: int) -> str:
    return text + " " * max(width - display_width(text), 0)
