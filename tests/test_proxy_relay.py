"""The proxy's relay: keep-alive, streams as they come, upgrades both ways, transformed
answers, and who gets nothing at all (an unlisted user; everyone, under a broken policy)."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import pytest

from .proxy_harness import Harness, message_of, running, status_of

PING = b"GET /_ping HTTP/1.1\r\nHost: docker\r\nConnection: close\r\n\r\n"


@pytest.fixture
def proxy(tmp_path: Path):  # type: ignore[no-untyped-def]
    with running(tmp_path) as harness:
        yield harness


def read_until(sock: socket.socket, marker: bytes, timeout: float = 5.0) -> bytes:
    sock.settimeout(timeout)
    out = b""
    while marker not in out:
        chunk = sock.recv(65536)
        if not chunk:
            break
        out += chunk
    return out


def test_keep_alive_serves_several_requests_on_one_connection(proxy: Harness) -> None:
    conn = proxy.http()
    answers = []
    for method, path, body in [("GET", "/_ping", None), ("GET", "/v1.41/containers/json", None),
                               ("POST", "/echo", b"{}"), ("DELETE", "/containers/x", None),
                               ("GET", "/_ping", None)]:
        conn.request(method, path, body=body)
        response = conn.getresponse()
        answers.append((response.status, response.read()))
    assert [status for status, _ in answers] == [200, 200, 200, 403, 200]
    assert answers[0][1] == b"OK"
    assert answers[1][1] == b"[]\n"
    assert json.loads(answers[2][1])["size"] == 2
    assert proxy.connections == 1  # a denial keeps the connection too (the request was read whole)
    conn.close()


def test_small_answers_reuse_an_engine_connection(proxy: Harness) -> None:
    conn = proxy.http()
    for _ in range(3):
        conn.request("GET", "/_ping")
        assert conn.getresponse().read() == b"OK"
    conn.request("HEAD", "/_ping")
    response = conn.getresponse()
    assert (response.status, response.read()) == (200, b"")
    conn.request("GET", "/v1.41/containers/json")  # chunked by the engine, re-chunked by h11
    assert conn.getresponse().read() == b"[]\n"
    assert proxy.engine.connections == 1
    assert "connection" not in proxy.engine.received[-1][2]  # keep-alive: no Connection: close


def test_head_ping_then_get_on_one_connection_is_framed_and_prompt(proxy: Harness) -> None:
    """What every docker command starts with: HEAD /_ping, then its request on the same
    connection. The engine answers HEAD with Content-Length: 0 (dockerd does): the proxy must
    relay the head alone (no body, no close), so neither side waits for bytes that never come."""
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(5)
        sock.connect(proxy.listen)
        started = time.monotonic()
        sock.sendall(b"HEAD /_ping HTTP/1.1\r\nHost: docker\r\n\r\n")
        head = read_until(sock, b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 ") and b"content-length: 0\r\n" in head.lower()
        assert head.endswith(b"\r\n\r\n")  # the head alone: no body bytes after it
        assert b"connection: close" not in head.lower()
        sock.sendall(b"GET /v1.41/containers/json HTTP/1.1\r\nHost: docker\r\n\r\n")
        answer = read_until(sock, b"0\r\n\r\n")  # chunked by the engine, re-chunked by h11
        assert answer.startswith(b"HTTP/1.1 200 ")  # nothing of a body after the HEAD's head
        assert time.monotonic() - started < 1.0  # no wait for a body or a close
    assert proxy.engine.connections == 1  # the engine connection of the HEAD served the GET too


def test_an_engine_connection_closed_while_idle_is_retried(proxy: Harness) -> None:
    conn = proxy.http()
    conn.request("GET", "/version")  # the engine hangs up after this answer
    assert conn.getresponse().read() == b"{}"
    for _ in range(3):
        conn.request("GET", "/_ping")
        assert conn.getresponse().read() == b"OK"
    assert proxy.connections == 1


def test_streams_get_their_own_engine_connection(proxy: Harness) -> None:
    conn = proxy.http()
    for _ in range(2):
        conn.request("POST", "/echo", body=b"{}")
        response = conn.getresponse()
        assert (response.status, json.loads(response.read())["size"]) == (200, 2)
    assert proxy.engine.connections == 2
    assert proxy.engine.received[-1][2]["connection"] == "close"


def test_stream_reaches_the_client_before_the_engine_finishes(proxy: Harness) -> None:
    with socket.socket(socket.AF_UNIX) as sock:
        sock.connect(proxy.listen)
        sock.sendall(b"GET /stream HTTP/1.1\r\nHost: docker\r\n\r\n")
        first = read_until(sock, b"first\n")
        assert b"first\n" in first  # the engine still holds the rest back
        assert b"second" not in first
        proxy.release_stream()
        rest = read_until(sock, b"0\r\n\r\n")
        assert b"second\n" in rest
        # the connection stays usable: a second request on it
        sock.sendall(PING)
        assert read_until(sock, b"OK").endswith(b"OK")


def test_large_body_relayed_exactly(proxy: Harness) -> None:
    conn = proxy.http()
    size = 5_000_123
    conn.request("GET", f"/big?n={size}")
    response = conn.getresponse()
    assert response.status == 200
    assert len(response.read()) == size
    conn.request("GET", "/_ping")
    assert conn.getresponse().read() == b"OK"
    assert proxy.connections == 1


def test_upgrade_is_relayed_raw_both_ways(proxy: Harness) -> None:
    with socket.socket(socket.AF_UNIX) as sock:
        sock.connect(proxy.listen)
        sock.sendall(b"POST /v1.41/containers/c1/attach?stream=1&stdin=1 HTTP/1.1\r\nHost: docker\r\n"
                     b"Connection: Upgrade\r\nUpgrade: tcp\r\nContent-Length: 0\r\n\r\n")
        head = read_until(sock, b"hello from the container\n")
        assert head.startswith(b"HTTP/1.1 101 UPGRADED\r\n")
        assert b"upgrade: tcp" in head.lower()
        sock.sendall(b"typed on stdin")
        assert read_until(sock, b"TYPED ON STDIN").endswith(b"TYPED ON STDIN")
        sock.shutdown(socket.SHUT_WR)  # the CLI's end of stdin
        rest = read_until(sock, b"stdin closed\n")
        assert rest.endswith(b"stdin closed\n")
        assert sock.recv(100) == b""
    _, _, headers, _ = proxy.engine.received[-1]
    assert (headers["connection"], headers["upgrade"]) == ("Upgrade", "tcp")


def test_transformed_answer_is_rewritten(proxy: Harness) -> None:
    conn = proxy.http()
    conn.request("GET", "/containers/c1/json")
    response = conn.getresponse()
    body = json.loads(response.read())
    assert body == {"Id": "c1", "Secret": "<redacted>"}
    assert response.getheader("content-length") == str(len(json.dumps(body)))


def test_close_delimited_answer_is_chunked_to_the_client(proxy: Harness) -> None:
    conn = proxy.http()
    conn.request("GET", "/close-delimited")
    response = conn.getresponse()
    assert response.read() == b"until the end"
    assert response.getheader("transfer-encoding") == "chunked"


def test_denial_names_the_rule_as_the_docker_cli_prints_it(proxy: Harness) -> None:
    answer = proxy.raw(b"POST /containers/x/exec HTTP/1.1\r\nHost: docker\r\nConnection: close\r\n"
                       b"Content-Length: 2\r\n\r\n{}")
    assert status_of(answer) == 403
    assert message_of(answer) == (
        "gatekeeper: denied: POST /containers/x/exec is not allowed here (rule denied)")
    assert not [r for r in proxy.engine.received if "exec" in r[1]]


def test_denied_head_gets_no_body(proxy: Harness) -> None:
    """The docker CLI pings with HEAD first: a body after that answer would be read as the
    answer to its next request."""
    with socket.socket(socket.AF_UNIX) as sock:
        sock.connect(proxy.listen)
        sock.sendall(b"HEAD /containers/x/json HTTP/1.1\r\nHost: docker\r\n\r\n" + PING)
        answers = read_until(sock, b"\r\n\r\nOK")
    first, _, rest = answers.partition(b"\r\n\r\n")
    assert first.startswith(b"HTTP/1.1 403 ")
    assert b"content-length: " in first.lower()
    assert rest.startswith(b"HTTP/1.1 200 ")


def test_a_decision_that_asks_the_engine_is_answered_on_the_event_loop(proxy: Harness) -> None:
    """Decisions run on the event loop; one that asks the engine a GET is stopped there, the
    loop fetches the answer and runs it again: no thread hop, one record, its verdict."""
    loop_thread = proxy.thread.name
    before, asked = len(proxy.records()), len(proxy.engine.received)
    conn = proxy.http()
    conn.request("GET", "/containers/c1/top")
    response = conn.getresponse()
    response.read()
    records = proxy.records()[before:]
    assert (len(records), records[0]["decision"]) == (1, "allow")
    assert records[0]["reason"] == f"asked the engine in {loop_thread}"
    question, forwarded = proxy.engine.received[asked:]
    # asked on a kept-alive engine connection (the relay's pool): no Connection: close
    assert question[1] == "/containers/c1/json" and "connection" not in question[2]
    assert forwarded[1] == "/containers/c1/top"
    # Control: a question about a host path (realpath) is not the engine's: a worker thread.
    conn.request("GET", "/containers/c1/export")
    assert conn.getresponse().read() == b""  # the fake engine has no such path: 404, empty
    reason = str(proxy.records()[-1]["reason"])
    assert reason.startswith(("/ resolved in asyncio_", "/ resolved in uvloop_"))  # the default executor


def test_engine_questions_reuse_a_kept_alive_connection(proxy: Harness) -> None:
    """A decision's GET goes over a pooled engine connection, which goes back to the pool
    after its answer: the next decision's question opens none (control: the forwarded
    request itself, not a small answer, opens one of its own each time)."""
    conn = proxy.http()
    conn.request("GET", "/containers/c1/top")  # fills the pool with a question's connection
    conn.getresponse().read()
    before = proxy.engine.connections
    conn.request("GET", "/containers/c1/top")
    conn.getresponse().read()
    assert proxy.records()[-1]["decision"] == "allow"
    assert proxy.engine.connections - before == 1  # the forwarded /top only


def test_dependent_engine_questions_are_fetched_in_turn(proxy: Harness) -> None:
    asked = len(proxy.engine.received)
    conn = proxy.http()
    conn.request("GET", "/containers/c1/changes?then=c1")
    conn.getresponse().read()
    assert proxy.records()[-1]["decision"] == "allow"
    # The second question is the first one again: answered from what was fetched.
    seen = [r[1] for r in proxy.engine.received[asked:]]
    assert seen == ["/containers/c1/json", "/containers/c1/changes?then=c1"]
    conn.request("GET", "/containers/c1/changes?then=c2")  # a second, different question: 404 here
    conn.getresponse().read()
    assert proxy.records()[-1]["decision"] == "deny"
    assert [r[1] for r in proxy.engine.received[-2:]] == ["/containers/c1/json", "/containers/c2/json"]


def test_an_engine_question_without_an_answer_denies(proxy: Harness) -> None:
    """A question the engine answers with something that is not HTTP: the decision meets the
    error at that question and denies (control: the same decision with a good answer allows)."""
    conn = proxy.http()
    conn.request("GET", "/containers/c1/changes?then=broken")
    response = conn.getresponse()
    assert (response.status, b"no answer: EngineProtocolError" in response.read()) == (403, True)
    conn.request("GET", "/containers/c1/changes?then=c1")  # control
    conn.getresponse().read()  # forwarded (the fake engine has no such path)
    assert proxy.records()[-1]["decision"] == "allow"


def test_every_decision_is_audited_with_the_api_layer(proxy: Harness) -> None:
    proxy.raw(PING)
    proxy.raw(b"DELETE /containers/x HTTP/1.1\r\nHost: docker\r\nConnection: close\r\n\r\n")
    allowed, denied = proxy.records()[-2:]
    for record in (allowed, denied):
        assert record["layer"] == "api"
        assert record["event"] == "decision"
        assert record["uid"] == __import__("os").getuid()
        assert record["profile"] == "agent"
    assert (allowed["decision"], allowed["method"], allowed["target"], allowed["endpoint"]) == (
        "allow", "GET", "/_ping", "GET /_ping")
    assert (denied["decision"], denied["rule"]) == ("deny", "denied")
    assert allowed["body_bytes"] == 0
    assert "chunked" not in allowed


def test_client_leaving_a_stream_ends_it_upstream(proxy: Harness) -> None:
    with socket.socket(socket.AF_UNIX) as sock:
        sock.connect(proxy.listen)
        sock.sendall(b"GET /stream HTTP/1.1\r\nHost: docker\r\n\r\n")
        read_until(sock, b"first\n")
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not upstream_gone(proxy):
        time.sleep(0.05)
    assert upstream_gone(proxy)


def upstream_gone(proxy: Harness) -> bool:
    """The engine's side of the stream is closed (its connection count back to none)."""
    import subprocess

    out = subprocess.run(["ss", "-xp"], capture_output=True, text=True, check=False).stdout
    return proxy.upstream not in out or out.count(proxy.upstream) <= 1


