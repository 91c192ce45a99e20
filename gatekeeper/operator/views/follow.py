"""``gatekeeper audit --follow``: new records as they are written, one per command.

An allowed command is shown once, with its exit status merged in: its
decision waits for the exit line at most ``EXIT_WAIT`` seconds (then it is shown
without one and the late exit line is dropped), so ``--follow -o json`` never
counts a command twice. Refusals have no exit line and are shown at once.

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

from gatekeeper.operator.views.filters import Criteria, matcher, select
from gatekeeper.operator.views.records import (
    UNKNOWN_LINE,
    Batch,
    Event,
    ReadStats,
    Record,
    is_decision,
    is_exit,
    line_batches,
    pair_exits,
    records_in,
)

POLL_SECONDS: Final = 0.5
EXIT_WAIT: Final = 3.0
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
    clock: Callable[[], float] = time.monotonic,
    wait: float = EXIT_WAIT,
) -> Iterator[Event]:
    """The last ``backlog`` matching commands, then every new one, each once."""
    position, recent = read_backlog(path, criteria, stats, backlog)
    yield from recent
    batches = follow_batches(path, start=position, keep_going=keep_going, sleep=sleep, idle_ticks=True)
    yield from live_events(batches, path, stats, criteria, clock=clock, wait=wait)


def read_backlog(path: str, criteria: Criteria, stats: ReadStats, backlog: int) -> tuple[int, deque[Event]]:
    """Matching commands already in the file (with their exits), and where its last complete line ends."""
    check = matcher(criteria)
    with open(path, "rb") as stream:
        end = end_of_last_line(stream)
        stream.seek(0)
        records = records_in(line_batches(stream, stats, (), end), path, stats)
        return end, deque(pair_exits(select(records, check, keep_exits=True)), maxlen=backlog)


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


def live_events(
    batches: Iterable[Batch],
    path: str,
    stats: ReadStats,
    criteria: Criteria,
    *,
    clock: Callable[[], float] = time.monotonic,
    wait: float = EXIT_WAIT,
) -> Iterator[Event]:
    """Matching commands as they come, each once: an allowed one with its exit when it comes in time.

    An empty batch is a tick of the poll loop: decisions that waited long enough are shown.
    """
    check = matcher(criteria)
    waiting: OrderedDict[str, tuple[Record, float]] = OrderedDict()
    for batch in batches:
        for record in records_in((batch,), path, stats):
            if is_decision(record) and check(record):
                session = record.get("session")
                if record.get("decision") == "allow" and type(session) is str:
                    waiting[session] = (record, clock() + wait)
                    if len(waiting) > REMEMBERED_SESSIONS:
                        yield Event(waiting.popitem(last=False)[1][0], None)
                else:
                    yield Event(record, None)
            elif is_exit(record) and str(record.get("session")) in waiting:
                yield Event(waiting.pop(str(record.get("session")))[0], record)
        now = clock()
        while waiting and next(iter(waiting.values()))[1] <= now:
            yield Event(waiting.popitem(last=False)[1][0], None)
    for record, _ in waiting.values():
        yield Event(record, None)


# ---------------------------------------------------------------- tailing


def follow_batches(
    path: str,
    *,
    start: int = 0,
    keep_going: Callable[[], bool] = lambda: True,
    sleep: Callable[[float], None] = time.sleep,
    interval: float = POLL_SECONDS,
    idle_ticks: bool = False,
) -> Iterator[Batch]:
    """Complete lines appended to ``path`` from byte ``start`` on, across rotation
    (unnumbered: line numbers mean little across rotation and truncation).
    With ``idle_ticks``, an empty batch before each wait."""
    tail = Tail(path, start)
    try:
        while True:
            lines = tail.new_lines()
            if lines is not None:
                yield UNKNOWN_LINE, lines
            elif tail.follow_rotation() or tail.rewind_if_truncated():
                continue
            elif keep_going():
                if idle_ticks:
                    yield UNKNOWN_LINE, []
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
