"""A ceiling on the live audit log ([audit] max_bytes): the request budget
(tests/test_request_rate.py) bounds how fast a flood grows the log, not how far; intake
records are up to 64 KiB each. Past max_bytes the proxy writes no record and so serves
nothing (fail closed, 507, rule audit-full) rather than fill the disk: its refusals are
counted into one summary a minute (to syslog while the log is full).

The ceiling as an allow/deny table on the writer, then through the proxy with its control
(max_bytes = 0: the log grows past the same size)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from gatekeeper.audit import append_record
from gatekeeper.errors import AuditFull
from gatekeeper.proxy import server

from .proxy_harness import Harness, running
from .test_proxy_guards import RECORD, users

RECORD_FIELDS: dict[str, object] = {"event": "decision", "cmd": "docker ps"}

# (bytes already in the log, the ceiling given the size of the line to write) -> written
CEILING = [
    pytest.param(0, lambda line: 0, True, id="no-ceiling"),
    pytest.param(10**6, lambda line: 0, True, id="no-ceiling-big-log"),
    pytest.param(0, lambda line: line, True, id="fits-exactly"),
    pytest.param(0, lambda line: line - 1, False, id="one-byte-short"),
    pytest.param(100, lambda line: 100 + line + 200, True, id="room-left"),
    pytest.param(1000, lambda line: 1000, False, id="at-the-ceiling"),
    pytest.param(5000, lambda line: 1000, False, id="past-the-ceiling"),
]


def size_of_line(tmp_path: Path, before: int) -> int:
    """How many bytes the record takes in a log of `before` bytes (its chain fields included)."""
    scratch = tmp_path / "scratch.jsonl"
    scratch.write_bytes(filled(before))
    append_record(str(scratch), RECORD_FIELDS)
    return scratch.stat().st_size - before


def filled(size: int) -> bytes:
    return b"" if not size else b"x" * (size - 1) + b"\n"


@pytest.mark.parametrize(("before", "ceiling_for", "written"), CEILING)
def test_the_writer_keeps_under_the_ceiling(tmp_path: Path, before: int, ceiling_for: Callable[[int], int],
                                            written: bool) -> None:
    ceiling = ceiling_for(size_of_line(tmp_path, before))
    log = tmp_path / "audit.jsonl"
    log.write_bytes(filled(before))
    if written:
        append_record(str(log), RECORD_FIELDS, ceiling=ceiling)
        assert log.stat().st_size > before
        assert not ceiling or log.stat().st_size <= ceiling
        return
    with pytest.raises(AuditFull, match=r"\[audit\] max_bytes") as refused:
        append_record(str(log), RECORD_FIELDS, ceiling=ceiling)
    assert refused.value.rule == "audit-full" and "logrotate -f" in refused.value.message
    assert log.stat().st_size == before  # nothing written, not even part of the line


# ---------------------------------------------------------------- through the proxy

REQUESTS = 30


def with_ceiling(harness: Harness, ceiling: int) -> None:
    text = harness.policy.read_text().replace("syslog = false\n", f"syslog = false\nmax_bytes = {ceiling}\n")
    harness.policy.write_text(text)
    harness.reload()


def pings_and_records(harness: Harness, count: int) -> list[tuple[int, str]]:
    """Pings and intake records in turn on one connection: (status, message or "")."""
    conn = harness.http()
    out = []
    for index in range(count):
        if index % 2:
            conn.request("POST", "/_gatekeeper/audit", body=RECORD)
        else:
            conn.request("GET", "/_ping")
        response = conn.getresponse()
        body = response.read()
        message = json.loads(body)["message"] if response.status >= 400 else ""
        out.append((response.status, message))
    return out


@pytest.fixture
def syslogged(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, object]]:
    """What the proxy sends to syslog instead of the log (the machine's syslog is left alone)."""
    sent: list[dict[str, object]] = []
    monkeypatch.setattr(server, "syslog_only", sent.append)
    return sent


def test_control_without_a_ceiling_the_log_grows(tmp_path: Path) -> None:
    with running(tmp_path, users("request_rate = 0\nintake_per_minute = 0")) as proxy:
        with_ceiling(proxy, 0)
        assert {status for status, _ in pings_and_records(proxy, REQUESTS)} == {200, 204}
        assert len(proxy.records()) == REQUESTS


def test_at_the_ceiling_the_proxy_refuses_rather_than_fill_the_disk(
        tmp_path: Path, syslogged: list[dict[str, object]]) -> None:
    with running(tmp_path, users("request_rate = 0\nintake_per_minute = 0")) as proxy:
        assert {status for status, _ in pings_and_records(proxy, 4)} == {200, 204}
        ceiling = proxy.audit.stat().st_size + 1500  # room for a few more records
        with_ceiling(proxy, ceiling)
        answers = pings_and_records(proxy, REQUESTS)
        served = [status for status, _ in answers if status < 400]
        refused = [(status, message) for status, message in answers if status >= 400]
        assert 0 < len(served) < 10 and len(refused) == REQUESTS - len(served), answers
        assert {status for status, _ in refused} == {507}
        assert all("max_bytes" in message and "(rule audit-full)" in message for _, message in refused)
        assert served == [status for status, _ in answers[: len(served)]]  # refused from then on
        assert proxy.audit.stat().st_size <= ceiling
        assert len(proxy.records()) == 4 + len(served)
        # Nothing skipped silently: the refusals summed up; the log is full, so to syslog.
        proxy.proxy.write_summaries(proxy.proxy.state, force=True)
        (summary,) = [record for record in syslogged if record.get("endpoint") == "summary audit-full"]
        assert "(the log was at [audit] max_bytes)" in str(summary["reason"])
        counted = summary["summary"]
        assert isinstance(counted, dict) and counted["refused"] == len(refused)
        assert set(counted["by"]) == {"GET /_ping", "POST /_gatekeeper/audit"}
        assert proxy.audit.stat().st_size <= ceiling
        # Rotated (a new, empty live log): served again.
        proxy.audit.write_bytes(b"")
        assert pings_and_records(proxy, 2) == [(200, ""), (204, "")]
