"""The audit intake: what the agent's account reports is written by the proxy,
stamped as the agent's word, and the ForceCommand never runs a command unrecorded.

* Stamps: `layer` "cli" and `reported_by` (uid from the kernel, user, profile) on every
  reported record, whatever the record said; trying to cheat: a record claiming to be
  the proxy's ("layer": "api", no reported_by), a forged reported_by, duplicate keys.
* Refused: anything but one JSON object of a ForceCommand event, oversized, deeply
  nested, NaN, a caller with no profile, another method or path; a log that cannot be
  written is a 503.
* The ForceCommand with `[audit] via_proxy`: records arrive through the socket (the
  log file itself is never opened); no socket, a refusal or a silent proxy: exit 75 and
  docker never runs (control: the same command runs when the proxy takes the record).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from gatekeeper import audit_handoff
from gatekeeper.errors import AuditError
from gatekeeper.proxy import intake
from gatekeeper.proxy.contract import ApiRequest
from tests.conftest import Deployment
from tests.test_forcecommand import run_gatekeeper

UID = os.getuid()


def request(body: bytes, *, method: str = "POST", path: str = intake.INTAKE_PATH,
            profile: str = "default") -> ApiRequest:  # fmt: skip
    return ApiRequest(method, path, path, None, {}, [], body, UID, profile)


def reported(tmp_path: Path, body: bytes, **kwargs: str) -> tuple[int, list[dict[str, object]]]:
    log = tmp_path / "audit.jsonl"
    log.touch()
    status, _ = intake.handle_intake(request(body, **kwargs), str(log))
    return status, [json.loads(line) for line in log.read_text().splitlines()]


def test_a_record_is_written_stamped(tmp_path: Path) -> None:
    status, records = reported(tmp_path, b'{"v":1,"event":"decision","cmd":"docker ps"}')
    assert status == 204
    [record] = records
    assert record["cmd"] == "docker ps" and record["layer"] == "cli"
    assert record["reported_by"] == {"uid": UID, "user": intake.user_name(UID), "profile": "default"}
    assert isinstance(record["received"], str)


CHEATS = {
    "claims the api layer": b'{"event":"decision","layer":"api"}',
    "forges reported_by": b'{"event":"decision","reported_by":{"uid":0,"user":"root"}}',
    "forges it twice (last key wins in json)": b'{"event":"decision","reported_by":null,"reported_by":null}',
    "forges the receipt time": b'{"event":"exit","received":"2000-01-01T00:00:00Z"}',
}


@pytest.mark.parametrize("body", CHEATS.values(), ids=CHEATS.keys())
def test_the_agent_cannot_pass_for_the_proxy(tmp_path: Path, body: bytes) -> None:
    status, [record] = reported(tmp_path, body)
    assert status == 204
    assert record["layer"] == "cli"
    assert record["reported_by"]["uid"] == UID  # type: ignore[index]
    assert record["received"] != "2000-01-01T00:00:00Z"


REFUSED = {
    "not json": (b"docker ps", {}, 400),
    "a list": (b'[{"event":"decision"}]', {}, 400),
    "no event": (b'{"cmd":"docker ps"}', {}, 400),
    "an event the ForceCommand never writes": (b'{"event":"api"}', {}, 400),
    "NaN": (b'{"event":"decision","x":NaN}', {}, 400),
    "nested deep": (b'{"event":"decision","x":' + b"[" * 20 + b"]" * 20 + b"}", {}, 400),
    "nested past the parser": (b"[" * 100_000 + b"]" * 100_000, {}, 413),
    "oversized": (b'{"event":"decision","x":"' + b"a" * intake.MAX_RECORD + b'"}', {}, 413),
    "GET": (b'{"event":"decision"}', {"method": "GET"}, 405),
    "a path below": (b'{"event":"decision"}', {"path": intake.INTAKE_PATH + "/x"}, 405),
    "a caller with no profile": (b'{"event":"decision"}', {"profile": ""}, 403),
}


@pytest.mark.parametrize(("body", "kwargs", "status"), REFUSED.values(), ids=REFUSED.keys())
def test_refused_and_nothing_written(tmp_path: Path, body: bytes, kwargs: dict[str, str],
                                     status: int) -> None:
    assert reported(tmp_path, body, **kwargs) == (status, [])


def test_intake_paths_are_the_proxys_never_the_engines() -> None:
    assert intake.is_intake(request(b"", path="/_gatekeeper/audit"))
    assert intake.is_intake(request(b"", path="/_gatekeeper/audit/x"))
    assert not intake.is_intake(request(b"", path="/containers/json"))
    assert not intake.is_intake(request(b"", path="/_gatekeeper/auditx"))


def test_an_unwritable_log_is_a_503(tmp_path: Path) -> None:
    status, body = intake.handle_intake(request(b'{"event":"decision"}'), str(tmp_path / "missing.jsonl"))
    assert status == 503 and b"audit log" in body


# ---------------------------------------------------------------- the ForceCommand's side


class FakeProxy:
    """A unix socket answering each request as the proxy's hook would (or as told)."""

    def __init__(self, path: Path, log: Path, reply: bytes | None = None, *,
                 keep_alive: bool = False) -> None:
        self.path, self.log, self.reply, self.keep_alive = path, log, reply, keep_alive
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(str(path))
        self.server.listen(8)
        self.requests: list[bytes] = []
        self.connections = 0
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            self.connections += 1
            with conn:
                # Like the proxy with keep_alive (HTTP/1.1: until the client asks to close),
                # else one request per connection, as a proxy that closed it meanwhile.
                while self.answer(conn) and self.keep_alive:
                    pass

    def answer(self, conn: socket.socket) -> bool:
        """Answer one request; whether the client keeps the connection open."""
        data = b""
        while b"\r\n\r\n" not in data:
            more = conn.recv(65536)
            if not more:
                return False
            data += more
        head, body = data.split(b"\r\n\r\n", 1)
        length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length")))  # fmt: skip
        while len(body) < length:
            body += conn.recv(65536)
        self.requests.append(head)
        if self.reply is not None:
            if self.reply:
                conn.sendall(self.reply)
            return False
        status, answer = intake.handle_intake(request(body), str(self.log))
        conn.sendall(f"HTTP/1.1 {status} X\r\nContent-Length: {len(answer)}\r\n\r\n".encode() + answer)
        return b"connection: close" not in head.lower()

    def close(self) -> None:
        self.server.close()


