"""The proxy's kept audit log descriptor (gatekeeper.proxy.audit_log.KeptLog): the same lines,
chain and refusals as gatekeeper.audit.append_record, one descriptor while the path names the
same file; a rotated, removed or replaced log is followed or refused exactly as before."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pytest

from gatekeeper import audit
from gatekeeper.audit_chain import verify
from gatekeeper.errors import AuditError, AuditFull
from gatekeeper.proxy import audit_log
from gatekeeper.proxy.audit_log import KeptLog


def kept() -> KeptLog:
    log = KeptLog()
    log.claim()  # this thread plays the event loop's
    return log


def records(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_bytes().splitlines()]


def test_lines_and_chain_as_append_record_writes_them_with_other_writers_between(tmp_path: Path) -> None:
    ours, theirs = tmp_path / "kept.jsonl", tmp_path / "plain.jsonl"
    ours.write_bytes(b"")
    theirs.write_bytes(b"")
    log = kept()
    for n in range(12):
        record = {"v": 1, "event": "decision", "n": n}
        if n % 3 == 2:  # another writer (the ForceCommand, a worker thread) appends meanwhile
            audit.append_record(str(ours), record)
        else:
            log.append(str(ours), record)
        audit.append_record(str(theirs), record)
    assert ours.read_bytes() == theirs.read_bytes()
    assert verify(ours.read_bytes().splitlines()) == []
    assert [r["seq"] for r in records(ours)] == list(range(12))


def test_two_kept_logs_and_a_plain_writer_interleaving_chain_exactly(tmp_path: Path) -> None:
    """Two long-lived writers (each its own open file, so flock orders them) and a record-at-a-time
    one, in every order: each kept tail is used only while the file ends where its own write left
    it; the lines are append_record's, one chain."""
    ours, theirs = tmp_path / "kept.jsonl", tmp_path / "plain.jsonl"
    ours.write_bytes(b"")
    theirs.write_bytes(b"")
    first, second = kept(), kept()
    writers = [first.append, second.append, audit.append_record]
    for n in range(30):
        record = {"v": 1, "event": "decision", "n": n}
        writers[(n * 7 + n // 5) % 3](str(ours), record)  # runs of one writer, then another
        audit.append_record(str(theirs), record)
    assert ours.read_bytes() == theirs.read_bytes()
    assert verify(ours.read_bytes().splitlines()) == []
    assert [r["seq"] for r in records(ours)] == list(range(30))
    first.close()
    second.close()


@pytest.mark.parametrize("keep", [0, 1, 2])
def test_a_truncated_log_is_chained_from_what_it_holds(tmp_path: Path, keep: int) -> None:
    """A log cut shorter between two records (to nothing, or to its first lines): the next
    record is chained to the file's last line as it is now, not to the kept one."""
    path = tmp_path / "audit.jsonl"
    path.write_bytes(b"")
    log = kept()
    for n in range(3):
        log.append(str(path), {"n": n})
    lines = path.read_bytes().splitlines(keepends=True)
    with path.open("r+b") as cut:
        cut.truncate(sum(len(line) for line in lines[:keep]))
    log.append(str(path), {"n": 3})
    assert [r["n"] for r in records(path)] == [*range(keep), 3]
    assert records(path)[-1]["seq"] == keep
    assert verify(path.read_bytes().splitlines()) == []
    log.close()


def test_a_line_swapped_for_one_of_the_same_size_shows_as_a_break(tmp_path: Path) -> None:
    """Attack: the proxy's last line cut off and a forged one of the same length written in its
    place, itself chained correctly (whoever can rewrite the file can hash). The kept tail is the
    proxy's memory of its own line: the next record names that line's hash, so verify reports
    the break. Control: a writer that reads the tail back chains onto the forgery, and verify
    finds nothing."""
    for writer in ("kept", "control"):
        path = tmp_path / f"{writer}.jsonl"
        path.write_bytes(b"")
        log = kept()
        log.append(str(path), {"n": 0})
        log.append(str(path), {"n": 1, "cmd": "docker rm -f evidence"})
        lines = path.read_bytes().splitlines(keepends=True)
        forged = json.loads(lines[1])
        forged["cmd"] = "docker ps -a         "
        forged_line = json.dumps(forged, separators=(",", ":")).encode() + b"\n"
        assert len(forged_line) == len(lines[1])
        with path.open("r+b") as rewrite:
            rewrite.truncate(len(lines[0]))
            rewrite.seek(0, os.SEEK_END)
            rewrite.write(forged_line)
        if writer == "kept":
            log.append(str(path), {"n": 2})
            problems = verify(path.read_bytes().splitlines())
            assert [problem.split(": a record")[0] for problem in problems] == [
                "line 3: prev does not match line 2"]
        else:
            audit.append_record(str(path), {"n": 2})
            assert verify(path.read_bytes().splitlines()) == []
        log.close()


@pytest.mark.parametrize("record", [
    {"v": 1, "event": "decision"},
    {"v": 1, "summary": {"seq": 7, "kind": "x"}},  # a nested "seq" after ours
    {"seq": 41, "v": 1, "steps": [{"seq": 3}]},  # a record that brings its own seq
    {"prev": "ab", "v": 1},
    {"v": 1, "reason": 'a ,"seq":9} in a string'},
])
def test_the_kept_seq_and_hash_are_what_reading_the_line_back_gives(tmp_path: Path,
                                                                     record: dict[str, object]) -> None:
    ours, theirs = tmp_path / "kept.jsonl", tmp_path / "plain.jsonl"
    ours.write_bytes(b"")
    theirs.write_bytes(b"")
    log = kept()
    for n in range(4):  # back to back: every record after the first chained from the kept tail
        log.append(str(ours), {**record, "n": n})
        audit.append_record(str(theirs), {**record, "n": n})
    assert log.tail is not None
    assert ours.read_bytes() == theirs.read_bytes()
    last = ours.read_bytes().splitlines()[-1]
    assert log.tail[1:] == (audit.next_seq(last), audit.line_hash(last))
    log.close()


def test_one_descriptor_while_the_path_names_the_same_file(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "audit.jsonl"
    path.write_bytes(b"")
    opened: list[str] = []
    real_open = audit_log.open_log
    monkeypatch.setattr(audit_log, "open_log", lambda p: opened.append(p) or real_open(p))
    log = kept()
    for n in range(5):
        log.append(str(path), {"n": n})
    assert opened == [str(path)]
    # control: append_record opens the log for every record
    monkeypatch.setattr(audit, "open_log", lambda p: opened.append(p) or real_open(p))
    for n in range(3):
        audit.append_record(str(path), {"n": n})
    assert len(opened) == 4
    log.close()


def test_a_rotation_is_followed_and_the_new_file_chained_from_its_start(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    path.write_bytes(b"")
    log = kept()
    log.append(str(path), {"n": 0})
    log.append(str(path), {"n": 1})
    path.rename(tmp_path / "audit.jsonl.1")  # logrotate: rename, then create
    path.write_bytes(b"")
    log.append(str(path), {"n": 2})
    assert [r["n"] for r in records(path)] == [2]
    assert records(path)[0]["prev"] == "" and records(path)[0]["seq"] == 0
    assert [r["n"] for r in records(tmp_path / "audit.jsonl.1")] == [0, 1]


def test_a_removed_log_is_an_error_until_it_is_back(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    path.write_bytes(b"")
    log = kept()
    log.append(str(path), {"n": 0})
    path.unlink()  # the kept descriptor still writes, to a file nobody reads: never used
    with pytest.raises(AuditError):
        log.append(str(path), {"n": 1})
    path.write_bytes(b"")
    log.append(str(path), {"n": 2})
    assert [r["n"] for r in records(path)] == [2]


def test_a_log_replaced_by_a_symlink_is_refused(tmp_path: Path) -> None:
    """Attack: the log's path re-pointed at another file while the proxy holds it open. The
    kept descriptor is not used for a path that names another file; opening it anew refuses
    the symlink (O_NOFOLLOW). Control: the same file, renamed back, is written again."""
    path, elsewhere = tmp_path / "audit.jsonl", tmp_path / "elsewhere"
    path.write_bytes(b"")
    elsewhere.write_bytes(b"")
    log = kept()
    log.append(str(path), {"n": 0})
    path.rename(tmp_path / "held")
    path.symlink_to(elsewhere)
    with pytest.raises(AuditError):
        log.append(str(path), {"n": 1})
    assert elsewhere.read_bytes() == b""
    path.unlink()
    (tmp_path / "held").rename(path)
    log.append(str(path), {"n": 2})  # control
    assert [r["n"] for r in records(path)] == [0, 2]


def test_the_ceiling_refuses_with_nothing_written(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    path.write_bytes(b"")
    log = kept()
    line = log.append(str(path), {"n": 0}, ceiling=10_000)
    size = path.stat().st_size
    assert size == len(line) + 1
    with pytest.raises(AuditFull):
        log.append(str(path), {"n": 1, "pad": "x" * 200}, ceiling=size + 100)
    assert path.stat().st_size == size
    log.append(str(path), {"n": 2}, ceiling=10_000)  # control: under the ceiling
    assert [r["n"] for r in records(path)] == [0, 2]
    assert verify(path.read_bytes().splitlines()) == []


def test_a_locked_log_is_busy_when_asked_not_to_wait(tmp_path: Path) -> None:
    import fcntl

    path = tmp_path / "audit.jsonl"
    path.write_bytes(b"")
    log = kept()
    with open(path, "rb+") as holder:
        fcntl.flock(holder, fcntl.LOCK_EX)
        with pytest.raises(audit.LogBusy):
            log.append(str(path), {"n": 0}, wait=False)
        fcntl.flock(holder, fcntl.LOCK_UN)
    log.append(str(path), {"n": 1}, wait=False)
    assert [r["n"] for r in records(path)] == [1]


def test_other_threads_never_share_the_kept_descriptor(tmp_path: Path) -> None:
    """flock does not order two threads on one open file: a worker thread's record takes a
    descriptor of its own (append_record), and both threads' records chain."""
    path = tmp_path / "audit.jsonl"
    path.write_bytes(b"")
    log = kept()

    def worker() -> None:
        for n in range(50):
            log.append(str(path), {"t": "worker", "n": n})

    thread = threading.Thread(target=worker)
    thread.start()
    for n in range(50):
        log.append(str(path), {"t": "loop", "n": n})
    thread.join()
    assert len(records(path)) == 100
    assert verify(path.read_bytes().splitlines()) == []
    unclaimed = KeptLog()  # no event loop claimed it: every record opens the log
    unclaimed.append(str(path), {"n": 0})
    assert unclaimed.fd == -1
    assert os.fstat(log.fd)  # the loop's descriptor is still open
    log.close()
    assert log.fd == -1


def test_the_uids_share_is_charged_under_the_lock_as_append_record_charges_it(tmp_path: Path) -> None:
    """[audit] max_bytes_per_uid (gatekeeper.proxy.log_shares): the charge sees the file's
    identity and size under the lock and the line's size before the write; what it raises
    refuses the record, nothing written. Control: a charge that accepts lets the same record through."""
    from gatekeeper.errors import AuditShareFull

    path = tmp_path / "audit.jsonl"
    path.write_bytes(b"")
    log = kept()
    seen: list[tuple[tuple[int, int], int, int]] = []
    log.append(str(path), {"n": 0}, charge=lambda ident, end, size: seen.append((ident, end, size)))
    stat = path.stat()
    ident, size = (stat.st_dev, stat.st_ino), stat.st_size
    assert seen == [(ident, 0, size)]

    def refuse(ident: tuple[int, int], end: int, size: int) -> None:
        raise AuditShareFull("over the share")

    with pytest.raises(AuditShareFull):
        log.append(str(path), {"n": 1}, charge=refuse)
    assert path.stat().st_size == size
    audit.append_record(str(path), {"n": 2}, charge=lambda ident, end, size: seen.append((ident, end, size)))
    log.append(str(path), {"n": 3}, charge=lambda ident, end, size: seen.append((ident, end, size)))
    assert [r["n"] for r in records(path)] == [0, 2, 3]
    lines = path.read_bytes().splitlines(keepends=True)
    assert seen[1:] == [(ident, size, len(lines[1])), (ident, size + len(lines[1]), len(lines[2]))]
    assert verify(path.read_bytes().splitlines()) == []


def test_record_time_is_audit_timestamp_with_its_second_formatted_once() -> None:
    from gatekeeper.proxy.records import record_time

    moments = [1_795_996_800.0, 1_795_996_800.999999, 1_795_996_801.000001, 1_795_996_800.5, 0.25,
               951_782_400.123456, 4_102_444_799.75] + [1_795_996_800 + n * 0.37 for n in range(40)]
    for when in moments:  # in and out of order: the kept second never answers for another
        assert record_time(when) == audit.timestamp(when)
