"""The exit line survives log rotation: it goes to the live log, reopened by path.

Attack/defect: a command that runs across two rotations (`docker logs -f` over a
weekend). The descriptor opened at the start then names a copy that the second
rotation compressed and unlinked, and the exit line written there is lost. The
control writes it the old way (to the start descriptor) and loses it.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from gatekeeper import audit, forcecommand

DECISION = {"session": "s1", "user": "ai-worker", "canonical": "logs"}


def rotate_twice(log: Path) -> None:
    """What logrotate does with delaycompress: rename, create; then .1 -> .2(.gz), unlink."""
    log.rename(log.with_name(log.name + ".1"))
    log.touch()
    log.with_name(log.name + ".1").rename(log.with_name(log.name + ".2"))
    log.with_name(log.name + ".2").unlink()  # compressed into .2.gz, then removed
    log.rename(log.with_name(log.name + ".1"))
    log.touch()


def exit_lines(directory: Path) -> list[dict[str, object]]:
    lines = []
    for path in directory.iterdir():
        lines += [json.loads(line) for line in path.read_text().splitlines()]
    return [record for record in lines if record["event"] == "exit"]


@pytest.mark.parametrize("reopen", [False, True], ids=["control: start descriptor", "reopened by path"])
def test_exit_line_after_two_rotations(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, reopen: bool) -> None:
    log = tmp_path / "audit.jsonl"
    log.touch()
    fd = audit.open_log(str(log))
    rotate_twice(log)
    if not reopen:
        monkeypatch.setattr(audit, "reopen_log", lambda path, fallback: fallback)
    policy = SimpleNamespace(audit_path=str(log), syslog=False)
    forcecommand.record_exit(fd, policy, DECISION, 0, time.monotonic())  # type: ignore[arg-type]
    os.close(fd)
    assert len(exit_lines(tmp_path)) == (1 if reopen else 0)
    if reopen:
        assert json.loads(log.read_text())["event"] == "exit"


def test_exit_line_falls_back_to_the_start_descriptor_in_the_rotation_gap(tmp_path: Path) -> None:
    """Between logrotate's rename and the new file's creation the path is missing."""
    log = tmp_path / "audit.jsonl"
    log.touch()
    fd = audit.open_log(str(log))
    log.rename(tmp_path / "audit.jsonl.1")
    policy = SimpleNamespace(audit_path=str(log), syslog=False)
    forcecommand.record_exit(fd, policy, DECISION, 3, time.monotonic())  # type: ignore[arg-type]
    os.close(fd)
    assert [record["exit"] for record in exit_lines(tmp_path)] == [3]