@contextlib.contextmanager
def fake_proxy(tmp_path: Path, reply: bytes | None = None, *,
               keep_alive: bool = False) -> Iterator[FakeProxy]:
    log = tmp_path / "proxy-audit.jsonl"
    log.touch()
    proxy = FakeProxy(tmp_path / "proxy.sock", log, reply, keep_alive=keep_alive)
    try:
        yield proxy
    finally:
        proxy.close()


def test_hand_over_takes_a_204(tmp_path: Path) -> None:
    with fake_proxy(tmp_path) as proxy:
        audit_handoff.hand_over(str(proxy.path), '{"event":"exit","exit":0}')
        assert proxy.requests[0].startswith(b"POST /_gatekeeper/audit HTTP/1.1\r\n")
    assert json.loads(proxy.log.read_text())["exit"] == 0


BAD_REPLIES = {
    "503": b"HTTP/1.1 503 X\r\n\r\n",
    "200 is not 204": b"HTTP/1.1 200 OK\r\n\r\n",
    "garbage": b"garbage\r\n",
    "hang-up": b"",
}


@pytest.mark.parametrize("reply", BAD_REPLIES.values(), ids=BAD_REPLIES.keys())
def test_hand_over_fails_on_anything_else(tmp_path: Path, reply: bytes) -> None:
    with fake_proxy(tmp_path, reply) as proxy, pytest.raises(AuditError):
        audit_handoff.hand_over(str(proxy.path), '{"event":"exit"}')