# ---------------------------------------------------------------- who gets nothing


def test_unlisted_user_is_refused_everything(tmp_path: Path) -> None:
    with running(tmp_path / "listed") as listed:  # control: the same request from a listed user
        assert status_of(listed.raw(PING)) == 200
    with running(tmp_path / "unlisted", users='[proxy.users]\nsomeone-else = "agent"') as unlisted:
        answer = unlisted.raw(PING)
        assert status_of(answer) == 403
        assert message_of(answer).endswith("is not listed in [proxy.users] (rule api-user)")
        assert unlisted.engine.received == []
        assert unlisted.records()[-1]["rule"] == "api-user"


def test_broken_policy_refuses_everything_until_fixed(proxy: Harness) -> None:
    assert status_of(proxy.raw(PING)) == 200  # control: the good policy lets it through
    good = proxy.policy.read_text()
    proxy.policy.write_text(good + "\n[proxy]\nunknown_key = 1\n")
    proxy.reload()
    answer = proxy.raw(PING)
    assert status_of(answer) == 403
    assert message_of(answer).endswith("(rule policy-invalid)")
    count = len(proxy.engine.received)
    proxy.policy.write_text(good)
    proxy.reload()
    # (not a ping: the proxy answers those itself while it remembers the engine's answer)
    listing = b"GET /containers/json HTTP/1.1\r\nHost: docker\r\nConnection: close\r\n\r\n"
    assert status_of(proxy.raw(listing)) == 200
    assert len(proxy.engine.received) == count + 1


