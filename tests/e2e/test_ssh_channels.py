"""Every SSH channel other than one gatekeeper-run command is refused by sshd itself.

`ssh -N -L ...` and friends open no session, so no ForceCommand ever runs for
them: only the snippet's settings stand between the agent and the docker socket
or the host's network. Each test opens one such channel with the real client
and checks, on the far side, that nothing came through.

Not three ways (tests/e2e/conftest.py THREE_WAY): sshd refuses these channels before any
ForceCommand runs; the layouts differ only in that command and in the socket docker uses, so
none changes this.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path

import pytest

from .stack import AGENT, AGENT_HOME, DOCKER_SOCKET, Stack, background, free_port, read_lines

pytestmark = pytest.mark.e2e

TARGET = f"{AGENT}@127.0.0.1"


def connect_when_listening(address: tuple[str, int] | str, timeout: float = 10.0) -> socket.socket:
    """Connect to the client's local end of a forward once ssh has bound it."""
    family = socket.AF_UNIX if isinstance(address, str) else socket.AF_INET
    deadline = time.monotonic() + timeout
    while True:
        conn = socket.socket(family, socket.SOCK_STREAM)
        conn.settimeout(5)
        try:
            conn.connect(address)
            return conn
        except OSError:
            conn.close()
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def received(conn: socket.socket, request: bytes = b"") -> bytes:
    """What the far end sends back; a refused channel gives nothing or a reset."""
    with conn:
        try:
            if request:
                conn.sendall(request)
            return conn.recv(4096)
        except OSError:
            return b""


def test_sftp_is_refused(stack: Stack) -> None:
    """The sftp subsystem would read and write the agent's files (and ~/.ssh) directly."""
    argv = ["sftp", *stack.client_options(), "-P", str(stack.forcecommand_port), "-b", "-", TARGET]
    result = subprocess.run(argv, input=b"ls /\n", capture_output=True, timeout=60, check=False)
    assert result.returncode != 0
    assert b"etc" not in result.stdout