@pytest.mark.parametrize(("status", "said", "rule"), [
    (429, "slow down and try again", "audit-unwritable"),
    (507, "the operator must rotate it", "audit-full"),
    (503, "(HTTP 503)", "audit-unwritable"),
])
def test_a_refused_record_says_what_to_do(tmp_path: Path, status: int, said: str, rule: str) -> None:
    """Over the proxy's request budget, or with the log at its ceiling, the one line names it."""
    with fake_proxy(tmp_path, b"HTTP/1.1 %d X\r\nContent-Length: 0\r\n\r\n" % status) as proxy, \
            pytest.raises(AuditError) as refused:
        audit_handoff.hand_over(str(proxy.path), '{"event":"exit"}')
    assert said in refused.value.message and refused.value.rule == rule


def test_hand_over_fails_without_a_proxy(tmp_path: Path) -> None:
    with pytest.raises(AuditError, match="cannot hand the record"):
        audit_handoff.hand_over(str(tmp_path / "nothing.sock"), '{"event":"exit"}')


def via_proxy(deployment: Deployment, socket_path: Path) -> None:
    text = deployment.policy.read_text().replace("syslog = false\n", "syslog = false\nvia_proxy = true\n")
    text += f'\n[proxy]\nlisten = "{socket_path}"\n'
    deployment.policy.write_text(text)


@pytest.fixture
def proxied(deployment: Deployment, tmp_path: Path) -> Iterator[tuple[Deployment, FakeProxy]]:
    with fake_proxy(tmp_path) as proxy:
        via_proxy(deployment, proxy.path)
        yield deployment, proxy


def test_forcecommand_records_through_the_proxy_only(proxied: tuple[Deployment, FakeProxy]) -> None:
    deployment, proxy = proxied
    result = run_gatekeeper(deployment, "docker ps")
    assert result.returncode == 0, result.stderr
    assert deployment.argv() == ["ps"]
    records = [json.loads(line) for line in proxy.log.read_text().splitlines()]
    assert [(r["event"], r["layer"]) for r in records] == [("decision", "cli"), ("exit", "cli")]
    assert deployment.audit_lines() == []  # the log file in [audit] path was never written by the agent


def test_an_allowed_command_hands_both_records_over_one_connection(deployment: Deployment,
                                                                   tmp_path: Path) -> None:
    """The decision record keeps the connection open for the exit line (one connect and accept
    of the proxy less per command); a denial, with no exit line, closes it at once."""
    with fake_proxy(tmp_path, keep_alive=True) as proxy:
        via_proxy(deployment, proxy.path)
        assert run_gatekeeper(deployment, "docker ps").returncode == 0
        assert proxy.connections == 1
        assert [b"connection: close" in head.lower() for head in proxy.requests] == [False, True]
        assert run_gatekeeper(deployment, "docker exec web sh").returncode == 77
        assert proxy.connections == 2
        assert b"connection: close" in proxy.requests[-1].lower()
    records = [json.loads(line) for line in proxy.log.read_text().splitlines()]
    assert [r["event"] for r in records] == ["decision", "exit", "decision"]
    assert records[0]["session"] == records[1]["session"]


def test_a_long_command_gives_the_intake_connection_back(deployment: Deployment, tmp_path: Path) -> None:
    """A command still running after execution.LONG_RUN_MS closes its kept intake connection (a
    stream must not hold one of the uid's proxy connections for hours); its exit line goes on a
    fresh one. Control: a quick command keeps one connection for both records (test above)."""
    deployment.docker.write_text("#!/bin/sh\nsleep 1.6\n")
    with fake_proxy(tmp_path, keep_alive=True) as proxy:
        via_proxy(deployment, proxy.path)
        result = run_gatekeeper(deployment, "docker ps")
        assert result.returncode == 0 and b"warning" not in result.stderr
        assert proxy.connections == 2
        assert [b"connection: close" in head.lower() for head in proxy.requests] == [False, True]
    records = [json.loads(line) for line in proxy.log.read_text().splitlines()]
    assert [r["event"] for r in records] == ["decision", "exit"]


