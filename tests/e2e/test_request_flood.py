"""A request flood on the proxy's socket grows the audit log without bound: red team, issue 12.

Layout (b) assumes a shell as the agent: it talks to the proxy's socket directly. Every
request the proxy answers is one audit record, so a loop of `HEAD /_ping`, GETs and records
to the audit intake (over several kept-alive connections) grows /var/log as fast as the
proxy answers, until the disk is full. The defence (gatekeeper.proxy.request_rate): a token
bucket per uid, [proxy] request_rate a second up to request_burst; past it 429, rule
api-request-rate, and the refusals summed up in one record a minute.

Control: the same flood with request_rate = 0: the log grows by one record per request.
Defence: request_rate = 5, request_burst = 60: the log grows by at most the burst, the
rate times the flood's seconds and one summary, the rest is answered 429 and counted in
the summary by method and endpoint; an everyday `docker ps` after the flood runs.
"""

from __future__ import annotations

import json
import math
import pwd
import subprocess
import time
from collections.abc import Callable
from typing import Any

import pytest

from .stack import (
    AGENT,
    AGENT_HOME,
    AUDIT_LOG,
    PROXY_ALONE,
    PROXY_SOCKET,
    Stack,
    audit_offset,
    audit_records_since,
    docker_client,
    policy_rewritten,
    proxy_patched,
)
from .test_api_attacks import as_agent

pytestmark = [
    pytest.mark.e2e,
    # A shell as the agent on the proxy's socket is layout (b)'s assumption.
    pytest.mark.parametrize("stack", [PROXY_ALONE], indirect=True, scope="module"),
]

FLOOD = 600
CONNECTIONS = 4
RATE = 5
BURST = 60
SUMMARY_WAIT = 90.0  # the summary's minute, plus the proxy's 10 s sweep

# The agent's flood: FLOOD requests round robin over CONNECTIONS kept-alive connections,
# a ping, a listing and an audit record in turn; prints the statuses it got and its seconds.
FLOOD_CLIENT = """
import collections, http.client, json, socket, sys, time
path, count, connections = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
class Unix(http.client.HTTPConnection):
    def __init__(self):
        super().__init__("docker", timeout=60)
    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.connect(path)
asks = [("HEAD", "/_ping", None), ("GET", "/containers/json", None),
        ("POST", "/_gatekeeper/audit", b'{"event": "decision", "cmd": "docker ps (flood)"}')]
conns = [Unix() for _ in range(connections)]
statuses = collections.Counter()
began = time.monotonic()
for i in range(count):
    method, target, body = asks[i % len(asks)]
    conn = conns[i % connections]
    conn.request(method, target, body=body)
    answer = conn.getresponse()
    answer.read()
    statuses[str(answer.status)] += 1
print(json.dumps({"statuses": statuses, "seconds": time.monotonic() - began}))
"""


def with_proxy_keys(keys: str) -> Callable[[str], str]:
    return lambda text: text.replace("[proxy]\n", f"[proxy]\n{keys}\n", 1)


def flood(count: int = FLOOD) -> tuple[dict[str, int], float]:
    argv = ["/usr/bin/python3", "-I", "-c", FLOOD_CLIENT, str(PROXY_SOCKET), str(count), str(CONNECTIONS)]
    result = as_agent(argv, {"PATH": "/usr/bin:/bin", "HOME": str(AGENT_HOME)})
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    return answer["statuses"], float(answer["seconds"])


def of_uid(offset: int, uid: int) -> list[dict[str, object]]:
    """The records since `offset` about or reported by `uid` (anything else using the stack's
    socket meanwhile, root's probes included, has a budget of its own)."""
    def whose(record: dict[str, object]) -> object:
        reporter = record.get("reported_by")
        return reporter.get("uid") if isinstance(reporter, dict) else record.get("uid")

    return [record for record in audit_records_since(offset, layer=None) if whose(record) == uid]


def summaries(offset: int, uid: int) -> list[dict[str, object]]:
    return [record for record in audit_records_since(offset, layer="api")
            if record.get("endpoint") == "summary api-request-rate" and record.get("uid") == uid]


