"""The engine's answer to /_ping given by the proxy while it is fresh (gatekeeper.proxy.pings):
the same bytes the engine's answer was relayed as (Date aside), every ping still decided and
recorded, and forwarded as before whenever no fresh 200 answer is known. Each case beside its
control (the same pings with nothing remembered reach the engine)."""

from __future__ import annotations

import re
import socket
import time
from pathlib import Path

import pytest

from gatekeeper.proxy import pings

from .proxy_harness import Harness, running, status_of


@pytest.fixture
def proxy(tmp_path: Path):  # type: ignore[no-untyped-def]
    with running(tmp_path) as harness:
        yield harness


def ping(method: str = "GET", target: str = "/_ping") -> bytes:
    return f"{method} {target} HTTP/1.1\r\nHost: docker\r\nConnection: close\r\n\r\n".encode()


def pings_reaching_the_engine(proxy: Harness) -> list[tuple[str, str]]:
    return [(method, target) for method, target, _, _ in proxy.engine.received if target.endswith("/_ping")]


def test_a_fresh_answer_is_given_by_the_proxy_byte_for_byte(proxy: Harness) -> None:
    first = proxy.raw(ping())
    again = [proxy.raw(ping()) for _ in range(3)]
    assert status_of(first) == 200 and first.endswith(b"\r\n\r\nOK")
    assert again == [first] * 3  # what the engine's answer was relayed as (it sends no Date)
    assert pings_reaching_the_engine(proxy) == [("GET", "/_ping")]
    # Control: with nothing fresh, every ping reaches the engine, as before this cache.
    proxy.proxy.pings.fresh_seconds = 0.0
    assert [proxy.raw(ping()) for _ in range(2)] == [first] * 2
    assert pings_reaching_the_engine(proxy) == [("GET", "/_ping")] * 3


def test_every_ping_is_still_decided_and_recorded(proxy: Harness) -> None:
    for _ in range(4):
        assert status_of(proxy.raw(ping("HEAD"))) == 200
    records = [r for r in proxy.records() if r.get("target") == "/_ping"]
    assert [(r["method"], r["decision"]) for r in records] == [("HEAD", "allow")] * 4
    assert len(pings_reaching_the_engine(proxy)) == 1  # three of them answered by the proxy


def test_a_denied_ping_is_not_answered_from_what_was_remembered(proxy: Harness) -> None:
    assert status_of(proxy.raw(ping())) == 200  # remembered
    assert status_of(proxy.raw(ping())) == 200  # control: given from memory while listed
    proxy.write_policy('[proxy.users]\nsomeone-else = "agent"')
    proxy.reload()
    assert status_of(proxy.raw(ping())) == 403
    assert len(pings_reaching_the_engine(proxy)) == 1


def test_methods_and_targets_are_remembered_apart(proxy: Harness) -> None:
    get = proxy.raw(ping("GET"))
    head = proxy.raw(ping("HEAD"))
    versioned = proxy.raw(ping("GET", "/v1.41/_ping"))
    assert head.endswith(b"\r\n\r\n") and b"content-length: 0\r\n" in head.lower()  # no body for HEAD
    assert get.endswith(b"OK") and b"content-length: 2\r\n" in get.lower()
    assert [proxy.raw(ping("HEAD")), proxy.raw(ping("GET")), proxy.raw(ping("GET", "/v1.41/_ping"))] == \
        [head, get, versioned]
    assert pings_reaching_the_engine(proxy) == [("GET", "/_ping"), ("HEAD", "/_ping"),
                                                ("GET", "/v1.41/_ping")]


def test_keep_alive_and_close_framed_as_the_relay_frames_them(proxy: Harness) -> None:
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(5)
        sock.connect(proxy.listen)
        for _ in range(3):  # the first relayed, the others remembered: the connection stays usable
            sock.sendall(b"HEAD /_ping HTTP/1.1\r\nHost: docker\r\n\r\n")
            head = b""
            while not head.endswith(b"\r\n\r\n"):
                head += sock.recv(1)
            assert b"connection: close" not in head.lower()
        sock.sendall(b"GET /v1.41/containers/json HTTP/1.1\r\nHost: docker\r\nConnection: close\r\n\r\n")
        rest = b""
        while chunk := sock.recv(65536):
            rest += chunk
        assert rest.startswith(b"HTTP/1.1 200 ") and b"[]\n" in rest
    assert b"connection: close" in proxy.raw(ping()).lower()


def test_an_engine_that_does_not_answer_is_asked_again() -> None:
    answers = pings.PingAnswers()
    answers.learn("/e.sock", "GET", "/_ping", 200, b"OK", [(b"content-length", b"2")], b"OK")
    assert answers.fresh("/e.sock", "GET", "/_ping") is not None  # control
    answers.forget()
    assert answers.fresh("/e.sock", "GET", "/_ping") is None


@pytest.mark.parametrize(("status", "headers", "body", "kept"), [
    (200, [(b"content-length", b"2")], b"OK", True),  # control: dockerd's answer
    (500, [(b"content-length", b"2")], b"no", False),  # the engine's trouble is never replayed
    (400, [(b"content-length", b"2")], b"no", False),  # a version it does not serve
    (200, [(b"transfer-encoding", b"chunked")], b"OK", False),
    (200, [], b"OK", False),  # delimited by closing
    (200, [(b"content-length", b"3")], b"OK", False),  # not the body it says
    (200, [(b"content-length", b"2"), (b"content-length", b"2")], b"OK", False),
    (200, [(b"content-length", b"%d" % 100)], b"x" * 100, False),  # no ping's body
])  # fmt: skip
def test_only_a_plain_200_is_given_again(status: int, headers: list[tuple[bytes, bytes]], body: bytes,
                                         kept: bool) -> None:
    answers = pings.PingAnswers()
    answers.learn("/e.sock", "GET", "/_ping", 200, b"OK", [(b"content-length", b"2")], b"OK")
    answers.learn("/e.sock", "GET", "/_ping", status, b"", headers, body)
    assert (answers.fresh("/e.sock", "GET", "/_ping") is not None) is kept  # the old one is gone too


