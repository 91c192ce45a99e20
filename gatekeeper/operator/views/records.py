"""Read audit records: JSON Lines files, rotated siblings, gzip, stdin, journald.

Reading streams a megabyte at a time and never holds a file in memory. A line that
is not a JSON object is counted as corrupt and reading goes on: the log is
appendable by the agent, and a crash can leave a truncated last line, so
neither may stop an operator from reading the rest.

A record is the parsed ``dict`` itself (no wrapper object): on a year of logs
a wrapper per line costs more than the parsing. Values are untrusted and may
have any JSON type; ``text_field`` gives a string for any of them.
"""

from __future__ import annotations

import functools
import gzip
import json
import os
import re
import sys
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import IO, Any, Final, cast

Record = dict[str, Any]
# A line that contains none of the triggers provably cannot match (see filters.raw_prefilter).
Triggers = tuple[bytes, ...]

DEFAULT_LOG: Final = "/var/log/gatekeeper/audit.jsonl"
STDIN_NAME: Final = "-"
GZIP_MAGIC: Final = b"\x1f\x8b"
MAX_SAMPLES: Final = 5
PAIRING_WINDOW: Final = 10_000

# logrotate names: "audit.jsonl.3", "audit.jsonl.3.gz" (higher is older) and,
# with dateext, "audit.jsonl-20261125" / "audit.jsonl-20261125.gz".
_NUMBERED: Final = re.compile(r"\.(\d+)(?:\.gz)?")
_DATED: Final = re.compile(r"-(\d{8,10})(?:\.gz)?")


@dataclass(frozen=True)
class Source:
    """One input: a file path, or ``-`` for standard input."""

    name: str

    @property
    def is_stdin(self) -> bool:
        return self.name == STDIN_NAME


class ReadStats:
    """What reading saw besides records: counts and where the bad lines are."""

    __slots__ = ("corrupt", "foreign", "lines", "samples")

    def __init__(self) -> None:
        self.lines = 0
        self.corrupt = 0
        self.foreign = 0
        self.samples: list[tuple[str, int]] = []

    def note_corrupt(self, source: str, line_number: int) -> None:
        self.corrupt += 1
        if len(self.samples) < MAX_SAMPLES:
            self.samples.append((source, line_number))

    def absorb(self, later: ReadStats, *, line_offset: int = 0) -> None:
        """Add ``later``'s counts; its line numbers are shifted by ``line_offset``."""
        self.lines += later.lines
        self.corrupt += later.corrupt
        self.foreign += later.foreign
        room = MAX_SAMPLES - len(self.samples)
        self.samples.extend((name, shifted(number, line_offset)) for name, number in later.samples[:room])


def shifted(number: int, offset: int) -> int:
    return number + offset if number != UNKNOWN_LINE else UNKNOWN_LINE


# ---------------------------------------------------------------- sources


def expand_sources(paths: Sequence[str], *, rotated: bool) -> list[Source]:
    """Each path preceded by its rotated siblings, oldest first (newest last)."""
    sources: list[Source] = []
    for path in paths:
        if rotated and path != STDIN_NAME:
            sources.extend(Source(p) for p in rotated_siblings(path))
        sources.append(Source(path))
    return sources


def rotated_siblings(path: str) -> list[str]:
    """logrotate's older copies of ``path``, oldest first."""
    directory, base = os.path.split(path)
    try:
        names = os.listdir(directory or ".")
    except OSError:
        return []
    ranked = [(rotation_age(base, name), name) for name in names if name.startswith(base)]
    ordered = sorted((age, name) for age, name in ranked if age is not None)
    return [os.path.join(directory, name) for _, name in ordered]


def rotation_age(base: str, name: str) -> tuple[int, int] | None:
    """Sort key for a rotated copy of ``base`` (smaller is older), or None."""
    suffix = name[len(base) :]
    numbered = _NUMBERED.fullmatch(suffix)
    if numbered:
        return (0, -int(numbered.group(1)))
    dated = _DATED.fullmatch(suffix)
    if dated:
        return (-1, int(dated.group(1)))
    return None


