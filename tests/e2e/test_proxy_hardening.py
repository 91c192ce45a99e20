"""The proxy against a caller that has only its socket (layout (b)), with the real docker
CLI and engine: what the API layer enforces that used to be the CLI layer's alone.

- a build's FROM outside [images] allowed, read from the spooled context (control: the
  same build without a list is built; refused: no image made);
- [budgets] containers_per_hour counted by the proxy (control: no budget, all created);
- a build context while the caller's spool is full (control: no cap, built);
- two creates with nested binds at the same instant (the disjoint-bind invariant checked on
  a state the other create changes): control, the proxy with its per-profile lock switched
  off (a test-only launch), both are created; with it, never both.

Each runs `gatekeeper proxy` from the installed venv on a private socket with its own policy
([proxy.users] root = "default": the test's uid is the caller).

Not three ways (tests/e2e/conftest.py THREE_WAY): the proxy alone is the subject by
construction, on a private socket with root as its caller; the stack's layouts do not apply.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import os
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .proxy_daemon import ProxyDaemon, proxy_policy
from .stack import IMAGE, RUN_DIR, VENV, Stack, extended

pytestmark = pytest.mark.e2e

PREFIX = "ai-e2e-proxyhard-"  # the [names] prefix: each request meets its own rule


UNSERIALISED = ("import sys, gatekeeper.proxy.guards as guards; guards.SERIALISED = frozenset(); "
                "from gatekeeper.operator.proxy_cmd import main; sys.exit(main(sys.argv[1:]))")


@contextlib.contextmanager
def proxy_with(extra: str, proxy_keys: str = "", serialised: bool = True) -> Iterator[ProxyDaemon]:
    directory = Path(tempfile.mkdtemp(prefix="proxyhard-", dir=RUN_DIR))
    policy = directory / "policy.toml"
    text = proxy_policy(directory)
    if proxy_keys:
        text = text.replace("[proxy.users]", proxy_keys + "\n[proxy.users]")
    policy.write_text(extended(text, extra))
    with (directory / "proxy.log").open("wb") as log:
        how = ["-m", "gatekeeper", "proxy"] if serialised else ["-c", UNSERIALISED]
        process = subprocess.Popen([str(VENV / "bin" / "python3"), "-I", *how, "--policy", str(policy)],
                                   stdout=log, stderr=log)
        daemon = ProxyDaemon(directory, process)
        try:
            deadline = time.monotonic() + 20
            while not daemon.socket.exists():
                assert process.poll() is None and time.monotonic() < deadline, daemon.log.read_text()
                time.sleep(0.1)
            yield daemon
        finally:
            process.terminate()
            process.wait(10)


def refused(result: subprocess.CompletedProcess[str], rule: str) -> None:
    assert result.returncode != 0, result.stdout
    assert f"(rule {rule})" in result.stderr, result.stderr


def classic(daemon: ProxyDaemon, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**daemon.env(), "DOCKER_BUILDKIT": "0"}
    from .stack import docker_client

    return subprocess.run([str(docker_client()), *args], capture_output=True, text=True, env=env,
                          timeout=180, check=False)


@pytest.fixture
def context(tmp_path: Path) -> Path:
    (tmp_path / "Dockerfile").write_text(f"FROM {IMAGE}\nRUN echo built > /built\n")
    return tmp_path


def image_exists(stack: Stack, tag: str) -> bool:
    return stack.docker("image", "inspect", tag, check=False).returncode == 0


def test_build_from_outside_the_image_list_is_refused(stack: Stack, context: Path) -> None:
    tag = f"{PREFIX}from:1"
    stack.docker("rmi", "-f", tag, check=False)
    with proxy_with("") as daemon:  # control: no [images] list, the build runs
        made = classic(daemon, "build", "-t", tag, str(context))
        assert made.returncode == 0, made.stderr
    assert image_exists(stack, tag)
    stack.docker("rmi", "-f", tag)
    with proxy_with('\n[images]\nallowed = ["registry.example.com/team/**"]\n') as daemon:
        refused(classic(daemon, "build", "-t", tag, str(context)), "image-source")
    assert not image_exists(stack, tag)


def test_containers_per_hour_is_counted_by_the_proxy(stack: Stack) -> None:
    names = [f"{PREFIX}budget{i}" for i in range(3)]
    try:
        with proxy_with("\n[budgets]\ncontainers_per_hour = 0\n") as daemon:  # control
            for name in names:
                made = daemon.docker("create", "--name", name, IMAGE, "true")
                assert made.returncode == 0, made.stderr
        for name in names:
            stack.docker("rm", "-f", name)
        with proxy_with("\n[budgets]\ncontainers_per_hour = 2\n") as daemon:
            for name in names[:2]:
                made = daemon.docker("create", "--name", name, IMAGE, "true")
                assert made.returncode == 0, made.stderr
            refused(daemon.docker("create", "--name", names[2], IMAGE, "true"), "budget-containers")
        assert stack.docker("inspect", names[2], check=False).returncode != 0
    finally:
        for name in names:
            stack.docker("rm", "-f", name, check=False)


def hold_a_build(daemon: ProxyDaemon, size: int) -> socket.socket:
    """A build whose context is `size` bytes sent and not finished (a caller holding spool)."""
    sock = socket.socket(socket.AF_UNIX)
    sock.connect(str(daemon.socket))
    sock.sendall(b"POST /v1.41/build HTTP/1.1\r\nHost: docker\r\nTransfer-Encoding: chunked\r\n\r\n")
    sock.sendall(f"{size:x}\r\n".encode() + os.urandom(size) + b"\r\n")
    return sock


@pytest.mark.parametrize("capped", [False, True])
def test_a_full_spool_refuses_the_next_build(stack: Stack, context: Path, capped: bool) -> None:
    tag = f"{PREFIX}spool:1"
    stack.docker("rmi", "-f", tag, check=False)
    cap = "max_spool_per_user = 3000000" if capped else "max_spool_per_user = 0"
    with proxy_with("", cap) as daemon:
        holder = hold_a_build(daemon, 2_500_000)
        try:
            time.sleep(1)  # the proxy has spooled it
            (context / "padding").write_bytes(os.urandom(1_000_000))
            built = classic(daemon, "build", "-t", tag, str(context))
        finally:
            holder.close()
    if capped:
        refused(built, "api-spool")
        assert not image_exists(stack, tag)
    else:
        assert built.returncode == 0, built.stderr
        assert image_exists(stack, tag)
        stack.docker("rmi", "-f", tag)


def create_raw(daemon: ProxyDaemon, name: str, bind: str, start: threading.Barrier) -> int:
    """POST /containers/create straight on the proxy's socket (no CLI start-up jitter)."""
    body = json.dumps({"Image": IMAGE, "Cmd": ["true"], "HostConfig": {"Binds": [bind]}}).encode()
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(60)
        sock.connect(str(daemon.socket))
        start.wait()
        sock.sendall(f"POST /v1.41/containers/create?name={name} HTTP/1.1\r\nHost: docker\r\n"
                     f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
                     "Connection: close\r\n\r\n".encode() + body)
        answer = b""
        while data := sock.recv(65536):
            answer += data
    return int(answer.split(b" ", 2)[1])


