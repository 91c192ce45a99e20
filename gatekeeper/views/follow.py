"""``gatekeeper audit --follow``: new records as they are written.

Polls the file (no inotify dependency). Survives logrotate: when the path
names a new file, the old one is read to its end and the new one from its
start; when the file shrinks (truncated in place) reading restarts at 0.
"""

from __future__ import annotations

import os
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Iterator
from typing import IO, Final

from gatekeeper.views.filters import Criteria, matcher
from gatekeeper.views.records import (
    UNKNOWN_LINE,
    Batch,
    Event,
    ReadStats,
    Record,
    is_decision,
    is_exit,
    line_batches,
    records_in,
)

POLL_SECONDS: Final = 0.5
MAX_LINE: Final = 16 * 1024 * 1024  # a writer that never ends its line cannot exhaust memory
REMEMBERED_SESSIONS: Final = 1024
TAIL_SCAN: Final = 64 * 1024


def follow_events(
    path: str,
    criteria: Criteria,
    stats: ReadStats,
    *,
    backlog: int,
    keep_going: Callable[[], bool] = lambda: True,
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[Event]:
    """The last ``backlog`` matching decisions, then every new one (and exits)."""
    position, recent = read_backlog(path, criteria, stats, backlog)
    yield from (Event(record, None) for record in recent)
    batches = follow_batches(path, start=position, keep_going=keep_going, sleep=sleep)
    yield from live_events(records_in(batches, path, stats), criteria)


def read_backlog(path: str, criteria: Criteria, stats: ReadStats, backlog: int) -> tuple[int, deque[Record]]:
    """Matching decisions already in the file, and where its last complete line ends."""
    check = matcher(criteria)
    with open(path, "rb") as stream:
        end = end_of_last_line(stream)
        stream.seek(0)
        records = records_in(line_batches(stream, stats, (), end), path, stats)
        return end, deque((r for r in records if is_decision(r) and check(r)), maxlen=backlog)


def end_of_last_line(stream: IO[bytes]) -> int:
    """Offset just past the last newline (0 if none): where unfinished text begins."""
    end = os.fstat(stream.fileno()).st_size
    while end > 0:
        start = max(end - TAIL_SCAN, 0)
        stream.seek(start)
        found = stream.read(end - start).rfind(b"\n")
        if found >= 0:
            return start + found + 1
        end = start
    return 0


def live_events(records: Iterable[Record], criteria: Criteria) -> Iterator[Event]:
    """Matching decisions as they come; an exit re-shows its decision with the status."""
    check = matcher(criteria)
    shown: OrderedDict[object, Record] = OrderedDict()
    for record in records:
        if is_decision(record) and check(record):
            remember(shown, record)
            yield Event(record, None)
        elif is_exit(record) and record.get("session") in shown:
            yield Event(shown.pop(record.get("session")), record)


def remember(shown: OrderedDict[object, Record], record: Record) -> None:
    session = record.get("session")
    if record.get("decision") == "allow" and type(session) is str:
        shown[session] = record
        while len(shown) > REMEMBERED_SESSIONS:
            shown.popitem(last=False)


# ---------------------------------------------------------------- tailing


def follow_batches(
    path: str,
    *,
    start: int = 0,
    keep_going: Callable[[], bool] = lambda: True,
    sleep: Callable[[float], None] = time.sleep,
    interval: float = POLL_SECONDS,
) -> Iterator[Batch]:
    """Complete lines appended to ``path`` from byte ``start`` on, across rotation
    (unnumbered: line numbers mean little across rotation and truncation)."""
    tail = Tail(path, start)
    try:
        while True:
            lines = tail.new_lines()
            if lines is not None:
                yield UNKNOWN_LINE, lines
            elif tail.follow_rotation() or tail.rewind_if_truncated():
                continue
            elif keep_going():
                sleep(interval)
            else:
                return
    finally:
        tail.close()


class Tail:
    """The file being followed: its open stream and its unfinished last line."""

    def __init__(self, path: str, start: int) -> None:
        self.path = path
        self.stream: IO[bytes] = open(path, "rb")  # noqa: SIM115 (replaced on rotation; see close)
        self.stream.seek(start)
        self.pending = b""

    def new_lines(self) -> list[str] | None:
        """Lines completed since the last call ([] if only part of one), None if nothing new."""
        chunk = self.stream.read()
        if not chunk:
            return None
        lines, self.pending = split_complete(self.pending + chunk)
        return lines

    def follow_rotation(self) -> bool:
        """Switch to the file now at the path if it is another one (logrotate renamed ours)."""
        replacement = reopened_if_rotated(self.path, self.stream)
        if replacement is None:
            return False
        self.stream.close()
        self.stream, self.pending = replacement, b""
        return True

    def rewind_if_truncated(self) -> bool:
        if os.fstat(self.stream.fileno()).st_size >= self.stream.tell():
            return False
        self.stream.seek(0)
        self.pending = b""
        return True

    def close(self) -> None:
        self.stream.close()


def split_complete(buffer: bytes) -> tuple[list[str], bytes]:
    """Whole lines (decoded) and the unfinished rest, dropped if absurdly long."""
    cut = buffer.rfind(b"\n") + 1
    rest = buffer[cut:]
    if len(rest) > MAX_LINE:
        rest = b""
    lines = buffer[:cut].decode("utf-8", "surrogateescape").split("\n")
    lines.pop()  # the empty text after the last newline
    return lines, rest


def reopened_if_rotated(path: str, stream: IO[bytes]) -> IO[bytes] | None:
    """A stream on the file now at ``path`` if it is not the one we read, else None."""
    try:
        current = os.stat(path)
    except FileNotFoundError:
        return None  # between logrotate's rename and create: keep the old file
    mine = os.fstat(stream.fileno())
    if (current.st_dev, current.st_ino) == (mine.st_dev, mine.st_ino):
        return None
    try:
        return open(path, "rb")
    except OSError:
        return None