def test_unreadable_policy_refuses_everything(proxy: Harness) -> None:
    proxy.policy.unlink()
    proxy.reload()
    assert status_of(proxy.raw(PING)) == 403
    assert proxy.engine.received == []


def test_engine_down_is_a_502_not_a_hang(proxy: Harness) -> None:
    Path(proxy.upstream).unlink()
    answer = proxy.raw(PING)
    assert status_of(answer) == 502
    assert "rule api-upstream" in message_of(answer)


def test_forcecommand_records_are_taken_not_forwarded(proxy: Harness) -> None:
    """POST /_gatekeeper/audit is the intake (gatekeeper.proxy.intake): written to the log,
    stamped with the caller from SO_PEERCRED, never sent to the engine."""
    conn = proxy.http()
    record = b'{"event": "decision", "layer": "api", "cmd": "docker ps"}'
    conn.request("POST", "/_gatekeeper/audit", body=record)
    response = conn.getresponse()
    assert (response.status, response.read()) == (204, b"")
    written = proxy.records()[-1]
    assert (written["layer"], written["cmd"]) == ("cli", "docker ps")
    assert written["reported_by"]["profile"] == "agent"  # type: ignore[index]
    conn.request("GET", "/_ping")  # the connection goes on
    assert conn.getresponse().read() == b"OK"
    assert not [r for r in proxy.engine.received if "_gatekeeper" in r[1]]