@contextmanager
def opened(source: Source) -> Iterator[IO[bytes]]:
    """Binary stream of a source, gzip decompressed whatever the file is named.
    Standard input is read, never closed."""
    with ExitStack() as stack:
        raw = sys.stdin.buffer if source.is_stdin else stack.enter_context(open(source.name, "rb"))
        if starts_with_gzip(raw):
            yield cast(IO[bytes], stack.enter_context(gzip.GzipFile(fileobj=raw, mode="rb")))
        else:
            yield raw


def starts_with_gzip(stream: IO[bytes]) -> bool:
    peek = getattr(stream, "peek", None)
    return peek is not None and peek(2)[:2] == GZIP_MAGIC


# ---------------------------------------------------------------- parsing

# json.loads(line) is json.JSONDecoder().decode(line): skip JSON whitespace,
# scan one value, require only whitespace after it. Calling the C scanner
# directly does exactly that without three Python frames per line, which is
# most of the cost on a year of logs.
_SCAN: Final = json.JSONDecoder().scan_once  # type: ignore[attr-defined]  # C scanner, untyped
_JSON_SPACE: Final = " \t\n\r"


def parse_line(line: str) -> Record | None:
    """The JSON object on one line (as ``json.loads`` reads it), or None."""
    if line[:1] in _JSON_SPACE:
        line = line.lstrip(_JSON_SPACE)
    try:
        value, end = _SCAN(line, 0)
    except (ValueError, StopIteration, RecursionError):
        return None
    if end != len(line) and line[end:].strip(_JSON_SPACE):
        return None
    return value if type(value) is dict else None


def unwrap_journald(entry: Record) -> Record | None:
    """Our record from a ``journalctl -o json`` entry, or None if it is not ours.

    Ours means written by gatekeeper itself: journald's trusted fields (which a
    client cannot set) say root or the agent's uid, running a Python interpreter,
    and no CONTAINER_* fields. Anyone may `logger -t gatekeeper '{"event":...}'`,
    and dockerd (root) copies container output there with the journald log
    driver; neither is an audit record. (Issues 18 and 19: this is the one
    journald filter; keep it in this function.)

    MESSAGE may carry a prefix ("gatekeeper[42]: {...}") and, when it is not
    valid UTF-8, journald writes it as an array of byte values.
    """
    if not journald_writer_is_gatekeeper(entry):
        return None
    message = journald_message(entry.get("MESSAGE"))
    start = message.find("{")
    if start < 0:
        return None
    try:
        value, _ = json.JSONDecoder().raw_decode(message, start)
    except ValueError:
        return None
    return value if isinstance(value, dict) and "event" in value else None


def journald_writer_is_gatekeeper(entry: Record) -> bool:
    """Trusted fields only: `_UID`, `_COMM`, `_EXE` come from the kernel via journald."""
    if any(key.startswith("CONTAINER_") for key in entry):
        return False
    uid, comm, exe = entry.get("_UID"), entry.get("_COMM"), entry.get("_EXE")
    return (
        isinstance(uid, str) and uid in journald_trusted_uids()
        and isinstance(comm, str) and GATEKEEPER_COMM.fullmatch(comm) is not None
        and isinstance(exe, str) and GATEKEEPER_EXE.fullmatch(exe) is not None
    )  # fmt: skip


# gatekeeper runs as /opt/gatekeeper/bin/python3 (a venv link to the system
# python3.X) or, on NixOS, a python3 in the store.
GATEKEEPER_COMM: Final = re.compile(r"python3(?:\.[0-9]+)?")
GATEKEEPER_EXE: Final = re.compile(
    r"(?:/usr(?:/local)?/bin|/nix/store/[a-z0-9]{32}-[^/]+/bin)/python3(?:\.[0-9]+)?"
)
AGENT_ACCOUNT: Final = "ai-worker"


@functools.cache
def journald_trusted_uids() -> frozenset[str]:
    """Root (syslog copies written by root's tools) and the agent account's uid."""
    import pwd

    try:
        return frozenset({"0", str(pwd.getpwnam(AGENT_ACCOUNT).pw_uid)})
    except KeyError:
        return frozenset({"0"})


