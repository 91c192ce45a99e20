"""`compose run --env-from-file F` gets the file gatekeeper checked (session 9).

gatekeeper checked F's path (the host-path rule), then compose (a CLI plugin, as the agent's
account) opened F again when it ran. A container of the agent's with the project bound swaps
F for a symlink to a file outside the agent's area that its account can read, and compose
carried that file into the new container's environment: a read of a host file outside the
area. Now F is read once without following symlinks and compose gets a copy of those bytes in
gatekeeper's state directory, which no container reaches.

Layouts (a: CLI layer + proxy) and (c: CLI layer alone): the proxy cannot tell where an
environment came from, so in (b) nothing stands between compose and the link (the CLI layer's
rule). Control in the same test: the decision without its pin (`gatekeeper check` allows the
command, a container of the agent's swaps F, then compose runs it as typed, reading F again)
shows the outside file's value.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from .stack import (
    AGENT,
    AGENT_HOME,
    CLI_ALONE,
    IMAGE,
    LAYERED,
    Stack,
    allowed_then_swapped,
    docker_client,
    root_docker_env,
    until_one,
    write_file,
)

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.parametrize("stack", (LAYERED, CLI_ALONE), indirect=True, scope="module"),
]

PROJECT_DIR = AGENT_HOME / "work" / "ai-pin9e"
OUTSIDE = Path("/tmp/gk-pin9e-outside.env")  # outside the area, readable by the agent's account
SECRET = "gk-pin9e-secret"
PROJECT = "ai-pin9e"
SWAPPER = "ai-pin9e-swapper"
ATTEMPTS, MOST_ATTEMPTS = 8, 30
TO_THE_LINK = f"ln -s {OUTSIDE} /w/.b && mv /w/.b /w/app.env"


@pytest.fixture
def project(stack: Stack) -> Iterator[Path]:
    write_file(OUTSIDE, f"LEAKED={SECRET}\n", mode=0o644)
    PROJECT_DIR.mkdir(parents=True, exist_ok=True)
    shutil.chown(PROJECT_DIR, AGENT, AGENT)
    for path, text in ((PROJECT_DIR / "plain.env", "LEAKED=nothing\n"),
                       (PROJECT_DIR / "app.env", "LEAKED=nothing\n"),
                       (PROJECT_DIR / "compose.yaml",
                        f"name: {PROJECT}\nservices:\n  app:\n    image: {IMAGE}\n    command: [env]\n")):
        write_file(path, text, mode=0o644, owner=AGENT, group=AGENT)
    yield PROJECT_DIR
    stack.remove_named(PROJECT)
    shutil.rmtree(PROJECT_DIR, ignore_errors=True)
    OUTSIDE.unlink(missing_ok=True)


def swap_loop() -> str:
    """The agent's container: app.env is a plain file, then a link to the outside file, again,
    each for 0.1-0.9 s at random (a state must last for a check to pass in it; a fixed period
    could phase-lock with the check-then-run delay and hide the race)."""
    hold = "sleep 0.$((RANDOM % 9 + 1))"
    return f"while :; do cp /w/plain.env /w/.a && mv /w/.a /w/app.env; {hold}; {TO_THE_LINK}; {hold}; done"


def run_command(compose: Path) -> str:
    return f"docker compose -f {compose} run --rm --env-from-file {compose.parent}/app.env app"


def unpinned_run_took_the_link(stack: Stack, compose: Path) -> str:
    """The decision without its pin: `gatekeeper check` allows the command (it checked the plain
    file), the agent's container swaps app.env for the link, then compose runs the command as
    typed and opens app.env again. Returns what the container printed."""
    command = run_command(compose)
    allowed_then_swapped(stack, command, compose.parent, TO_THE_LINK)
    ran = subprocess.run([str(docker_client()), *command.split()[1:]], env=root_docker_env(),
                         capture_output=True, text=True, timeout=120, check=False)
    return ran.stdout + ran.stderr


def test_an_env_file_swapped_for_a_link_after_the_check_is_not_read(stack: Stack, project: Path) -> None:
    compose = project / "compose.yaml"
    shown = unpinned_run_took_the_link(stack, compose)
    assert SECRET in shown, shown  # control: the defence off
    stack.docker("network", "rm", f"{PROJECT}_default", check=False)  # root's, not the agent's
    started = stack.ssh(f"docker run -d --name {SWAPPER} -v {project}:/w {IMAGE} sh -c '{swap_loop()}'")
    assert started.returncode == 0, started.stderr
    said = []

    def pinned_run() -> bool:
        result = stack.ssh(run_command(compose), timeout=120)
        assert SECRET.encode() not in result.stdout + result.stderr
        said.append(result.stdout[-300:] + result.stderr[-300:])
        return b"LEAKED=nothing" in result.stdout

    try:
        ran = until_one(pinned_run, least=ATTEMPTS, most=MOST_ATTEMPTS)
        assert ran, said  # the pinned copy runs (a check met the plain file)
    finally:
        stack.docker("rm", "-f", SWAPPER, check=False)
