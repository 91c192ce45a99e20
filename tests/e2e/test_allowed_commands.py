"""Allowed docker commands work through the real stack: output, exit status and streaming.

The attack this guards against is the quiet one: a confinement so strict or so
buffered that operators loosen it by hand. What the agent gets must be what
docker printed, with docker's own exit status, streamed as it happens.
"""

from __future__ import annotations

import subprocess

import pytest

from .stack import APP_DIR, IMAGE, Stack, read_lines

pytestmark = pytest.mark.e2e


def test_docker_ps_lists_the_engines_containers(stack: Stack, ticker: str) -> None:
    """`docker ps` talks to the engine named in the policy, not to one the client picks."""
    result = stack.ssh("docker ps --format '{{.Names}}'")
    assert result.returncode == 0, result.stderr
    assert ticker in result.stdout.decode().split()


def test_docker_images_shows_the_imported_image(stack: Stack) -> None:
    result = stack.ssh("docker images")
    assert result.returncode == 0, result.stderr
    assert b"gk-busybox" in result.stdout


def test_run_returns_the_containers_output(stack: Stack) -> None:
    """Exactly what docker prints: the container's output and the engine's own warnings, if
    any (on a host with net.ipv4.ip_forward=0 the engine warns on every run; this stack's
    engine leaves ip_forward alone), as root's docker gets them for the same run."""
    direct = stack.docker("run", "--rm", IMAGE, "echo", "hi")
    result = stack.ssh(f"docker run --rm {IMAGE} echo hi")
    assert (result.returncode, result.stdout, result.stderr.decode()) == (0, b"hi\n", direct.stderr)


def test_run_returns_the_containers_exit_status(stack: Stack) -> None:
    """A non-zero status must come back as ours, not as 0 or as a denial."""
    result = stack.ssh(f'docker run --rm {IMAGE} sh -c "exit 3"')
    assert result.returncode == 3, result.stderr


def test_run_passes_stdin_through(stack: Stack) -> None:
    result = stack.ssh(f"docker run --rm -i {IMAGE} cat", stdin=b"from the agent\n")
    assert (result.returncode, result.stdout) == (0, b"from the agent\n"), result.stderr


def test_logs_follow_streams_before_the_command_ends(stack: Stack, ticker: str) -> None:
    """`docker logs -f` must stream: lines arrive while the command is still running."""
    with subprocess.Popen(stack.ssh_argv(f"docker logs -f {ticker}"), stdout=subprocess.PIPE) as client:
        try:
            assert client.stdout is not None
            lines = read_lines(client.stdout, count=3, timeout=15)
            assert len(lines) == 3 and all(line.startswith(b"line ") for line in lines), lines
            assert client.poll() is None, "logs -f ended instead of following"
        finally:
            client.kill()


def test_build_reads_the_dockerfile_from_stdin(stack: Stack) -> None:
    """`docker build -f - DIR`: `-` is the Dockerfile on docker's stdin (the grammar's
    path-or-stdin check passes it as typed), not a host file named '-'."""
    tag = "ai-stdin-dockerfile"  # the [names] prefix
    dockerfile = f"FROM {IMAGE}\nRUN echo from-stdin > /note\n".encode()
    try:
        build = stack.ssh(f"docker build -q -t {tag} -f - {APP_DIR}", stdin=dockerfile, timeout=120)
        assert build.returncode == 0, build.stderr
        run = stack.ssh(f"docker run --rm {tag} cat /note")
        assert (run.returncode, run.stdout) == (0, b"from-stdin\n"), run.stderr
    finally:
        stack.docker("rmi", "-f", tag, check=False)