def journald_message(message: object) -> str:
    if isinstance(message, str):
        return message
    if isinstance(message, list) and all(isinstance(b, int) and 0 <= b < 256 for b in message):
        return bytes(message).decode("utf-8", "surrogateescape")
    return ""


def as_record(value: Record) -> Record | None:
    """``value`` if it is one of our records, its payload if journald, else None."""
    if "event" in value:
        return value
    if "MESSAGE" in value:
        return unwrap_journald(value)
    return None


# ---------------------------------------------------------------- reading

CHUNK_BYTES: Final = 1 << 20
UNKNOWN_LINE: Final = 0
Batch = tuple[int, list[str]]  # the first line's number (UNKNOWN_LINE if not counted), lines


def iter_records(sources: Iterable[Source], stats: ReadStats, *, triggers: Triggers = ()) -> Iterator[Record]:
    """Every record of every source, in order; see ``line_batches`` for ``triggers``."""
    for source in sources:
        with opened(source) as stream:
            yield from records_in(line_batches(stream, stats, triggers), source.name, stats)


def line_batches(
    stream: IO[bytes], stats: ReadStats, triggers: Triggers = (), limit: int | None = None
) -> Iterator[Batch]:
    """The stream's lines in batches of about a megabyte, counted in ``stats``.

    Bytes that are not UTF-8 survive as surrogates (``surrogateescape``), so
    they can be shown escaped instead of making the line unreadable.

    With ``triggers``, only lines containing one of them are decoded and
    produced: the caller has proved that no other line can match. Their
    numbers are then unknown: counting newlines would cost more than the
    whole search.
    """
    number = 0
    for data in line_blocks(stream, limit):
        if triggers:
            yield UNKNOWN_LINE, list(lines_with(data, triggers))
            continue
        lines = data.decode("utf-8", "surrogateescape").split("\n")
        if not lines[-1]:
            lines.pop()
        yield number + 1, lines
        number += len(lines)
    stats.lines += number


def line_blocks(stream: IO[bytes], limit: int | None = None) -> Iterator[bytes]:
    """The stream a megabyte at a time, each block made of whole lines.

    With ``limit``, reading stops after the line that contains byte ``limit - 1``.
    """
    pending = b""
    for block in blocks(stream, limit):
        cut = block.rfind(b"\n") + 1
        if cut:
            yield pending + block[:cut]
            pending = block[cut:]
        else:
            pending += block
    if pending:
        yield pending


def blocks(stream: IO[bytes], limit: int | None) -> Iterator[bytes]:
    """Blocks of the stream; with ``limit``, up to it and then to the end of that line."""
    remaining = limit
    while remaining is None or remaining > 0:
        block = stream.read(CHUNK_BYTES if remaining is None else min(CHUNK_BYTES, remaining))
        if not block:
            return
        if remaining is not None:
            remaining -= len(block)
            if remaining <= 0 and not block.endswith(b"\n"):
                block += stream.readline()  # the last line started inside the limit
        yield block


def lines_with(data: bytes, triggers: Triggers) -> Iterator[str]:
    """The lines of ``data`` that contain a trigger."""
    for start in sorted(line_starts_with(data, triggers)):
        end = data.find(b"\n", start)
        yield data[start : len(data) if end < 0 else end].decode("utf-8", "surrogateescape")


def line_starts_with(data: bytes, triggers: Triggers) -> set[int]:
    """Offsets where the lines containing any trigger start (bytes.find is C-fast)."""
    starts: set[int] = set()
    for trigger in triggers:
        at = data.find(trigger)
        while at >= 0:
            starts.add(data.rfind(b"\n", 0, at) + 1)
            end = data.find(b"\n", at)
            at = -1 if end < 0 else data.find(trigger, end + 1)
    return starts


def range_lines(
    stream: IO[bytes], start: int, end: int, stats: ReadStats, triggers: Triggers = ()
) -> Iterator[Batch]:
    """The lines that *start* in byte range [start, end) of a seekable stream,
    numbered from the range's first line.

    Splitting a file at arbitrary offsets and reading each range this way
    visits every line exactly once.
    """
    position = start
    if start > 0:
        stream.seek(start - 1)
        position += len(stream.readline()) - 1  # that line belongs to the previous range
    else:
        stream.seek(0)
    return line_batches(stream, stats, triggers, max(end - position, 0))