def test_supervise_calls_on_long_run_once_and_only_for_a_long_child() -> None:
    import os

    from gatekeeper.execution import supervise

    for seconds, expected in (("0", 0), ("0.5", 1)):
        calls: list[int] = []
        pid = os.posix_spawn("/bin/sleep", ["sleep", seconds], {})
        status = supervise(pid, -1, b"", None, lambda: calls.append(1), long_run_ms=150)  # noqa: B023
        assert os.waitstatus_to_exitcode(status) == 0
        assert len(calls) == expected, seconds


def test_the_connection_is_open_before_the_decision_is_made(deployment: Deployment, tmp_path: Path) -> None:
    """The ForceCommand connects to the intake first and decides meanwhile: the proxy has
    accepted before the record comes. Still one connection per command, also for the usage
    text's record (made without the early connection); without a proxy it fails closed as
    before (test_forcecommand_fails_closed_without_the_proxy)."""
    with fake_proxy(tmp_path, keep_alive=True) as proxy:
        via_proxy(deployment, proxy.path)
        assert run_gatekeeper(deployment, "docker ps").returncode == 0
        assert run_gatekeeper(deployment, None).returncode == 77
        assert proxy.connections == 2
    records = [json.loads(line) for line in proxy.log.read_text().splitlines()]
    assert [r["event"] for r in records] == ["decision", "exit", "decision"]


def test_the_exit_line_goes_afresh_when_the_proxy_closed_the_kept_connection(
        proxied: tuple[Deployment, FakeProxy]) -> None:
    """A proxy that closed the kept connection while docker ran (its idle_timeout, a restart)
    gets the exit line on a new one: written once, no warning."""
    deployment, proxy = proxied  # this fake proxy closes every connection after one answer
    result = run_gatekeeper(deployment, "docker ps")
    assert result.returncode == 0 and b"warning" not in result.stderr
    assert proxy.connections == 2
    records = [json.loads(line) for line in proxy.log.read_text().splitlines()]
    assert [r["event"] for r in records] == ["decision", "exit"]


def test_forcecommand_fails_closed_without_the_proxy(proxied: tuple[Deployment, FakeProxy]) -> None:
    """Control: the same command runs while the proxy takes records (test above)."""
    deployment, proxy = proxied
    proxy.close()
    proxy.path.unlink()
    result = run_gatekeeper(deployment, "docker ps")
    assert result.returncode == 75
    assert b"nothing runs unrecorded" in result.stderr
    assert not deployment.record.with_suffix(".argv").exists()


def test_forcecommand_fails_closed_when_the_proxy_refuses(deployment: Deployment, tmp_path: Path) -> None:
    with fake_proxy(tmp_path, b"HTTP/1.1 503 X\r\nContent-Length: 0\r\n\r\n") as proxy:
        via_proxy(deployment, proxy.path)
        result = run_gatekeeper(deployment, "docker ps")
    assert result.returncode == 75
    assert not deployment.record.with_suffix(".argv").exists()


def test_builds_take_the_classic_api_in_every_layout(proxied: tuple[Deployment, FakeProxy]) -> None:
    """The proxy serves no BuildKit gRPC tunnel, and on the engine's socket alone BuildKit would
    run the `# syntax=` frontend image: docker gets DOCKER_BUILDKIT=0 in front of either."""
    deployment, proxy = proxied
    assert run_gatekeeper(deployment, "docker ps").returncode == 0
    assert deployment.child_env()["DOCKER_BUILDKIT"] == "0"
    assert deployment.child_env()["COMPOSE_BAKE"] == "false"
    text = deployment.policy.read_text().replace('host = "unix:///run/test.sock"', f'host = "unix://{proxy.path}"')
    deployment.policy.write_text(text)
    assert run_gatekeeper(deployment, "docker ps").returncode == 0
    assert deployment.child_env()["DOCKER_BUILDKIT"] == "0"
    assert deployment.child_env()["COMPOSE_BAKE"] == "false"
