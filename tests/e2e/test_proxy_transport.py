"""The real docker CLI through `gatekeeper proxy` in front of the stack's engine.

The proxy runs as the deployment runs it (the installed venv, `gatekeeper proxy
--policy FILE`) on a private socket, with the real decision (gatekeeper.proxy.vet).
The client is the pinned docker CLI with DOCKER_HOST=unix://<proxy socket>, run as
root, which [proxy.users] maps to the profile "default" here. What it exercises is
the transport: HEAD/GET pings, keep-alive, JSON bodies, the attach upgrade of
`run`, streamed `logs -f` and `wait`, and the build context the CLI sends chunked.
The control for each: the same command straight to the engine gives the same output.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .proxy_daemon import ProxyDaemon, running_proxy
from .stack import AUDIT_LOG, IMAGE, RUN_DIR, Stack, docker_client

pytestmark = pytest.mark.e2e

PREFIX = "ai-e2e-proxy-"  # names the caller gives start with the [names] prefix


@pytest.fixture(scope="module")
def proxy(stack: Stack) -> Iterator[ProxyDaemon]:
    with running_proxy() as daemon:
        yield daemon
    for name in ("build", "logs", "run", "detached", "sleeper"):
        stack.docker("rm", "-f", f"{PREFIX}{name}", check=False)
    stack.docker("rmi", f"{PREFIX}built:latest", check=False)


def api_records_since(offset: int) -> list[dict[str, object]]:
    with AUDIT_LOG.open("rb") as log:
        log.seek(offset)
        lines = log.read().decode().splitlines()
    return [record for record in map(json.loads, lines) if record.get("layer") == "api"]


def test_ps_through_the_proxy_is_what_the_engine_says(proxy: ProxyDaemon, stack: Stack) -> None:
    offset = AUDIT_LOG.stat().st_size
    through = proxy.docker("ps", "-a", "--format", "{{.ID}}")
    assert through.returncode == 0, through.stderr + proxy.log.read_text()
    assert through.stdout == stack.docker("ps", "-a", "--format", "{{.ID}}").stdout  # control: direct
    records = api_records_since(offset)
    assert any(r["method"] == "GET" and "/containers/json" in str(r["target"]) and r["decision"] == "allow"
               for r in records)
    assert all(r["uid"] == 0 and r["profile"] == "default" for r in records)


def test_run_rm_attaches_waits_and_removes(proxy: ProxyDaemon, stack: Stack) -> None:
    result = proxy.docker("run", "--rm", "--name", f"{PREFIX}run", IMAGE, "echo", "through the proxy")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "through the proxy\n"
    assert stack.docker("ps", "-aq", "--filter", f"name={PREFIX}run").stdout == ""  # removed


def test_run_with_stdin_relays_both_ways(proxy: ProxyDaemon) -> None:
    result = proxy.docker("run", "--rm", "-i", IMAGE, "tr", "a-z", "A-Z", input_text="typed on stdin\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "TYPED ON STDIN\n"


def test_detached_run_and_wait(proxy: ProxyDaemon) -> None:
    started = proxy.docker("run", "-d", "--name", f"{PREFIX}detached", IMAGE, "sh", "-c", "exit 3")
    assert started.returncode == 0, started.stderr
    waited = proxy.docker("wait", f"{PREFIX}detached")
    assert (waited.returncode, waited.stdout) == (0, "3\n"), waited.stderr


def test_logs_follow_streams_until_the_container_ends(proxy: ProxyDaemon) -> None:
    script = "for i in 1 2 3; do echo line$i; sleep 1; done"
    started = proxy.docker("run", "-d", "--name", f"{PREFIX}logs", IMAGE, "sh", "-c", script)
    assert started.returncode == 0, started.stderr
    follow = subprocess.Popen([str(docker_client()), "logs", "-f", f"{PREFIX}logs"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=proxy.env())
    assert follow.stdout is not None
    first = follow.stdout.readline()
    seen_at = time.monotonic()
    rest, errors = follow.communicate(timeout=30)
    assert first == b"line1\n", errors
    assert rest == b"line2\nline3\n"
    assert time.monotonic() - seen_at > 1.0  # the first line came while the container still ran


def test_build_context_is_read_whole_and_forwarded(proxy: ProxyDaemon, stack: Stack) -> None:
    offset = AUDIT_LOG.stat().st_size
    with tempfile.TemporaryDirectory(dir=RUN_DIR) as context:
        Path(context, "Dockerfile").write_text(f"FROM {IMAGE}\nCOPY payload /payload\nRUN cat /payload\n")
        Path(context, "payload").write_bytes(os.urandom(300_000).hex().encode())
        built = proxy.docker("build", "-t", f"{PREFIX}built", context, timeout=300)
    assert built.returncode == 0, built.stderr + built.stdout
    size = stack.docker("run", "--rm", f"{PREFIX}built", "wc", "-c", "/payload").stdout.split()[0]
    assert size == "600000"
    builds = [r for r in api_records_since(offset) if str(r["target"]).split("?")[0].endswith("/build")]
    assert builds and builds[-1]["decision"] == "allow"
    # The CLI streams the context tar chunked; the proxy read all of it before deciding.
    print("build request as received:", {k: builds[-1].get(k) for k in ("body_bytes", "chunked")})
    assert int(builds[-1]["body_bytes"]) > 600_000  # type: ignore[call-overload]


def test_denied_command_prints_the_rule(proxy: ProxyDaemon, stack: Stack) -> None:
    started = proxy.docker("run", "-d", "--name", f"{PREFIX}sleeper", IMAGE, "sleep", "60")
    assert started.returncode == 0, started.stderr
    control = stack.docker("exec", f"{PREFIX}sleeper", "true", check=False)
    assert control.returncode == 0  # control: the engine itself would run it
    result = proxy.docker("exec", f"{PREFIX}sleeper", "true")
    assert result.returncode != 0
    assert "Error response from daemon: gatekeeper: denied:" in result.stderr
    assert "(rule " in result.stderr


COMPOSE = f"""\
services:
  app:
    image: {IMAGE}
    command: ["sh", "-c", "echo compose through the proxy; sleep 30"]