def records_in(batches: Iterable[Batch], name: str, stats: ReadStats) -> Iterator[Record]:
    """Records from batches of lines; lines that are none are counted in ``stats``.

    The loop body is ``parse_line`` written out: on a year of logs a function
    call per line is a tenth of the running time.
    """
    scan = _SCAN
    for first, lines in batches:
        for offset, line in enumerate(lines):
            try:
                value, end = scan(line, 0)
            except (ValueError, StopIteration, RecursionError):
                value = end = None
            if end == len(line) and type(value) is dict and "event" in value:
                yield value  # the common case
            else:
                number = first + offset if first != UNKNOWN_LINE else UNKNOWN_LINE
                record = classify(parse_line(line), line, name, number, stats)
                if record is not None:
                    yield record


def classify(value: Record | None, line: str, name: str, number: int, stats: ReadStats) -> Record | None:
    """A line that is not plainly one of our records: journald, foreign, corrupt or blank."""
    if value is None:
        if line.strip():
            stats.note_corrupt(name, number)
        return None
    record = as_record(value)
    if record is None:
        stats.foreign += 1
    return record


# ---------------------------------------------------------------- fields


def text_field(record: Record, key: str) -> str:
    """The field as text, whatever JSON type an untrusted writer gave it."""
    value = record.get(key)
    if type(value) is str:
        return value
    if value is None:
        return ""
    return json.dumps(value, ensure_ascii=False)


def is_decision(record: Record) -> bool:
    return record.get("event") == "decision"


def is_exit(record: Record) -> bool:
    return record.get("event") == "exit"


# ---------------------------------------------------------------- pairing


@dataclass(frozen=True)
class Event:
    """A decision record and, for an allowed command, its exit record if seen."""

    decision: Record
    exit: Record | None


class _Waiting:
    __slots__ = ("decision", "exit")

    def __init__(self, decision: Record) -> None:
        self.decision = decision
        self.exit: Record | None = None


def pair_exits(records: Iterable[Record], *, window: int = PAIRING_WINDOW) -> Iterator[Event]:
    """Decisions in order, each with the exit line of the same session.

    An allowed decision waits for its exit line at most ``window`` records
    (a ``docker logs -f`` can run for days); memory stays bounded and the
    order of decisions is kept. Exit lines with no decision are dropped.
    """
    queue: deque[_Waiting] = deque()
    pending: dict[str, _Waiting] = {}
    for record in records:
        if is_exit(record):
            attach_exit(record, pending)
        elif is_decision(record):
            enqueue_decision(record, queue, pending)
        yield from release_ready(queue, pending, window)
    yield from release_ready(queue, pending, 0)


def enqueue_decision(record: Record, queue: deque[_Waiting], pending: dict[str, _Waiting]) -> None:
    waiting = _Waiting(record)
    queue.append(waiting)
    session = record.get("session")
    if record.get("decision") == "allow" and type(session) is str:
        pending[session] = waiting


def attach_exit(record: Record, pending: dict[str, _Waiting]) -> None:
    session = record.get("session")
    waiting = pending.pop(session, None) if type(session) is str else None
    if waiting is not None:
        waiting.exit = record


def release_ready(queue: deque[_Waiting], pending: dict[str, _Waiting], window: int) -> Iterator[Event]:
    """Pop decisions from the front that are complete or have waited long enough."""
    while queue and (len(queue) > window or not is_waiting(queue[0], pending)):
        waiting = queue.popleft()
        forget(waiting, pending)
        yield Event(waiting.decision, waiting.exit)


def is_waiting(waiting: _Waiting, pending: dict[str, _Waiting]) -> bool:
    session = waiting.decision.get("session")
    return type(session) is str and pending.get(session) is waiting


def forget(waiting: _Waiting, pending: dict[str, _Waiting]) -> None:
    session = waiting.decision.get("session")
    if type(session) is str and pending.get(session) is waiting:
        del pending[session]
