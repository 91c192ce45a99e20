"""What compose reads while rendering is the bytes gatekeeper checked (session 10).

gatekeeper rendered a compose project (as the agent's account) after checking the paths of
the files the render reads: `env_file`, `include` (and label_file, --env-file, extends, an
include's .env). compose opened them again, in two renders. A container of the agent's with the
project bound swaps such a file for a symlink to a file outside the agent's area that its account
can read, and the render carried that file's contents into the model: a container's environment
held a secret from outside the area. Now every file a render reads is read once without
following symlinks and staged in gatekeeper's state directory, which no container reaches; the
renders read only the stage (gatekeeper.vetting.compose_render).

Layouts (a: CLI layer + proxy) and (c: CLI layer alone): the proxy cannot tell where an
environment came from, so in (b) nothing stands between compose and the link (the CLI layer's
rule). Control in the same test: the decision without its stage (`gatekeeper check` allows the
project, a container of the agent's swaps the file, then compose runs it as typed, reading the
file again) shows the outside file's value.
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

PROJECT_DIR = AGENT_HOME / "work" / "ai-pin10r"
SECRET = "gk-pin10r-secret"
PROJECT = "ai-pin10r"
SWAPPER = "ai-pin10r-swapper"
ATTEMPTS, MOST_ATTEMPTS = 8, 30

SERVICE = f"  app:\n    image: {IMAGE}\n    command: [env]\n"
# kind -> (compose.yaml, the file swapped, its plain text, the outside file's text)
KINDS = {
    "env_file": (f"name: {PROJECT}\nservices:\n{SERVICE}    env_file: app.env\n", "app.env",
                 "LEAKED=nothing\n", f"LEAKED={SECRET}\n"),
    "include": (f"name: {PROJECT}\ninclude: [inc.yaml]\n", "inc.yaml",
                f"services:\n{SERVICE}    environment: {{LEAKED: nothing}}\n",
                f"services:\n{SERVICE}    environment: {{LEAKED: {SECRET}}}\n"),
}


def outside_file(kind: str) -> Path:
    """Outside the area, readable by the agent's account."""
    return Path(f"/tmp/gk-pin10r-outside-{kind}")


@pytest.fixture(params=sorted(KINDS))
def kind(request: pytest.FixtureRequest, stack: Stack) -> Iterator[str]:
    compose, swapped, plain, outside = KINDS[request.param]
    write_file(outside_file(request.param), outside, mode=0o644)
    PROJECT_DIR.mkdir(parents=True, exist_ok=True)
    shutil.chown(PROJECT_DIR, AGENT, AGENT)
    for path, text in ((PROJECT_DIR / "plain", plain), (PROJECT_DIR / swapped, plain),
                       (PROJECT_DIR / "compose.yaml", compose)):
        write_file(path, text, mode=0o644, owner=AGENT, group=AGENT)
    yield request.param
    stack.docker("rm", "-f", SWAPPER, check=False)
    stack.remove_named(PROJECT)
    shutil.rmtree(PROJECT_DIR, ignore_errors=True)
    outside_file(request.param).unlink(missing_ok=True)


def to_the_link(kind: str) -> str:
    return f"ln -s {outside_file(kind)} /w/.b && mv /w/.b /w/{KINDS[kind][1]}"


def swap_loop(kind: str) -> str:
    """The agent's container: the file is plain, then a link to the outside file, again, each
    for 10-90 ms at random (the check reads each file once, so a short state still passes it;
    a fixed period could phase-lock with the check-then-render delay and hide the race)."""
    swapped, hold = KINDS[kind][1], "sleep 0.0$((RANDOM % 9 + 1))"
    plain = f"cp /w/plain /w/.a && mv /w/.a /w/{swapped}"
    return f"while :; do {plain}; {hold}; {to_the_link(kind)}; {hold}; done"


def run_command(compose: Path) -> str:
    return f"docker compose -f {compose} run --rm app"


def unstaged_run_took_the_link(stack: Stack, kind: str, compose: Path) -> str:
    """The decision without its stage: `gatekeeper check` allows the project (it read the plain
    file), the agent's container swaps the file for the link, then compose renders and runs the
    project as typed, opening the file again. Returns what the container printed."""
    command = run_command(compose)
    allowed_then_swapped(stack, command, compose.parent, to_the_link(kind))
    ran = subprocess.run([str(docker_client()), *command.split()[1:]], env=root_docker_env(),
                         capture_output=True, text=True, timeout=120, check=False)
    return ran.stdout + ran.stderr


def test_a_render_file_swapped_after_the_check_is_not_read(stack: Stack, kind: str) -> None:
    compose = PROJECT_DIR / "compose.yaml"
    shown = unstaged_run_took_the_link(stack, kind, compose)
    assert SECRET in shown, shown  # control: the defence off, the outside file reached the container
    stack.remove_named(f"{PROJECT}_app")
    stack.docker("network", "rm", f"{PROJECT}_default", check=False)  # root's, not the agent's
    loop = swap_loop(kind)
    started = stack.ssh(f"docker run -d --name {SWAPPER} -v {PROJECT_DIR}:/w {IMAGE} sh -c '{loop}'")
    assert started.returncode == 0, started.stderr
    said = []

    def staged_run() -> bool:
        result = stack.ssh(run_command(compose), timeout=120)
        assert SECRET.encode() not in result.stdout + result.stderr
        said.append(result.stdout[-300:] + result.stderr[-300:])
        return b"LEAKED=nothing" in result.stdout

    ran = until_one(staged_run, least=ATTEMPTS, most=MOST_ATTEMPTS)
    assert ran, said  # the staged copy runs (a check met the plain file)
