"""A hostile caller on the proxy's socket (gatekeeper.proxy.guards): what it may hold at
once and how fast it may spend. Each attack runs with its defence switched off first (the
control: the attack works), then on (refused, with a clear 4xx and a record).

- build contexts spooled at once, per uid and overall ([proxy] max_spool_per_user, max_spool);
- slow clients: a head or a body sent slowly or never finished, an idle kept-alive connection
  ([proxy] header_timeout, body_timeout, idle_timeout), streams exempt;
- connections per uid ([proxy] max_connections_per_user), refusals summed up past a rate;
- the audit intake's rate per uid ([proxy] intake_per_minute), one summary of what was refused;
- two creates of one profile racing past a check over everything the profile owns;
- [budgets] at the API layer.
"""

from __future__ import annotations

import asyncio
import getpass
import json
import socket
import threading
import time
from pathlib import Path
from typing import Any

import h11
import pytest

from gatekeeper.errors import Denied
from gatekeeper.proxy import guards
from gatekeeper.proxy.contract import ApiRequest, ApiVerdict, EngineQueries

from .proxy_harness import FakeEngine, Harness, running, status_of

ME = getpass.getuser()


def users(extra: str = "", budgets: str = "") -> str:
    """[proxy] keys after the harness's own, then [proxy.users] (and [budgets])."""
    return f'{extra}\n[proxy.users]\n{ME} = "agent"\n{budgets}'


PING = b"GET /_ping HTTP/1.1\r\nHost: d\r\nConnection: close\r\n\r\n"


def chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


BUILD_HEAD = (b"POST /build HTTP/1.1\r\nHost: docker\r\nTransfer-Encoding: chunked\r\n"
              b"Connection: close\r\n\r\n")


def open_build(harness: Harness, size: int) -> socket.socket:
    """A build whose context is `size` bytes sent, and not finished."""
    sock = socket.socket(socket.AF_UNIX)
    sock.settimeout(5)
    sock.connect(harness.listen)
    sock.sendall(BUILD_HEAD + chunk(b"x" * size))
    return sock


def answer_of(sock: socket.socket, timeout: float = 5.0) -> bytes:
    sock.settimeout(timeout)
    out = b""
    try:
        while data := sock.recv(65536):
            out += data
    except TimeoutError:
        pass
    return out