def test_an_upgrade_relay_survives_garbage_collection(proxy: Harness) -> None:
    """Once the client has half-closed an upgraded connection (`docker run` without stdin),
    nothing asyncio holds reaches the relay waiting on the engine: unless the proxy keeps
    its connection tasks, a garbage collection destroys the relay and the output is lost."""
    import gc
    import threading

    with socket.socket(socket.AF_UNIX) as sock:
        sock.connect(proxy.listen)
        sock.sendall(b"POST /containers/c2/attach HTTP/1.1\r\nHost: docker\r\n"
                     b"Connection: Upgrade\r\nUpgrade: tcp\r\nContent-Length: 0\r\n\r\n")
        read_until(sock, b"hello from the container\n")
        sock.shutdown(socket.SHUT_WR)
        time.sleep(0.2)  # the half-close reaches the engine; the engine holds its output
        collected = threading.Event()
        proxy.loop.call_soon_threadsafe(lambda: (gc.collect(), collected.set()))
        assert collected.wait(5)
        proxy.release_stream()
        assert read_until(sock, b"stdin closed\n").endswith(b"stdin closed\n")


def test_a_chunked_answer_cut_short_closes_the_client_connection(proxy: Harness) -> None:
    """The engine sends a chunked head (its last header value ends in "0") and hangs up: the
    answer is incomplete, so the proxy closes the client's connection rather than leave the
    client waiting for chunks (control: a chunked answer that ends keeps the connection)."""
    with socket.socket(socket.AF_UNIX) as sock:
        sock.connect(proxy.listen)
        sock.sendall(b"GET /v1.41/containers/json HTTP/1.1\r\nHost: docker\r\n\r\n")  # control
        assert read_until(sock, b"0\r\n\r\n").startswith(b"HTTP/1.1 200 ")
        sock.sendall(b"GET /cut-chunked HTTP/1.1\r\nHost: docker\r\n\r\n")
        sock.settimeout(5)
        got = b""
        while chunk := sock.recv(65536):  # a timeout here: the connection was kept open
            got += chunk
    assert got.startswith(b"HTTP/1.1 200 ") and got.endswith(b"x-api: 1.40\r\n\r\n")