def test_an_answer_ages_out_and_other_engines_are_apart() -> None:
    answers = pings.PingAnswers(fresh_seconds=0.05)
    answers.learn("/e.sock", "HEAD", "/_ping", 200, b"OK", [(b"content-length", b"0")], b"")
    assert answers.fresh("/e.sock", "HEAD", "/_ping") is not None
    assert answers.fresh("/other.sock", "HEAD", "/_ping") is None
    time.sleep(0.06)
    assert answers.fresh("/e.sock", "HEAD", "/_ping") is None


def test_the_date_is_now_in_go_s_format() -> None:
    headers = pings.with_date([(b"api-version", b"1.50"), (b"date", b"Thu, 01 Jan 1970 00:00:00 GMT")],
                              now=1_795_996_800.0)
    assert headers == [(b"api-version", b"1.50"), (b"date", b"Mon, 30 Nov 2026 00:00:00 GMT")]


def test_the_date_formatted_once_per_second_is_the_date_of_that_moment() -> None:
    import email.utils

    moments = [1_795_996_800.0, 1_795_996_800.999, 1_795_996_801.0, 1_795_996_800.5, 0.0, 59.9999,
               951_782_400.25, 4_102_444_799.75] + [1_795_996_800 + n * 0.37 for n in range(40)]
    for when in moments:  # in and out of order: the kept second never answers for another
        assert pings.http_date(when) == email.utils.formatdate(when, usegmt=True).encode()


def test_only_pings_are_pings() -> None:
    assert pings.is_ping("HEAD", "/_ping") and pings.is_ping("GET", "/_ping")
    assert not pings.is_ping("POST", "/_ping")
    assert not pings.is_ping("GET", "/_ping/x") and not pings.is_ping("GET", "/version")


def test_a_pipelined_denied_request_between_remembered_pings_never_reaches_the_engine(proxy: Harness) -> None:
    keep = b"GET /_ping HTTP/1.1\r\nHost: docker\r\n\r\n"
    denied = b"POST /containers/x/exec HTTP/1.1\r\nHost: docker\r\nContent-Length: 2\r\n\r\n{}"
    out = proxy.raw(keep + keep + ping())
    assert out.count(b"HTTP/1.1 200") == 3  # control: three allowed ones, in order
    out = proxy.raw(keep + denied + ping())
    assert re.findall(rb"HTTP/1\.1 (\d{3}) ", out) == [b"200", b"403", b"200"]
    assert [target for _, target, _, _ in proxy.engine.received] == ["/_ping"]


def test_a_ping_asking_for_an_upgrade_goes_to_the_engine(proxy: Harness) -> None:
    assert status_of(proxy.raw(ping())) == 200
    assert status_of(proxy.raw(ping())) == 200  # control: remembered
    upgrade = b"GET /_ping HTTP/1.1\r\nHost: docker\r\nConnection: Upgrade, close\r\nUpgrade: tcp\r\n\r\n"
    assert status_of(proxy.raw(upgrade)) == 200
    assert len(pings_reaching_the_engine(proxy)) == 2


# ---------------------------------------------------------------- an inspect answered by its question


def inspect_c1(proxy: Harness, answered_by: str | None) -> bytes:
    extra = f"X-Test-Answered-By: {answered_by}\r\n" if answered_by else ""
    return proxy.raw(f"GET /v1.41/containers/c1/json HTTP/1.1\r\nHost: docker\r\n{extra}"
                      "Connection: close\r\n\r\n".encode())


def test_an_inspect_is_answered_with_the_decision_s_own_question(proxy: Harness) -> None:
    shared = inspect_c1(proxy, "self")
    assert status_of(shared) == 200 and b'"Secret": "<redacted>"' in shared  # transformed as before
    assert [target for _, target, _, _ in proxy.engine.received] == ["/v1.41/containers/c1/json"]
    assert proxy.engine.received[0][2]["user-agent"] == "gatekeeper"  # the decision's question, only
    # Control: a decision naming no question of its own: the request is forwarded, same answer.
    proxy.engine.received.clear()
    forwarded = inspect_c1(proxy, None)
    assert forwarded.partition(b"\r\n\r\n")[2] == shared.partition(b"\r\n\r\n")[2]
    assert [target for _, target, _, _ in proxy.engine.received] == ["/v1.41/containers/c1/json"]
    assert "user-agent" not in proxy.engine.received[0][2]  # the client's request, forwarded


def test_only_a_question_the_decision_asked_and_the_engine_answered_200_is_sent(proxy: Harness) -> None:
    inspect_c1(proxy, "/v1.41/containers/c2/json")  # named but never asked: forwarded
    assert [target for _, target, _, _ in proxy.engine.received] == ["/v1.41/containers/c1/json"] * 2
    proxy.engine.received.clear()
    missing = proxy.raw(b"GET /v1.41/containers/c9/json HTTP/1.1\r\nHost: docker\r\n"
                         b"X-Test-Answered-By: self\r\nConnection: close\r\n\r\n")
    assert status_of(missing) != 200  # the question's 404 is not sent: the engine is asked again
    assert [target for _, target, _, _ in proxy.engine.received] == ["/v1.41/containers/c9/json"] * 2