def wait_for(condition, timeout: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


# ---------------------------------------------------------------- build-context spool


@pytest.mark.parametrize(("cap", "refused"), [("max_spool_per_user = 0", False),
                                              ("max_spool_per_user = 150000", True),
                                              ("max_spool = 150000", True)])
def test_concurrent_build_contexts_are_capped_together(tmp_path: Path, cap: str, refused: bool) -> None:
    """Two builds, each under max_build_context (100000), together over the spool cap: the second
    is refused while the first is still being sent (control: no cap, both reach the engine)."""
    with running(tmp_path, users(cap)) as proxy:
        first = open_build(proxy, 90000)
        wait_for(lambda: proxy.proxy.spools.total >= 90000)
        second = open_build(proxy, 90000)
        second.sendall(b"0\r\n\r\n")
        answer = answer_of(second)
        first.sendall(b"0\r\n\r\n")
        assert status_of(answer_of(first)) == 200
        if not refused:
            assert status_of(answer) == 200
            assert len([r for r in proxy.engine.received if r[1] == "/build"]) == 2
            return
        assert status_of(answer) == 429
        assert "rule api-spool" in answer.decode()
        assert [r["rule"] for r in proxy.records()].count("api-spool") == 1
        assert len([r for r in proxy.engine.received if r[1] == "/build"]) == 1
        wait_for(lambda: proxy.proxy.spools.total == 0)  # given back: the next build goes through
        third = open_build(proxy, 90000)
        third.sendall(b"0\r\n\r\n")
        assert status_of(answer_of(third)) == 200


def test_the_spool_ledger_counts_per_uid_and_overall() -> None:
    ledger = guards.SpoolLedger()
    assert ledger.take(1, 60, per_user=100, overall=150) is None
    assert "max_spool_per_user" in str(ledger.take(1, 50, per_user=100, overall=150))
    assert ledger.take(2, 90, per_user=100, overall=150) is None
    assert "max_spool" in str(ledger.take(3, 1, per_user=100, overall=150))
    ledger.give_back(1, 60)
    assert ledger.take(3, 50, per_user=100, overall=150) is None
    assert ledger.by_uid == {2: 90, 3: 50} and ledger.total == 140


# ---------------------------------------------------------------- slow clients


SLOW = "header_timeout = 1\nbody_timeout = 1\nidle_timeout = 1"
PATIENT = "header_timeout = 0\nbody_timeout = 0\nidle_timeout = 0"


@pytest.mark.parametrize("start", [b"GET /_ping HTTP/1.1\r\nHost: d", b"G"])
def test_a_head_sent_slowly_is_cut_off(tmp_path: Path, start: bytes) -> None:
    for limits, cut in ((PATIENT, False), (SLOW, True)):
        with running(tmp_path / str(cut), users(limits)) as proxy:
            with socket.socket(socket.AF_UNIX) as sock:
                sock.connect(proxy.listen)
                sock.sendall(start)
                began = time.monotonic()
                answer = answer_of(sock, timeout=3)
            if not cut:
                assert answer == b""  # control: still waiting for the rest after 3 s
                continue
            assert time.monotonic() - began < 3
            assert status_of(answer) == 408 and b"rule api-slow-client" in answer
            assert proxy.records()[-1]["rule"] == "api-slow-client"


@pytest.mark.parametrize("build", [False, True])
def test_a_body_never_finished_is_cut_off(tmp_path: Path, build: bool) -> None:
    head = BUILD_HEAD if build else (b"POST /echo HTTP/1.1\r\nHost: d\r\nContent-Length: 100\r\n"
                                     b"Connection: close\r\n\r\n")
    for limits, cut in ((PATIENT, False), (SLOW, True)):
        with running(tmp_path / str(cut), users(limits)) as proxy, socket.socket(socket.AF_UNIX) as sock:
            sock.connect(proxy.listen)
            sock.sendall(head + (chunk(b"x" * 10) if build else b"x" * 10))
            answer = answer_of(sock, timeout=3)
            if not cut:
                assert answer == b""
                continue
            assert status_of(answer) == 408 and b"body_timeout" in answer
            assert proxy.proxy.spools.total == 0
            assert not proxy.engine.received


def test_a_body_trickled_past_the_deadline_is_cut_off(tmp_path: Path) -> None:
    """A byte every half second keeps each read short, but not the body: the deadline is whole."""
    with running(tmp_path, users(SLOW)) as proxy, socket.socket(socket.AF_UNIX) as sock:
        sock.connect(proxy.listen)
        sock.sendall(b"POST /echo HTTP/1.1\r\nHost: d\r\nContent-Length: 100\r\n\r\n")
        began = time.monotonic()
        try:
            for _ in range(6):
                sock.sendall(b"x")
                time.sleep(0.5)
        except (BrokenPipeError, ConnectionResetError):
            pass
        answer = answer_of(sock, timeout=2)
        assert status_of(answer) == 408, answer
        assert time.monotonic() - began < 4.5


def test_an_idle_kept_alive_connection_is_closed(tmp_path: Path) -> None:
    for limits, closed in ((PATIENT, False), (SLOW, True)):
        with running(tmp_path / str(closed), users(limits)) as proxy, socket.socket(socket.AF_UNIX) as sock:
            sock.connect(proxy.listen)
            sock.sendall(b"GET /_ping HTTP/1.1\r\nHost: d\r\n\r\n")
            got = b""
            sock.settimeout(5)
            while not got.endswith(b"OK"):
                got += sock.recv(65536)
            answer = answer_of(sock, timeout=2.5)
            if closed:
                assert answer == b""  # closed quietly: nothing sent, the connection is gone
                sock.settimeout(1)
                assert sock.recv(10) == b""
            else:
                with pytest.raises(TimeoutError):
                    sock.settimeout(0.5)
                    sock.recv(10)


def test_a_silent_connection_is_closed(tmp_path: Path) -> None:
    with running(tmp_path, users(SLOW)) as proxy, socket.socket(socket.AF_UNIX) as sock:
        sock.connect(proxy.listen)
        sock.settimeout(3)
        assert sock.recv(10) == b""
        assert proxy.proxy.open_connections.by_uid == {}


def test_streams_and_upgrades_are_exempt(tmp_path: Path) -> None:
    """logs -f, events, attach: a response or a hijacked connection may last; only reading a
    request has a deadline."""
    with running(tmp_path, users(SLOW)) as proxy:
        with socket.socket(socket.AF_UNIX) as sock:
            sock.connect(proxy.listen)
            sock.sendall(b"GET /stream HTTP/1.1\r\nHost: d\r\nConnection: close\r\n\r\n")
            got = b""
            sock.settimeout(5)
            while b"first" not in got:
                got += sock.recv(65536)
            time.sleep(2.5)  # past every timeout
            proxy.release_stream()
            assert b"second" in answer_of(sock)
        with socket.socket(socket.AF_UNIX) as sock:
            sock.connect(proxy.listen)
            sock.sendall(b"POST /containers/c1/attach HTTP/1.1\r\nHost: d\r\nConnection: Upgrade\r\n"
                         b"Upgrade: tcp\r\n\r\n")
            got = b""
            sock.settimeout(5)
            while b"hello from the container" not in got:
                got += sock.recv(65536)
            time.sleep(2.5)
            sock.sendall(b"still here\n")
            while b"STILL HERE" not in got:
                got += sock.recv(65536)


# ---------------------------------------------------------------- connections per uid


def test_connections_per_uid_are_capped(tmp_path: Path) -> None:
    for cap, refused in (("max_connections_per_user = 0", False), ("max_connections_per_user = 3", True)):
        with running(tmp_path / str(refused), users(cap)) as proxy:
            held = [socket.socket(socket.AF_UNIX) for _ in range(3)]
            for sock in held:
                sock.connect(proxy.listen)
            wait_for(lambda: proxy.connections == 3)
            answer = proxy.raw(PING)
            if not refused:
                assert answer.endswith(b"OK")
            else:
                assert status_of(answer) == 429 and b"rule api-connections" in answer
                held.pop().close()
                wait_for(lambda: sum(proxy.proxy.open_connections.by_uid.values()) == 2)
                assert proxy.raw(PING).endswith(b"OK")
            for sock in held:
                sock.close()


def test_refusals_past_the_rate_are_summed_up_not_dropped(tmp_path: Path) -> None:
    """A loop of refused connections: 60 records a minute, then one summary naming the rest."""
    with running(tmp_path, users("max_connections_per_user = 1")) as proxy:
        with socket.socket(socket.AF_UNIX) as holder:
            holder.connect(proxy.listen)
            wait_for(lambda: proxy.connections == 1)
            for _ in range(75):
                proxy.raw(b"GET /_ping HTTP/1.1\r\nHost: d\r\nConnection: close\r\n\r\n")
        one_by_one = [r for r in proxy.records() if r["rule"] == "api-connections"]
        assert len(one_by_one) == 60
        proxy.proxy.write_summaries(proxy.proxy.state, force=True)
        summary = proxy.records()[-1]
        assert summary["rule"] == "api-connections" and summary["decision"] == "deny"
        assert summary["summary"]["refused"] == 15  # type: ignore[index]
        assert summary["uid"] == proxy.records()[0]["uid"]


# ---------------------------------------------------------------- audit intake


RECORD = b'{"event": "decision", "cmd": "docker ps"}'


def post_records(proxy: Harness, count: int) -> list[int]:
    conn = proxy.http()
    statuses = []
    for _ in range(count):
        conn.request("POST", "/_gatekeeper/audit", body=RECORD)
        response = conn.getresponse()
        response.read()
        statuses.append(response.status)
    return statuses


def test_the_audit_intake_is_rate_capped_per_uid(tmp_path: Path) -> None:
    with running(tmp_path / "control", users("intake_per_minute = 0")) as proxy:
        assert post_records(proxy, 8) == [204] * 8  # control: no cap, every record written
        assert len(proxy.records()) == 8
    with running(tmp_path / "capped", users("intake_per_minute = 3")) as proxy:
        assert post_records(proxy, 8) == [204] * 3 + [429] * 5
        assert [r.get("cmd") for r in proxy.records()] == ["docker ps"] * 3
        proxy.proxy.write_summaries(proxy.proxy.state, force=True)
        summary = proxy.records()[-1]
        assert (summary["rule"], summary["endpoint"]) == ("api-intake-rate", "summary audit-intake")
        assert summary["summary"]["refused"] == 5  # type: ignore[index]
        assert summary["summary"]["refused_bytes"] == 5 * len(RECORD)  # type: ignore[index]
        assert "reported_by" not in summary  # the proxy's own word, not the agent's
        assert len(proxy.records()) == 4


def test_an_oversized_record_is_refused_unwritten(tmp_path: Path) -> None:
    big = json.dumps({"event": "decision", "cmd": "x" * (70 * 1024)}).encode()
    with running(tmp_path) as proxy:
        proxy.policy.write_text(proxy.policy.read_text().replace("max_body = 4096", "max_body = 200000"))
        proxy.reload()
        conn = proxy.http()
        conn.request("POST", "/_gatekeeper/audit", body=big)
        response = conn.getresponse()
        assert response.status == 413 and b"at most" in response.read()
        assert proxy.records() == []


def test_flood_windows_start_afresh_and_report_once() -> None:
    now = [0.0]
    gate = guards.FloodGate(window=60, clock=lambda: now[0], wall=lambda: 1e9 + now[0])
    assert [gate.admit(7, "k", 2) for _ in range(4)] == [True, True, False, False]
    assert gate.due() == [] and not gate.summaries_due()  # the window is not over
    now[0] = 61
    assert gate.summaries_due()  # over, with refusals
    assert gate.admit(7, "k", 2)  # a new window; the old one's summary is due
    assert gate.summaries_due()
    (summary,) = gate.due()
    assert (summary["uid"], summary["refused"], summary["admitted"]) == (7, 2, 2)
    assert gate.due(force=True) == []  # the new window refused nothing
    now[0] = 200
    assert not gate.summaries_due()  # a window that is over but refused nothing sums up nothing


def test_a_locked_log_makes_an_intake_record_wait_in_a_thread_not_on_the_loop(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The intake writes a record on the event loop (no thread hop: the ForceCommand waits for
    the answer twice per command) but never waits there: while another writer holds the log's
    lock, the loop still takes its turns (requests that need no log are served), and the record is
    written once the lock is free. Control: an intake that waits for the lock on the loop stalls it."""
    import fcntl

    from gatekeeper.proxy import server

    take_record = server.take_record
    for waits_on_loop in (True, False):
        if waits_on_loop:
            monkeypatch.setattr(server, "take_record",
                                lambda request, state, wait=True, **kw: take_record(request, state, **kw))
        else:
            monkeypatch.setattr(server, "take_record", take_record)
        with running(tmp_path / str(waits_on_loop)) as proxy, open(proxy.audit, "rb+") as holder:
            fcntl.flock(holder, fcntl.LOCK_EX)
            statuses: list[int] = []
            poster = threading.Thread(target=lambda: statuses.extend(post_records(proxy, 1)))  # noqa: B023
            poster.start()
            time.sleep(0.3)  # the record is in; its write waits for the lock
            turn = asyncio.run_coroutine_threadsafe(asyncio.sleep(0), proxy.loop)
            try:
                turn.result(timeout=1.0)  # the loop takes a turn: it is free to serve others
                answered = True
            except TimeoutError:
                answered = False
            fcntl.flock(holder, fcntl.LOCK_UN)
            poster.join(10)
            assert statuses == [204]
            assert [r.get("cmd") for r in proxy.records() if r.get("layer") == "cli"] == ["docker ps"]
            assert answered is not waits_on_loop


# ---------------------------------------------------------------- creates racing


class OwningEngine(FakeEngine):
    """An engine whose container create takes a while (as a real one does) before the
    container is listed."""

    def __init__(self) -> None:
        super().__init__()
        self.containers: list[str] = []

    async def answer(self, conn, reader, writer, path, target, headers, body) -> bool:  # type: ignore[no-untyped-def]
        if path == "/containers/create":
            await asyncio.sleep(0.3)
            self.containers.append(f"c{len(self.containers)}")
            data = json.dumps({"Id": self.containers[-1]}).encode()
        elif path == "/containers/json":
            data = json.dumps([{"Id": ident} for ident in self.containers]).encode()
        else:
            return bool(await super().answer(conn, reader, writer, path, target, headers, body))
        writer.write(conn.send(h11.Response(status_code=201 if "create" in path else 200,
                                            headers=[("content-length", str(len(data)))])))
        writer.write(conn.send(h11.Data(data=data)) + conn.send(h11.EndOfMessage()))
        await writer.drain()
        return False


def at_most_one_container(request: ApiRequest, policy: object, engine: EngineQueries) -> ApiVerdict:
    """A check over everything the profile owns (as the disjoint-bind invariant or max_running
    is): a second container is refused."""
    if request.path != "/containers/create":
        return ApiVerdict(True, "allowed", "", "other")
    _, listed = engine.get_json("/containers/json")
    if isinstance(listed, list) and listed:
        return ApiVerdict(False, "host-path-nested", "you own a container already", "container.create")
    return ApiVerdict(True, "allowed", "", "container.create")


def create_at_once(proxy: Harness, count: int) -> list[int]:
    statuses: list[int] = []
    start = threading.Barrier(count)

    def create() -> None:
        conn = proxy.http()
        start.wait()
        conn.request("POST", "/containers/create", body=b"{}", headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        response.read()
        statuses.append(response.status)

    threads = [threading.Thread(target=create) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    return sorted(statuses)


@pytest.mark.parametrize("serialised", [False, True])
def test_concurrent_creates_are_decided_one_at_a_time(tmp_path: Path, serialised: bool,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Control: without the per-profile lock both creates are decided on the same state and
    both reach the engine (two containers where the check allows one)."""
    if not serialised:
        monkeypatch.setattr(guards, "SERIALISED", frozenset())
    harness = Harness(tmp_path)
    harness.engine = OwningEngine()
    harness.proxy.decide = at_most_one_container
    harness.start()
    try:
        statuses = create_at_once(harness, 3)
        engine = harness.engine
        assert isinstance(engine, OwningEngine)
        if serialised:
            assert statuses == [201, 403, 403] and len(engine.containers) == 1
        else:
            assert statuses == [201, 201, 201] and len(engine.containers) == 3
    finally:
        harness.stop()


def test_a_lock_held_too_long_is_a_clear_refusal() -> None:
    async def scenario() -> str:
        locks = guards.ProfileLocks()
        await locks.acquire("agent")
        try:
            await locks.acquire("agent", wait=0.1)
        except Denied as busy:
            return busy.rule
        return "acquired"

    assert asyncio.run(scenario()) == "api-busy"


def test_other_profiles_are_not_serialised_behind_one() -> None:
    async def scenario() -> bool:
        locks = guards.ProfileLocks()
        await locks.acquire("agent")
        await locks.acquire("other", wait=0.1)
        return True

    assert asyncio.run(scenario())


# ---------------------------------------------------------------- [budgets]


def allow_creates(request: ApiRequest, policy: object, engine: EngineQueries) -> ApiVerdict:
    endpoint = "container.create" if request.path == "/echo" else "other"
    return ApiVerdict(True, "allowed", "", endpoint)


@pytest.mark.parametrize(("budget", "expected"), [(0, [200] * 4), (2, [200, 200, 403, 403])])
def test_containers_per_hour_at_the_api_layer(tmp_path: Path, budget: int, expected: list[int]) -> None:
    with running(tmp_path, users(budgets=f"[budgets]\ncontainers_per_hour = {budget}")) as proxy:
        proxy.proxy.decide = allow_creates
        conn = proxy.http()
        statuses = []
        for _ in range(4):
            conn.request("POST", "/echo", body=b"{}")
            response = conn.getresponse()
            body = response.read()
            statuses.append(response.status)
        assert statuses == expected
        if budget:
            assert b"rule budget-containers" in body and b"refills at" in body
            assert [r["rule"] for r in proxy.records()][-2:] == ["budget-containers"] * 2
        assert len([r for r in proxy.engine.received if r[1] == "/echo"]) == expected.count(200)


class Settings:
    def __init__(self, **budgets: int) -> None:
        self.settings = {"budgets": {"commands_per_minute": 0, "containers_per_hour": 0, "pulls_per_day": 0,
                                     "builds_per_day": 0, **budgets}}

    def count_of(self, section: str, key: str) -> int:
        return int(self.settings[section][key])


@pytest.mark.parametrize(("endpoint", "key", "rule"), [
    ("container.create", "containers_per_hour", "budget-containers"),
    ("image.pull", "pulls_per_day", "budget-pulls"),
    ("image.build", "builds_per_day", "budget-builds"),
])
def test_each_budget_is_spent_by_its_endpoint(endpoint: str, key: str, rule: str) -> None:
    now = [1000.0]
    budgets = guards.ApiBudgets(clock=lambda: now[0])
    policy: Any = Settings(**{key: 1})
    budgets.charge(policy, "agent", "container.start")  # spends nothing
    budgets.charge(policy, "other", endpoint)  # another profile's budget
    budgets.charge(policy, "agent", endpoint)
    with pytest.raises(Denied) as over:
        budgets.charge(policy, "agent", endpoint)
    assert over.value.rule == rule
    now[0] += 86400
    budgets.charge(policy, "agent", endpoint)  # the window slid
    budgets.charge(Settings(), "agent", endpoint)  # type: ignore[arg-type]  # a stand-in policy; no budget


def test_the_daemon_sums_up_refusals_when_it_stops(tmp_path: Path) -> None:
    """`gatekeeper proxy` stopped (SIGTERM) inside a window still writes the summary."""
    import grp
    import os
    import signal
    import subprocess
    import sys

    from .proxy_harness import POLICY, UnixHTTPConnection

    audit = tmp_path / "audit.jsonl"
    audit.touch()
    listen = tmp_path / "proxy.sock"
    policy = tmp_path / "policy.toml"
    policy.write_text(POLICY.format(audit=audit, listen=listen, group=grp.getgrgid(os.getgid()).gr_name,
                                    upstream=tmp_path / "engine.sock", users=users("intake_per_minute = 1")))
    daemon = subprocess.Popen([sys.executable, "-m", "gatekeeper", "proxy", "--policy", str(policy)],
                              stderr=subprocess.PIPE)
    try:
        wait_for(listen.exists, timeout=20)
        conn = UnixHTTPConnection(str(listen))
        statuses = []
        for _ in range(3):
            conn.request("POST", "/_gatekeeper/audit", body=RECORD)
            response = conn.getresponse()
            response.read()
            statuses.append(response.status)
        assert statuses == [204, 429, 429]
        conn.close()
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(20)
    records = [json.loads(line) for line in audit.read_text().splitlines()]
    assert records[-1]["rule"] == "api-intake-rate" and records[-1]["summary"]["refused"] == 2


def test_account_names_are_looked_up_again_after_a_while(monkeypatch: pytest.MonkeyPatch) -> None:
    """The connecting uid's account name (the key of [proxy.users]) is kept for
    USER_NAME_SECONDS only: an account renamed by root is seen by the next connection after
    that. Control: within the time the name kept is the old one."""
    from gatekeeper.proxy import server

    names = {1000: "ai-worker"}
    clock = [100.0]
    monkeypatch.setattr(server.intake, "user_name", names.get)
    kept = server.UserNames(lambda: clock[0])
    assert kept.name(1000) == "ai-worker"
    names[1000] = "renamed"
    clock[0] += server.USER_NAME_SECONDS - 1
    assert kept.name(1000) == "ai-worker"  # the control: still the name looked up
    clock[0] += 2
    assert kept.name(1000) == "renamed"
    assert kept.name(1001) is None  # no such account
