"""``gatekeeper audit --follow``: new lines keep coming through appends, rotation and truncation."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from gatekeeper.operator.views import follow
from gatekeeper.operator.views.filters import Criteria
from gatekeeper.operator.views.records import ReadStats

Step = Callable[[Path], None]


def decision(session: str, verdict: str = "deny") -> str:
    record = {"event": "decision", "session": session, "decision": verdict, "cmd": f"docker {session}"}
    return json.dumps(record) + "\n"


def exit_line(session: str) -> str:
    return json.dumps({"event": "exit", "session": session, "exit": 0}) + "\n"


def append(text: str) -> Step:
    def step(log: Path) -> None:
        with log.open("a") as out:
            out.write(text)

    return step


def rotate_and_append(text: str) -> Step:
    """logrotate with 'create': rename, new empty file; writers reopen per invocation."""

    def step(log: Path) -> None:
        log.rename(log.with_name(log.name + ".1"))
        log.write_text(text)

    return step


def truncate_and_append(text: str) -> Step:
    def step(log: Path) -> None:
        log.write_text(text)

    return step


def remove(log: Path) -> None:
    log.unlink()


def followed(log: Path, steps: list[Step], *, start: int = 0) -> list[str]:
    """Lines read while each step runs between polls; stops when steps run out."""
    pending = list(steps)

    def sleep(_seconds: float) -> None:
        pending.pop(0)(log)

    batches = follow.follow_batches(str(log), start=start, keep_going=lambda: bool(pending), sleep=sleep)
    return [line for _, lines in batches for line in lines]


def test_appends_are_read_as_they_come(tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    log.write_text("old\n")
    lines = followed(log, [append("one\n"), append("two\n")], start=4)
    assert lines == ["one", "two"]


def test_an_unfinished_line_waits_for_its_newline(tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    log.write_text("")
    assert followed(log, [append('{"half'), append('": 1}\n')]) == ['{"half": 1}']


def test_rotation_finishes_the_old_file_then_reads_the_new(tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    log.write_text("")
    steps = [append("a\n"), rotate_and_append("b\n"), append("c\n")]
    assert followed(log, steps) == ["a", "b", "c"]


def test_a_moment_without_the_file_is_survived(tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    log.write_text("")
    steps = [append("a\n"), remove, truncate_and_append("b\n")]
    assert followed(log, steps) == ["a", "b"]


def test_truncation_in_place_restarts_at_the_beginning(tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    log.write_text("first line that is long\n")
    inode = log.stat().st_ino
    steps = [truncate_and_append("x\n"), append("y\n")]
    assert followed(log, steps, start=log.stat().st_size) == ["x", "y"]
    assert log.stat().st_ino == inode, "same file: this was a truncation, not a rotation"


def test_follow_events_backlog_then_live_with_exits(tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    log.write_text(decision("b1") + decision("b2") + decision("b3") + '{"unfinished')
    steps = [append("\n" + decision("live1", "allow")), append(exit_line("live1") + decision("live2"))]
    pending = list(steps)

    def sleep(_seconds: float) -> None:
        pending.pop(0)(log)

    events = follow.follow_events(
        str(log), Criteria(), ReadStats(), backlog=2, keep_going=lambda: bool(pending), sleep=sleep
    )
    seen = [(e.decision["session"], e.exit is not None) for e in events]
    # one record per command: live1 once, with its exit merged in
    assert seen == [("b2", False), ("b3", False), ("live1", True), ("live2", False)]


def test_follow_shows_a_long_running_command_once_without_its_exit(tmp_path: Path) -> None:
    """A decision waits EXIT_WAIT for its exit, then is shown alone; the late exit is dropped."""
    log = tmp_path / "audit.jsonl"
    log.write_text("")
    now = [0.0]
    steps = [
        append(decision("run1", "allow")),
        lambda _log: now.__setitem__(0, 10.0),
        append(decision("deny1") + exit_line("run1")),
    ]
    pending = list(steps)

    def sleep(_seconds: float) -> None:
        pending.pop(0)(log)

    events = follow.follow_events(
        str(log),
        Criteria(),
        ReadStats(),
        backlog=2,
        keep_going=lambda: bool(pending),
        sleep=sleep,
        clock=lambda: now[0],
        wait=3.0,
    )
    seen = [(e.decision["session"], e.exit is not None) for e in events]
    assert seen == [("run1", False), ("deny1", False)]


def test_follow_backlog_carries_exits(tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    log.write_text(decision("a", "allow") + exit_line("a") + decision("b"))
    events = follow.follow_events(str(log), Criteria(), ReadStats(), backlog=5, keep_going=lambda: False)
    assert [(e.decision["session"], e.exit is not None) for e in events] == [("a", True), ("b", False)]


def test_follow_applies_filters(tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    log.write_text("")
    pending: list[Step] = [append(decision("x1", "allow") + decision("x2", "deny"))]

    def sleep(_seconds: float) -> None:
        pending.pop(0)(log)

    events = follow.follow_events(
        str(log),
        Criteria(decision="deny"),
        ReadStats(),
        backlog=5,
        keep_going=lambda: bool(pending),
        sleep=sleep,
    )
    assert [e.decision["session"] for e in events] == ["x2"]


def test_end_of_last_line(tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    for content, expected in [
        (b"", 0),
        (b"abc", 0),
        (b"a\n", 2),
        (b"a\nbc", 2),
        (b"x" * 100_000 + b"\nz", 100_001),
    ]:
        log.write_bytes(content)
        with log.open("rb") as stream:
            assert follow.end_of_last_line(stream) == expected, content[:10]
