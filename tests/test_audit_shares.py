"""Each uid's share of the live audit log ([audit] max_bytes_per_uid): issue 12.

[audit] max_bytes is one ceiling for the whole live log: one account flooding up to it stopped
every account until the log was rotated. The proxy counts the bytes of each uid's records in
the live log (gatekeeper.proxy.log_shares) and refuses a record past its uid's share (507, rule
audit-share-full): the flooding uid stops, the others go on; the ceiling stays the last bound.

The decision as a table; then the proxy's records of two uids, with the control (no share: the
flood of one uid takes the log to its ceiling and the other uid is refused too); rotation and
truncation start the counts again; intake records count for the uid that hands them over.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from gatekeeper.errors import AuditShareFull
from gatekeeper.proxy.contract import ApiRequest, ApiVerdict
from gatekeeper.proxy.log_shares import LogShares, over_share
from gatekeeper.proxy.records import Caller
from gatekeeper.proxy.server import take_record

from .proxy_harness import Harness
from .test_proxy_guards import RECORD, users

# (bytes the uid's records already take, the record's size, the share) -> refused
SHARES = [
    pytest.param(0, 100, 0, False, id="no-share"),
    pytest.param(10**9, 100, 0, False, id="no-share-big-use"),
    pytest.param(0, 100, 100, False, id="fits-exactly"),
    pytest.param(1, 100, 100, True, id="one-byte-over"),
    pytest.param(400, 100, 1000, False, id="room-left"),
    pytest.param(1000, 1, 1000, True, id="at-the-share"),
    pytest.param(0, 2000, 1000, True, id="one-record-bigger-than-the-share"),
]


@pytest.mark.parametrize(("used", "size", "share", "refused"), SHARES)
def test_the_share_decision(used: int, size: int, share: int, refused: bool) -> None:
    assert over_share(used, size, share) is refused


AGENT_A, AGENT_B = 50001, 50002


def proxy_with(tmp_path: Path, *, ceiling: int, share: int) -> Harness:
    """A proxy (not serving: its record_verdict is called directly) with the two keys set."""
    harness = Harness(tmp_path, users("request_rate = 0\nintake_per_minute = 0"))
    keys = f"syslog = false\nmax_bytes = {ceiling}\nmax_bytes_per_uid = {share}\n"
    harness.policy.write_text(harness.policy.read_text().replace("syslog = false\n", keys))
    harness.reload()
    assert harness.proxy.state.policy is not None, harness.proxy.state.error
    return harness


def decided(harness: Harness, uid: int) -> ApiVerdict:
    """One allowed ping of `uid`, as the transport records it."""
    request = ApiRequest("GET", "/_ping", "/_ping", None, {}, [], b"", uid, "agent")
    verdict = ApiVerdict(True, "allowed", "stand-in", "ping")
    caller = Caller(1, uid, uid, "agent")
    return harness.proxy.record_verdict(request, harness.proxy.state, caller, {}, verdict)


def flood(harness: Harness, uid: int, count: int) -> list[str]:
    return [decided(harness, uid).rule for _ in range(count)]


RECORD_SIZE = 400  # about one ping record's bytes (chain fields and policy stamp included)


@pytest.mark.parametrize("share", [4 * RECORD_SIZE, 0], ids=["share", "control-no-share"])
def test_one_uids_flood_stops_that_uid_only(tmp_path: Path, share: int) -> None:
    ceiling = 20 * RECORD_SIZE
    harness = proxy_with(tmp_path, ceiling=ceiling, share=share)
    rules = flood(harness, AGENT_A, 40)
    if share:
        refused = [rule for rule in rules if rule != "allowed"]
        assert set(refused) == {"audit-share-full"} and 2 <= rules.index("audit-share-full") <= 4, rules
        assert all(rule == "audit-share-full" for rule in rules[rules.index("audit-share-full"):])
        assert decided(harness, AGENT_B).allowed  # the other account goes on
        mine = [r for r in harness.records() if r["uid"] == AGENT_A]
        assert sum(len(json.dumps(r)) for r in mine) <= share
        assert harness.audit.stat().st_size < ceiling
        message = decided(harness, AGENT_A).reason
        assert f"uid {AGENT_A}'s share" in message and "max_bytes_per_uid" in message
        assert "logrotate" in message
    else:  # the control: the flood takes the log to its ceiling, and every account is refused
        assert rules[-1] == "audit-full", rules
        assert decided(harness, AGENT_B).rule == "audit-full"


def test_the_flooding_uids_refusals_are_summed_up(tmp_path: Path) -> None:
    harness = proxy_with(tmp_path, ceiling=0, share=2 * RECORD_SIZE)
    rules = flood(harness, AGENT_A, 10)
    refused = rules.count("audit-share-full")
    assert refused >= 7, rules
    (summary,) = harness.proxy.floods.due(force=True)
    assert (summary["kind"], summary["refused"], summary["uid"]) == ("audit-share-full", refused, AGENT_A)
    harness.proxy.write_summaries(harness.proxy.state, force=True)  # nothing due twice; and none charged


def test_a_rotated_or_truncated_log_starts_the_shares_again(tmp_path: Path) -> None:
    harness = proxy_with(tmp_path, ceiling=0, share=2 * RECORD_SIZE)
    assert "audit-share-full" in flood(harness, AGENT_A, 5)
    os.rename(harness.audit, harness.audit.with_suffix(".1"))  # logrotate: renamed, a new live log
    harness.audit.touch()
    assert decided(harness, AGENT_A).allowed
    assert "audit-share-full" in flood(harness, AGENT_A, 5)
    harness.audit.write_bytes(b"")  # copytruncate: the same file, emptied
    assert decided(harness, AGENT_A).allowed


def test_intake_records_count_for_the_uid_that_hands_them_over(tmp_path: Path) -> None:
    harness = proxy_with(tmp_path, ceiling=0, share=3 * RECORD_SIZE)
    shares = harness.proxy.shares

    def handed(uid: int) -> int:
        request = ApiRequest("POST", "/_gatekeeper/audit", "/_gatekeeper/audit", None, {}, [], RECORD, uid,
                             "agent")
        status, body = take_record(request, harness.proxy.state, shares=shares)
        if status == 507:
            assert b"(rule audit-share-full)" in body, body
        return status

    statuses = [handed(AGENT_A) for _ in range(10)]
    assert statuses[0] == 204 and statuses[-1] == 507, statuses
    assert handed(AGENT_B) == 204
    request = ApiRequest("POST", "/_gatekeeper/audit", "/_gatekeeper/audit", None, {}, [], RECORD, AGENT_A,
                         "agent")
    control = [take_record(request, harness.proxy.state)[0] for _ in range(3)]
    assert control == [204] * 3  # control: the same records not counted (no shares) are written


def test_a_share_refusal_counts_nothing(tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    log.touch()
    shares = LogShares()

    def written(size: int) -> None:  # as write_record calls the hook: under the lock, then the write
        stat = os.stat(log)
        shares.charge(AGENT_A, 100, (stat.st_dev, stat.st_ino), stat.st_size, size)
        with log.open("ab") as out:
            out.write(b"x" * size)

    written(60)
    with pytest.raises(AuditShareFull):
        written(60)
    written(40)  # the refused 60 bytes were not counted
    assert shares.used[AGENT_A] == 100 and log.stat().st_size == 100
