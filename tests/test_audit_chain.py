"""The audit log's hash chain: every record names the previous line's SHA-256 and seq;
`gatekeeper audit verify` passes an untouched log (the control) and names the line of
each removal, edit, reordering and truncation; concurrent writers chain one by one."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gatekeeper.audit import line_hash, open_log, write_record
from gatekeeper.audit_chain import verify
from gatekeeper.operator.views.verify import main as verify_main


def written(tmp_path: Path, count: int) -> Path:
    log = tmp_path / "audit.jsonl"
    log.touch()
    fd = open_log(str(log))
    try:
        for index in range(count):
            write_record(fd, {"v": 1, "event": "decision", "cmd": f"docker ps {index}"})
    finally:
        os.close(fd)
    return log


def test_records_chain(tmp_path: Path) -> None:
    lines = written(tmp_path, 5).read_bytes().splitlines()
    assert b'"seq":0,"prev":""' in lines[0]
    assert f'"seq":4,"prev":"{line_hash(lines[3])}"'.encode() in lines[4]
    assert verify(lines) == []


@pytest.mark.parametrize(("tamper", "where"), [
    (lambda lines: lines[:2] + lines[3:], "line 3: prev does not match line 2"),
    (lambda lines: [*lines[:2], lines[2].replace(b"ps 2", b"ps X"), *lines[3:]], "line 4: prev"),
    (lambda lines: [lines[0], lines[2], lines[1], *lines[3:]], "line 2: prev"),
    (lambda lines: [b"{}", *lines[1:]], "line 2: prev"),
])
def test_tampering_is_found_where_it_happened(tmp_path: Path, tamper, where: str) -> None:  # type: ignore[no-untyped-def]
    lines = written(tmp_path, 5).read_bytes().splitlines()
    assert verify(lines) == []  # control
    assert any(problem.startswith(where) for problem in verify(tamper(lines))), verify(tamper(lines))


def test_truncation_is_found_with_a_head(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = written(tmp_path, 5)
    lines = log.read_bytes().splitlines()
    head = f"4:{line_hash(lines[4])}"
    assert verify_main(["--log", str(log), "--head", head]) == 0
    log.write_bytes(b"\n".join(lines[:3]) + b"\n")  # the last two records cut off
    assert verify_main(["--log", str(log)]) == 0  # what is left still chains ...
    assert verify_main(["--log", str(log), "--head", head]) == 1  # ... but the head is gone
    assert "truncated or replaced" in capsys.readouterr().out


def test_a_write_only_writer_does_not_chain(tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    log.touch()
    fd = os.open(log, os.O_WRONLY | os.O_APPEND)
    try:
        write_record(fd, {"v": 1})
    finally:
        os.close(fd)
    assert log.read_bytes() == b'{"v":1}\n'


def test_concurrent_writers_chain_one_after_another(tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    log.touch()
    children = []
    for worker in range(24):
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child
            fd = open_log(str(log))
            for index in range(10):
                write_record(fd, {"v": 1, "cmd": f"w{worker} r{index} " + "x" * 5000})
            os._exit(0)
        children.append(pid)
    for pid in children:
        assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0
    lines = log.read_bytes().splitlines()
    assert len(lines) == 240
    assert verify(lines) == []
