"""A flood of requests on the proxy's socket ([proxy] request_rate, request_burst;
gatekeeper.proxy.request_rate): with a shell as the agent, a loop of pings, GETs or audit
records grows the audit log one record per request as fast as the proxy answers. Past
the caller's token bucket a request is refused (429, rule api-request-rate) and counted
into one summary record a minute instead of a record of its own.

The bucket itself as allow/deny tables (pure, injected clock), the summary record, and the
flood through the proxy with its control (request_rate = 0: every request is a record)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gatekeeper.errors import PolicyError
from gatekeeper.policy import load_policy
from gatekeeper.proxy import guards
from gatekeeper.proxy.request_rate import RULE_REQUEST_RATE, RequestRate, asked, cost, refusal, spend

from .proxy_harness import Harness, running
from .test_proxy_guards import RECORD, users

# ---------------------------------------------------------------- the bucket, pure

# (tokens held, at, now, rate, burst) -> (taken, tokens after)
SPEND = [
    pytest.param(5.0, 0.0, 0.0, 1, 5, True, 4.0, id="full-bucket-takes"),
    pytest.param(1.0, 0.0, 0.0, 1, 5, True, 0.0, id="last-token-takes"),
    pytest.param(0.0, 0.0, 0.0, 1, 5, False, 0.0, id="empty-refused"),
    pytest.param(0.5, 0.0, 0.0, 1, 5, False, 0.5, id="half-a-token-refused"),
    pytest.param(0.0, 0.0, 0.5, 1, 5, False, 0.5, id="half-a-second-refills-half"),
    pytest.param(0.0, 0.0, 1.0, 1, 5, True, 0.0, id="a-second-refills-one"),
    pytest.param(0.0, 0.0, 0.1, 10, 5, True, 0.0, id="rate-ten-refills-one-in-a-tenth"),
    pytest.param(0.0, 0.0, 3600.0, 1, 5, True, 4.0, id="refill-stops-at-burst"),
    pytest.param(2.0, 10.0, 5.0, 1, 5, True, 1.0, id="clock-went-back-refills-nothing"),
    pytest.param(0.0, 10.0, 5.0, 1, 5, False, 0.0, id="clock-went-back-empty-refused"),
    pytest.param(9.0, 0.0, 0.0, 1, 1, True, 0.0, id="burst-one-caps-what-was-held"),
]


@pytest.mark.parametrize(("tokens", "stamp", "now", "rate", "burst", "taken", "left"), SPEND)
def test_spend(tokens: float, stamp: float, now: float, rate: int, burst: int, taken: bool,
               left: float) -> None:
    was_taken, tokens_left = spend(tokens, stamp, now, rate, burst)
    assert was_taken is taken and tokens_left == pytest.approx(left)


def clocked() -> tuple[RequestRate, list[float]]:
    now = [100.0]
    return RequestRate(clock=lambda: now[0]), now


# (seconds since the last step, uid) -> allowed; rate 2 a second, burst 3
STEPS = [
    (0.0, 7, True), (0.0, 7, True), (0.0, 7, True),  # the burst
    (0.0, 7, False), (0.0, 7, False),  # empty: refused, nothing spent
    (0.0, 8, True),  # another uid has its own bucket
    (0.5, 7, True),  # half a second at 2 a second: one token
    (0.0, 7, False),
    (0.25, 7, False),  # half a token
    (0.25, 7, True),
    (10.0, 7, True), (0.0, 7, True), (0.0, 7, True), (0.0, 7, False),  # refilled to the burst, no more
]


def test_the_bucket_admits_the_burst_then_the_rate() -> None:
    rates, now = clocked()
    for step, (delay, uid, allowed) in enumerate(STEPS):
        now[0] += delay
        wait = rates.take(uid, 2, 3)
        assert (wait == 0.0) == allowed, f"step {step}: {delay} s later, uid {uid}"
        if not allowed:
            assert 0.0 < wait <= 0.5  # at 2 a second the next token is at most half a second away


def test_a_refused_request_spends_nothing_and_says_when_to_come_back() -> None:
    rates, now = clocked()
    assert rates.take(7, 4, 1) == 0.0
    assert rates.take(7, 4, 1) == pytest.approx(0.25)
    now[0] += 0.1
    assert rates.take(7, 4, 1) == pytest.approx(0.15)  # the refusal at 0.0 took nothing
    now[0] += 0.15
    assert rates.take(7, 4, 1) == 0.0


def test_rate_zero_is_no_budget() -> None:
    rates, _ = clocked()
    assert all(rates.take(7, 0, 1) == 0.0 for _ in range(10000))
    assert rates.buckets == {}


def test_the_refusal_names_the_keys_and_what_to_do() -> None:
    line = refusal(1001, 20, 2000, 0.05)
    assert "[proxy] request_rate = 20 per second" in line and "request_burst = 2000" in line
    assert "slow down" in line and "0.05 s" in line and "100 s" in line and "\n" not in line


# ---------------------------------------------------------------- what a summary counts


ASKED = [
    ("HEAD", "/_ping", "HEAD /_ping"),
    ("GET", "/_ping", "GET /_ping"),
    ("GET", "/containers/abc123/json", "GET /containers/{id}/json"),
    ("GET", "/containers/other-made-up-name/json", "GET /containers/{id}/json"),
    ("POST", "/_gatekeeper/audit", "POST /_gatekeeper/audit"),
    ("GET", "/_gatekeeper/audit/x", "other intake"),
    ("POST", "/containers/abc/exec", "refused or unknown endpoint"),
    ("GET", "/made/up/path/123", "refused or unknown endpoint"),
    ("BREW", "/_ping", "refused or unknown endpoint"),
]


@pytest.mark.parametrize(("method", "path", "counted_as"), ASKED)
def test_refusals_are_counted_by_endpoint_template(method: str, path: str, counted_as: str) -> None:
    """Made-up paths and methods fall into a bounded set: a flood cannot grow its summary."""
    assert asked(method, path) == counted_as


def test_the_summary_counts_refusals_by_what_was_asked() -> None:
    now = [0.0]
    gate = guards.FloodGate(window=60, clock=lambda: now[0], wall=lambda: 1.8e9 + now[0])
    gate.count(1002, RULE_REQUEST_RATE, "GET /_ping")
    for second in range(30):
        now[0] = float(second)
        gate.count(1001, RULE_REQUEST_RATE, "HEAD /_ping")
        if second % 10 == 0:
            gate.count(1001, RULE_REQUEST_RATE, "GET /containers/json")
    assert gate.due() == []  # the minute is not over: nothing yet
    now[0] = 60.0
    assert gate.summaries_due()
    mine, theirs = sorted(gate.due(), key=lambda summary: int(str(summary["uid"])))
    assert mine["by"] == {"GET /containers/json": 3, "HEAD /_ping": 30}
    assert (mine["refused"], mine["admitted"], mine["kind"]) == (33, 0, RULE_REQUEST_RATE)
    assert mine["first_refused"] == "2027-01-15T08:00:00.000000Z"
    assert mine["last_refused"] == "2027-01-15T08:00:29.000000Z"
    assert theirs["by"] == {"GET /_ping": 1}
    assert gate.due() == [] and not gate.summaries_due()  # each handed out once


def test_a_summary_without_counts_by_endpoint_has_no_by() -> None:
    gate = guards.FloodGate(window=60, clock=lambda: 0.0, wall=lambda: 1.8e9)
    assert gate.admit(7, "k", 1) and not gate.admit(7, "k", 1)
    (summary,) = gate.due(force=True)
    assert "by" not in summary


# ---------------------------------------------------------------- the policy keys


@pytest.mark.parametrize(("keys", "valid"), [
    ("request_rate = 0", True), ("request_rate = 50\nrequest_burst = 1", True),
    ("request_burst = 0", False), ("request_rate = -1", False), ("request_rate = 2.5", False),
    ('request_rate = "20"', False), ("request_burst = true", False),
])  # fmt: skip
def test_the_keys_are_validated(tmp_path: Path, keys: str, valid: bool) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text(f"[proxy]\n{keys}\n")
    if valid:
        load_policy(str(policy))
        return
    with pytest.raises(PolicyError, match=r"proxy\.request_"):
        load_policy(str(policy))


# ---------------------------------------------------------------- the flood through the proxy

FLOOD = 40
PING = b"HEAD /_ping HTTP/1.1\r\nHost: d\r\n\r\n"


def flood(harness: Harness, count: int, request: bytes = PING) -> list[int]:
    """`count` requests on one kept-alive connection, as a shell loop on the socket sends them."""
    conn = harness.http()
    statuses = []
    for _ in range(count):
        method = "HEAD" if request == PING else "POST"
        if method == "HEAD":
            conn.request("HEAD", "/_ping")
        else:
            conn.request("POST", "/_gatekeeper/audit", body=request)
        response = conn.getresponse()
        response.read()
        statuses.append(response.status)
    conn.close()
    return statuses


def frozen_clock(harness: Harness) -> list[float]:
    now = [0.0]
    harness.proxy.rates.clock = lambda: now[0]
    return now


def test_control_without_a_budget_every_request_is_a_record(tmp_path: Path) -> None:
    with running(tmp_path, users("request_rate = 0")) as proxy:
        frozen_clock(proxy)  # no time passes: the whole flood is one instant
        assert flood(proxy, FLOOD) == [200] * FLOOD
        assert len(proxy.records()) == FLOOD  # the log grows by one record per request


def test_past_the_burst_requests_are_refused_and_summed_up(tmp_path: Path) -> None:
    with running(tmp_path, users("request_rate = 2\nrequest_burst = 5")) as proxy:
        now = frozen_clock(proxy)
        statuses = flood(proxy, FLOOD)
        assert statuses == [200] * 5 + [429] * (FLOOD - 5)
        served = proxy.records()
        assert len(served) == 5 and all(r["endpoint"] != "summary" for r in served)
        conn = proxy.http()
        conn.request("GET", "/_ping")
        response = conn.getresponse()
        body = json.loads(response.read())
        assert response.status == 429 and response.getheader("Retry-After") == "1"
        assert body["message"].startswith("gatekeeper: denied: uid ")
        assert body["message"].endswith(f"(rule {RULE_REQUEST_RATE})") and "slow down" in body["message"]
        now[0] += 0.5  # half a second at 2 a second: the everyday request goes through again
        conn.request("GET", "/_ping")
        response = conn.getresponse()
        response.read()
        assert response.status == 200
        assert len(proxy.records()) == 6
        proxy.proxy.write_summaries(proxy.proxy.state, force=True)
        records = proxy.records()
        assert len(records) == 7
        summary = records[-1]
        assert (summary["endpoint"], summary["rule"]) == (f"summary {RULE_REQUEST_RATE}", RULE_REQUEST_RATE)
        assert summary["decision"] == "deny" and summary["layer"] == "api"
        assert str(summary["reason"]).endswith("one by one (over [proxy] request_rate and request_burst)")
        counted = summary["summary"]
        assert isinstance(counted, dict)
        assert counted["refused"] == FLOOD - 5 + 1
        assert counted["by"] == {"GET /_ping": 1, "HEAD /_ping": FLOOD - 5}


def test_audit_intake_records_spend_the_same_budget(tmp_path: Path) -> None:
    """The ForceCommand's door is a request like any other: a loop of records meets the
    budget too (control: without it, every record is written; intake_per_minute is off)."""
    for keys, written in (("request_rate = 0", FLOOD), ("request_rate = 1\nrequest_burst = 3", 3)):
        with running(tmp_path / str(written), users(f"intake_per_minute = 0\n{keys}")) as proxy:
            frozen_clock(proxy)
            statuses = flood(proxy, FLOOD, RECORD)
            assert statuses == [204] * written + [429] * (FLOOD - written)
            assert len(proxy.records()) == written
            proxy.proxy.write_summaries(proxy.proxy.state, force=True)
            if written < FLOOD:
                counted = proxy.records()[-1]["summary"]
                assert isinstance(counted, dict)
                assert counted["by"] == {"POST /_gatekeeper/audit": FLOOD - written}


# ---------------------------------------------------------------- what a request costs

# (target length, intake record length) -> tokens: what the record carries that the caller chose
COST = [
    pytest.param(7, 0, 1, id="a-ping"),
    pytest.param(511, 0, 1, id="half-a-kib-target-twice-is-under-a-kib"),
    pytest.param(512, 0, 2, id="a-kib-of-target-as-recorded"),
    pytest.param(60_000, 0, 118, id="a-long-target"),
    pytest.param(18, 600, 1, id="an-everyday-intake-record"),
    pytest.param(18, 64 * 1024, 65, id="the-largest-intake-record"),
]


@pytest.mark.parametrize(("target", "record", "tokens"), COST)
def test_what_a_request_costs(target: int, record: int, tokens: int) -> None:
    assert cost("/" * target, b"x" * record) == tokens


# (tokens held, cost, burst) -> (taken, tokens after); no time passes
PRICED = [
    pytest.param(10.0, 3, 10, True, 7.0, id="affordable"),
    pytest.param(2.0, 3, 10, False, 2.0, id="short-of-it-nothing-spent"),
    pytest.param(10.0, 50, 10, True, 0.0, id="over-the-burst-takes-the-whole-burst"),
    pytest.param(9.0, 50, 10, False, 9.0, id="over-the-burst-waits-for-a-full-bucket"),
]


@pytest.mark.parametrize(("tokens", "price", "burst", "taken", "left"), PRICED)
def test_a_request_of_several_tokens(tokens: float, price: int, burst: int, taken: bool, left: float) -> None:
    was_taken, tokens_left = spend(tokens, 0.0, 0.0, 1, burst, price)
    assert was_taken is taken and tokens_left == pytest.approx(left)


def test_large_records_drain_the_bucket_by_their_size(tmp_path: Path) -> None:
    """Control: small records, the burst takes 40 of them; 8 KiB records take 8 tokens each."""
    big = b'{"event": "decision", "cmd": "' + b"x" * 8192 + b'"}'
    keys = users("intake_per_minute = 0\nrequest_rate = 1\nrequest_burst = 40")
    for body, taken in ((RECORD, 40), (big, 40 // 9)):  # 1 + (2 * 18 + 8220) // 1024 = 9 tokens
        with running(tmp_path / str(taken), keys) as proxy:
            proxy.policy.write_text(proxy.policy.read_text().replace("max_body = 4096", "max_body = 100000"))
            proxy.reload()
            frozen_clock(proxy)
            assert flood(proxy, 50, body).count(204) == taken