def test_a_request_flood_grows_the_log_by_the_budget_only(stack: Stack) -> None:
    uid = pwd.getpwnam(AGENT).pw_uid

    # Control: no budget. Every request is answered and is a record of its own.
    with policy_rewritten(with_proxy_keys("request_rate = 0")):
        offset = audit_offset()
        statuses, seconds = flood()
        grown = of_uid(offset, uid)
    assert statuses == {"200": FLOOD * 2 // 3, "204": FLOOD // 3}, statuses
    assert len(grown) == FLOOD, len(grown)  # one record per request
    control_bytes = sum(len(json.dumps(record)) for record in grown)

    # Defence: the same flood meets the uid's bucket.
    with policy_rewritten(with_proxy_keys(f"request_rate = {RATE}\nrequest_burst = {BURST}")):
        offset = audit_offset()
        statuses, seconds = flood()
        grown = of_uid(offset, uid)
        refused = statuses.get("429", 0)
        budget = BURST + math.ceil(RATE * seconds) + 1
        assert refused >= FLOOD - budget, (statuses, seconds)
        assert refused + statuses.get("200", 0) + statuses.get("204", 0) == FLOOD, statuses
        assert len(grown) == FLOOD - refused <= budget, (len(grown), statuses, seconds)
        # Nothing skipped silently: the refusals are in one summary once the minute is over.
        deadline = time.monotonic() + SUMMARY_WAIT
        while not (found := summaries(offset, uid)) and time.monotonic() < deadline:
            time.sleep(2)
        assert found, "no summary record of the refused requests"
        counted: list[dict[str, Any]] = [record["summary"] for record in found]  # type: ignore[misc]
        assert sum(int(part["refused"]) for part in counted) == refused
        by: dict[str, int] = {}
        for part in counted:
            for asked, count in part["by"].items():
                by[asked] = by.get(asked, 0) + count
        assert set(by) <= {"HEAD /_ping", "GET /containers/json", "POST /_gatekeeper/audit"}, by
        assert found[0]["rule"] == "api-request-rate" and found[0]["decision"] == "deny"
        after = of_uid(offset, uid)
        assert len(after) <= budget + len(found) + 2, len(after)  # the burst, the rate, the summary

        # The flood is over: everyday work goes through again.
        result = stack.ssh("docker ps")
        assert result.returncode == 0, result.stderr
    defence_bytes = sum(len(json.dumps(record)) for record in after)
    print(f"flood of {FLOOD}: control {FLOOD} records ({control_bytes} bytes); defence "
          f"{len(after)} records ({defence_bytes} bytes) incl. {len(found)} summary, {refused} refused "
          f"in {seconds:.2f} s")


CEILING_FLOOD = 300
ROOM = 20_000  # bytes left under the ceiling: a few dozen records


def with_ceiling(ceiling: int) -> Callable[[str], str]:
    """No request budget (the flood meets the ceiling alone) and [audit] max_bytes = ceiling."""
    keys = with_proxy_keys("request_rate = 0")
    return lambda text: keys(text).replace("[audit]\n", f"[audit]\nmax_bytes = {ceiling}\n", 1)


def test_at_the_log_ceiling_the_proxy_refuses_rather_than_fill_the_disk(stack: Stack) -> None:
    """[audit] max_bytes: the budget bounds a flood's rate, the ceiling how far the live log
    grows (intake records are up to 64 KiB). Control: no ceiling, the flood is all written."""
    uid = pwd.getpwnam(AGENT).pw_uid
    with policy_rewritten(with_ceiling(0)):
        offset = audit_offset()
        statuses, _ = flood(CEILING_FLOOD)
        assert set(statuses) == {"200", "204"}, statuses
        assert len(of_uid(offset, uid)) == CEILING_FLOOD
    ceiling = audit_offset() + ROOM
    with policy_rewritten(with_ceiling(ceiling)):
        statuses, _ = flood(CEILING_FLOOD)
        full = statuses.get("507", 0)
        assert full > CEILING_FLOOD // 2 and set(statuses) <= {"200", "204", "507"}, statuses
        assert AUDIT_LOG.stat().st_size <= ceiling  # the log stopped short of its ceiling
        refused = stack.ssh("docker ps")  # layout (b): the proxy refuses it, one line naming the rule
        assert refused.returncode != 0 and b"(rule audit-full)" in refused.stderr, refused.stderr
        assert b"logrotate -f" in refused.stderr
        assert AUDIT_LOG.stat().st_size <= ceiling
    result = stack.ssh("docker ps")  # room again (the operator's fix: a rotation, or a higher ceiling)
    assert result.returncode == 0, result.stderr
    print(f"ceiling {ceiling}: {full} of {CEILING_FLOOD} refused (507), log at {AUDIT_LOG.stat().st_size}")


SHARE = ROOM // 4  # the agent's share of the live log in the defence: a dozen records


def with_share(ceiling: int, share: int) -> Callable[[str], str]:
    """The ceiling (no request budget) and [audit] max_bytes_per_uid = share; root listed in
    [proxy.users] too, as another account working through the proxy."""
    keys = with_ceiling(ceiling)
    return lambda text: keys(text).replace("[audit]\n", f"[audit]\nmax_bytes_per_uid = {share}\n", 1).replace(
        "[proxy.users]\n", '[proxy.users]\nroot = "default"\n', 1)


def other_account_ps() -> subprocess.CompletedProcess[str]:
    """`docker ps` of another account (root, listed in [proxy.users] here) through the proxy."""
    return subprocess.run([str(docker_client()), "-H", f"unix://{PROXY_SOCKET}", "ps"], capture_output=True,
                          text=True, timeout=60, check=False)


def test_one_agents_flood_stops_that_agent_only(stack: Stack) -> None:
    """[audit] max_bytes_per_uid: the ceiling alone let one account's flood stop every account
    until rotation. Control (no share): the agent's flood fills the log to the ceiling and another
    account's `docker ps` is refused (audit-full). Defence (a share of a quarter of the room): the
    agent's records stop at its share (audit-share-full), the log stays under the ceiling and the
    other account's `docker ps` runs. The proxy is restarted first: the shares are its memory,
    counted from its start (the suite's earlier records are not in them)."""
    uid = pwd.getpwnam(AGENT).pw_uid
    with proxy_patched(stack, "pass"):
        ceiling = audit_offset() + ROOM
        with policy_rewritten(with_share(ceiling, 0)):
            statuses, _ = flood(CEILING_FLOOD)
            assert statuses.get("507", 0) > CEILING_FLOOD // 2, statuses
            other = other_account_ps()
            assert other.returncode != 0 and "(rule audit-full)" in other.stderr, other.stderr

        ceiling = audit_offset() + ROOM
        with policy_rewritten(with_share(ceiling, SHARE)):
            offset = audit_offset()
            statuses, _ = flood(CEILING_FLOOD)
            mine = raw_lines_of(offset, uid)
            written = AUDIT_LOG.stat().st_size
            other = other_account_ps()
            refused = stack.ssh("docker ps")  # the agent's everyday command: refused, naming its share
        assert statuses.get("507", 0) > CEILING_FLOOD // 2, statuses
        assert set(statuses) <= {"200", "204", "507"}, statuses
        mine_bytes = sum(len(line) for line in mine)
        assert 0 < mine_bytes <= SHARE, (len(mine), mine_bytes)
        assert written < ceiling, (written, ceiling)  # the share stopped the flood, not the ceiling
        assert other.returncode == 0, other.stderr  # another account goes on
        said = refused.stderr.decode(errors="replace")
        assert refused.returncode != 0 and "(rule audit-share-full)" in said, said
        assert "max_bytes_per_uid" in said, said
    print(f"share {SHARE} of ceiling room {ROOM}: the agent's flood wrote {len(mine)} records "
          f"({mine_bytes} B), {statuses.get('507', 0)} of {CEILING_FLOOD} refused 507; another account's "
          "docker ps ran")


def raw_lines_of(offset: int, uid: int) -> list[bytes]:
    """The log's lines since `offset` (newline included) charged to `uid`: the proxy's records of
    its requests and the records it handed over (summaries are not charged)."""
    with AUDIT_LOG.open("rb") as log:
        log.seek(offset)
        lines = log.read().splitlines(keepends=True)
    out = []
    for line in lines:
        record = json.loads(line)
        reporter = record.get("reported_by")
        whose = reporter.get("uid") if isinstance(reporter, dict) else record.get("uid")
        if whose == uid and "summary" not in record:
            out.append(line)
    return out