@pytest.mark.parametrize("protocol", [[], ["-O"]], ids=["sftp-protocol", "legacy-scp"])
def test_scp_upload_is_refused(
    stack: Stack, restored_home: Path, tmp_path: Path, protocol: list[str]
) -> None:
    """scp upload would plant files (~/.ssh/rc, ~/.pam_environment) without any docker command."""
    source = tmp_path / "payload"
    source.write_text("planted\n")
    argv = ["scp", *protocol, *stack.client_options(), "-P", str(stack.forcecommand_port)]
    result = subprocess.run(
        [*argv, str(source), f"{TARGET}:{restored_home}/planted"],
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert not (restored_home / "planted").exists()


@pytest.mark.parametrize("protocol", [[], ["-O"]], ids=["sftp-protocol", "legacy-scp"])
def test_scp_download_is_refused(stack: Stack, tmp_path: Path, protocol: list[str]) -> None:
    """scp download would read host files the agent account can read."""
    target = tmp_path / "copy"
    argv = ["scp", *protocol, *stack.client_options(), "-P", str(stack.forcecommand_port)]
    result = subprocess.run(
        [*argv, f"{TARGET}:/etc/passwd", str(target)], capture_output=True, timeout=60, check=False
    )
    assert result.returncode != 0
    assert not target.exists() or target.read_bytes() == b""


def test_local_tcp_forward_is_refused(stack: Stack) -> None:
    """-L would reach any TCP service on the host (here: sshd itself, to show the banner would come back)."""
    port = free_port()
    forward = f"127.0.0.1:{port}:127.0.0.1:{stack.forcecommand_port}"
    with background(stack.ssh_argv(None, options=("-N", "-L", forward)), stderr=subprocess.DEVNULL):
        assert not received(connect_when_listening(("127.0.0.1", port))).startswith(b"SSH-")


def test_dynamic_socks_forward_is_refused(stack: Stack) -> None:
    """-D turns sshd into a SOCKS proxy onto the host's network."""
    port = free_port()
    with background(
        stack.ssh_argv(None, options=("-N", "-D", f"127.0.0.1:{port}")), stderr=subprocess.DEVNULL
    ):
        conn = connect_when_listening(("127.0.0.1", port))
        conn.sendall(b"\x05\x01\x00")  # SOCKS5, one method: no authentication
        assert conn.recv(2) == b"\x05\x00"  # the local ssh client answers this part
        request = (
            b"\x05\x01\x00\x01" + socket.inet_aton("127.0.0.1") + stack.forcecommand_port.to_bytes(2, "big")
        )
        reply = received(conn, request)
        assert not reply.startswith(b"\x05\x00"), "SOCKS CONNECT succeeded"


def test_stdio_forward_is_refused(stack: Stack) -> None:
    """-W (ProxyJump's building block) pipes stdin/stdout to a host port."""
    argv = stack.ssh_argv(None, options=("-W", f"127.0.0.1:{stack.forcecommand_port}"))
    result = subprocess.run(argv, capture_output=True, timeout=60, check=False)
    assert result.returncode == 255
    assert not result.stdout.startswith(b"SSH-")


def test_remote_tcp_forward_is_refused(stack: Stack) -> None:
    """-R would open a listening port on the host for anyone who can reach it."""
    port = free_port()
    options = ("-N", "-o", "ExitOnForwardFailure=yes", "-R", f"127.0.0.1:{port}:127.0.0.1:22")
    result = subprocess.run(
        stack.ssh_argv(None, options=options), capture_output=True, timeout=60, check=False
    )
    assert result.returncode == 255
    assert b"remote port forwarding failed" in result.stderr
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()


def test_docker_socket_forward_is_refused(stack: Stack, tmp_path: Path) -> None:
    """`ssh -N -L local.sock:/var/run/docker.sock` is the whole engine API, no gatekeeper involved.

    The test forwards to the stack's real engine socket and asks it for /_ping.
    """
    local = tmp_path / "local.sock"
    options = ("-N", "-L", f"{local}:{DOCKER_SOCKET}")
    with background(stack.ssh_argv(None, options=options), stderr=subprocess.DEVNULL):
        reply = received(connect_when_listening(str(local)), b"GET /_ping HTTP/1.0\r\n\r\n")
    assert b"OK" not in reply and b"HTTP/" not in reply, reply


def test_remote_socket_forward_is_refused(stack: Stack, restored_home: Path) -> None:
    """-R to a unix socket path would create a socket in the agent's home served by the client."""
    path = restored_home / "remote.sock"
    options = ("-N", "-o", "ExitOnForwardFailure=yes", "-R", f"{path}:127.0.0.1:22")
    result = subprocess.run(
        stack.ssh_argv(None, options=options), capture_output=True, timeout=60, check=False
    )
    assert result.returncode == 255
    assert not path.exists()


def test_pty_is_refused(stack: Stack) -> None:
    """A terminal is the first step to an interactive shell and to terminal-escape tricks."""
    result = stack.ssh("docker ps", options=("-o", "LogLevel=INFO", "-tt"))
    assert b"PTY allocation request failed" in result.stderr


def test_x11_forwarding_is_refused(stack: Stack) -> None:
    """-X would let programs on the host talk to the agent's X server and vice versa."""
    env = {"PATH": "/usr/bin:/bin", "DISPLAY": ":0"}
    result = stack.ssh("docker ps", options=("-o", "LogLevel=INFO", "-X"), env=env)
    assert b"X11 forwarding request failed" in result.stderr


def test_agent_forwarding_is_refused(stack: Stack, ticker: str, tmp_path: Path) -> None:
    """-A would hand the session a socket that signs with the operator's keys.

    The client gets no reply for this request, so look on the host: while a
    session runs, sshd would have created /tmp/ssh-*/agent.* for the agent.
    """
    agent_socket = tmp_path / "agent.sock"
    with background(["ssh-agent", "-D", "-a", str(agent_socket)], stdout=subprocess.DEVNULL):
        connect_when_listening(str(agent_socket)).close()
        env = {"PATH": "/usr/bin:/bin", "SSH_AUTH_SOCK": str(agent_socket)}
        argv = stack.ssh_argv(f"docker logs -f {ticker}", options=("-A",))
        with background(argv, env=env, stdout=subprocess.PIPE) as session:
            assert session.stdout is not None
            assert read_lines(session.stdout, count=1, timeout=15), "session did not start"
            assert forwarded_agent_sockets() == []


def forwarded_agent_sockets() -> list[Path]:
    uid = os.stat(AGENT_HOME).st_uid
    return [path for path in Path("/tmp").glob("ssh-*/agent.*") if path.stat().st_uid == uid]