"""


def test_compose_up_ps_logs_down(proxy: ProxyDaemon, stack: Stack) -> None:
    """Compose's own client (the Go SDK, several connections, keep-alive) through the proxy.
    (compose build is not here: compose asks the engine's buildkit over /grpc first, which
    the decision refuses, then wants a buildx builder image from a registry this machine
    cannot reach; the CLI's build above covers build contexts.)"""
    project = f"{PREFIX}compose"
    with tempfile.TemporaryDirectory(dir=RUN_DIR) as directory:
        Path(directory, "compose.yaml").write_text(COMPOSE)
        compose = ("compose", "-p", project, "--project-directory", directory)
        try:
            for step in (("up", "-d"), ("ps", "--format", "{{.Service}} {{.State}}"), ("logs",),
                         ("down", "-t", "1")):
                result = proxy.docker(*compose, *step, timeout=300)
                assert result.returncode == 0, f"compose {step}: {result.stderr}{result.stdout}"
                if step[0] == "ps":
                    assert result.stdout == "app running\n"
                if step == ("logs",):
                    assert "compose through the proxy" in result.stdout
        finally:
            stack.docker(*compose, "down", "-t", "1", check=False)


def test_run_rm_output_is_never_lost(proxy: ProxyDaemon, stack: Stack) -> None:
    """Twenty quick runs, each attach relay checked (found: a relay collected mid-stream
    lost the output of one run in twenty); the control: the same straight to the engine."""
    lost = []
    for n in range(20):
        result = proxy.docker("run", "--rm", IMAGE, "echo", f"n{n}")
        if result.stdout != f"n{n}\n":
            lost.append((n, result.returncode, result.stdout, result.stderr))
    direct = [n for n in range(20) if stack.docker("run", "--rm", IMAGE, "echo", f"n{n}").stdout != f"n{n}\n"]
    assert not lost and not direct, (lost, direct, proxy.log.read_text()[-3000:])


def raw_request(path: Path, request: bytes) -> tuple[bytes, dict[bytes, bytes], bytes]:
    """One request on a connection of its own: (status line, header fields lowercased, body)."""
    import socket

    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(10)
        sock.connect(str(path))
        sock.sendall(request)
        out = b""
        while chunk := sock.recv(65536):
            out += chunk
    head, _, body = out.partition(b"\r\n\r\n")
    status, *lines = head.split(b"\r\n")
    fields = {}
    for line in lines:
        name, _, value = line.partition(b":")
        fields[name.strip().lower()] = value.strip()
    return status, fields, body


@pytest.mark.parametrize("request_line", [b"HEAD /_ping", b"GET /_ping", b"GET /v1.45/_ping",
                                          b"HEAD /v1.45/_ping"])
def test_the_proxy_s_remembered_ping_is_the_engine_s_answer(proxy: ProxyDaemon, request_line: bytes) -> None:
    """The ping the proxy answers itself (gatekeeper.proxy.pings) says what the engine says:
    every field and the body, the Date aside (now, in the engine's format). Control: the
    first ping of the pair is the engine's own answer relayed, the direct ping the engine's."""
    from gatekeeper.proxy.pings import http_date

    request = request_line + b" HTTP/1.1\r\nHost: docker\r\nConnection: close\r\n\r\n"
    offset = AUDIT_LOG.stat().st_size
    relayed = raw_request(proxy.socket, request)  # forwarded (or remembered from an earlier test)
    remembered = raw_request(proxy.socket, request)  # under 5 s later: from the proxy's memory
    direct = raw_request(RUN_DIR / "docker.sock", request)
    for answer in (relayed, remembered):
        assert answer[0] == direct[0] and answer[2] == direct[2]
        assert {k: v for k, v in answer[1].items() if k != b"date"} == \
            {k: v for k, v in direct[1].items() if k != b"date"}
        assert len(answer[1][b"date"]) == len(http_date(time.time())) and answer[1][b"date"].endswith(b" GMT")
    assert b"api-version" in remembered[1] and b"ostype" in remembered[1]
    records = [r for r in api_records_since(offset) if str(r["target"]).endswith("/_ping")]
    assert [r["decision"] for r in records] == ["allow", "allow"]  # each ping decided and recorded


def test_inspect_through_the_proxy_is_the_engine_s_object(proxy: ProxyDaemon, stack: Stack) -> None:
    """An inspect answered with the decision's own question (ApiVerdict.answered_by) is the
    object the engine gives the client's request: the same JSON as direct, the caller's own
    container unredacted. Control: the direct inspect."""
    name = f"{PREFIX}inspected"
    stack.docker("rm", "-f", name, check=False)
    created = proxy.docker("create", "--name", name, IMAGE, "true")
    assert created.returncode == 0, created.stderr
    try:
        through = proxy.docker("inspect", name)
        assert through.returncode == 0, through.stderr
        direct = stack.docker("inspect", name)
        assert json.loads(through.stdout) == json.loads(direct.stdout)
    finally:
        stack.docker("rm", "-f", name, check=False)