def race(stack: Stack, daemon: ProxyDaemon, home: Path, trials: int) -> list[list[int]]:
    """Pairs of creates, one binding race/N, the other race/N/sub, sent at the same instant."""
    outcomes = []
    for trial in range(trials):
        outer = home / "race" / str(trial)
        (outer / "sub").mkdir(parents=True)
        start = threading.Barrier(2)
        names = [f"{PREFIX}race{trial}a", f"{PREFIX}race{trial}b"]
        binds = [f"{outer}:/a", f"{outer}/sub:/b"]
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            futures = [pool.submit(create_raw, daemon, name, bind, start)
                       for name, bind in zip(names, binds, strict=True)]
            statuses = [future.result() for future in futures]
        outcomes.append(sorted(statuses))
        for name in names:
            stack.docker("rm", "-f", name, check=False)
    return outcomes


def test_nested_binds_created_at_once_are_serialised(stack: Stack, restored_home: Path) -> None:
    with proxy_with("", serialised=False) as daemon:  # control: the lock switched off
        control = race(stack, daemon, restored_home / "control", 8)
    assert [201, 201] in control, control  # both created: the invariant checked on a stale state
    with proxy_with("") as daemon:
        defended = race(stack, daemon, restored_home / "defended", 8)
    assert all(pair == [201, 403] for pair in defended), defended
