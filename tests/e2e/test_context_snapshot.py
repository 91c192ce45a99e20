"""The build context docker sends is the directory gatekeeper checked (session 10, ctxpin).

`docker build DIR` and a compose service's build context: gatekeeper resolved DIR under the
agent's area, then docker's CLI (compose), as the agent's account, resolved DIR again and
walked it. A container of the agent's bound above DIR swaps it for a symlink to a directory
outside the area that the account can read (the agent's own moves, no shell needed): that
directory was sent as the context, and `COPY . /ctx/` put its files in the agent's image. Now
the ForceCommand copies the checked directory (opened without following a symlink, walked by
descriptors) into its state directory and docker reads the copy (gatekeeper.context_snapshot).

Layouts (a: CLI layer + proxy) and (c: CLI layer alone); in (b) the ForceCommand vets nothing
by design and the proxy sees only the archive the CLI sends (client-side reads are the CLI
layer's job, issue 12). Control in the same test: the decision without its snapshot
(`gatekeeper check` allows the build, a container of the agent's swaps the directory, then
docker builds the decided argv, walking the directory again) builds the outside directory's
secret into the image.
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
    pytest.mark.parametrize("stack", [LAYERED, CLI_ALONE], indirect=True, scope="module"),
]

PROJECT_DIR = AGENT_HOME / "work" / "ai-ctxpin"
OUTSIDE = Path("/srv/gk-ctxpin-outside")  # outside the area, readable by the agent's account
SECRET = "gk-ctxpin-secret"
TAG = "ai-ctxpin-built"
COMPOSE_PROJECT = "ai-ctxpin"
COMPOSE_BUILT = f"{COMPOSE_PROJECT}-app"
SWAPPER = "ai-ctxpin-swapper"
ATTEMPTS, MOST_ATTEMPTS = 10, 30
TO_THE_LINK = f"mv /w/ctx /w/hold && ln -s {OUTSIDE} /w/ctx"
BUILD_TIMEOUT = 240
DOCKERFILE = f"FROM {IMAGE}\nCOPY . /ctx/\n"
FIGURES = Path("/tmp/gk-ctxpin-e2e-figures.txt")


@pytest.fixture
def project(stack: Stack) -> Iterator[Path]:
    write_file(OUTSIDE / "secret", f"{SECRET}\n", mode=0o644)
    OUTSIDE.chmod(0o755)
    context = PROJECT_DIR / "ctx"
    context.mkdir(parents=True)
    for directory in (PROJECT_DIR, context):
        shutil.chown(directory, AGENT, AGENT)
    for path, text in ((context / "harmless", "harmless\n"), (context / "Dockerfile", DOCKERFILE),
                       (PROJECT_DIR / "Dockerfile.app", DOCKERFILE),
                       (PROJECT_DIR / "compose.yaml",
                        f"name: {COMPOSE_PROJECT}\nservices:\n  app:\n    image: {COMPOSE_BUILT}\n"
                        f"    build:\n      context: ./ctx\n"
                        f"      dockerfile: {PROJECT_DIR}/Dockerfile.app\n")):
        write_file(path, text, mode=0o644, owner=AGENT, group=AGENT)
    yield PROJECT_DIR
    stack.docker("rm", "-f", SWAPPER, check=False)
    stack.remove_named(COMPOSE_PROJECT)
    stack.docker("rmi", "-f", TAG, COMPOSE_BUILT, check=False)
    shutil.rmtree(PROJECT_DIR, ignore_errors=True)
    shutil.rmtree(OUTSIDE, ignore_errors=True)


def swap_loop() -> str:
    """The agent's container: the context directory moved aside and a symlink to the outside
    directory in its place, then the directory back, again."""
    return f"while :; do {TO_THE_LINK}; rm -f /w/ctx; mv /w/hold /w/ctx; done"


def start_swapper(stack: Stack, project: Path) -> None:
    started = stack.ssh(f"docker run -d --name {SWAPPER} -v {project}:/w {IMAGE} sh -c '{swap_loop()}'")
    assert started.returncode == 0, started.stderr


def holds_secret(stack: Stack, image: str) -> bool:
    shown = stack.docker("run", "--rm", image, "cat", "/ctx/secret", check=False)
    return SECRET in shown.stdout


def image_exists(stack: Stack, image: str) -> bool:
    return bool(stack.docker("images", "-q", image).stdout.strip())


def root_build(args: list[str], stdin: bytes = b"") -> None:
    """docker as gatekeeper runs it (the classic builder), without the snapshot."""
    env = {**root_docker_env(), "DOCKER_BUILDKIT": "0", "COMPOSE_BAKE": "false"}
    subprocess.run([str(docker_client()), *args], input=stdin, env=env, capture_output=True,
                   timeout=BUILD_TIMEOUT, check=False)


def unsnapshotted_build_took_the_swap(stack: Stack, command: str, args: list[str], image: str,
                                      stdin: bytes = b"") -> bool:
    """The decision without its snapshot: allowed (it resolved the real directory), the agent's
    container swaps the directory for the link, then docker builds the decided argv, resolving
    and walking the directory again. The directory is put back after."""
    allowed_then_swapped(stack, command, PROJECT_DIR, TO_THE_LINK)
    try:
        root_build(args, stdin)
        return image_exists(stack, image) and holds_secret(stack, image)
    finally:
        (PROJECT_DIR / "ctx").unlink()
        (PROJECT_DIR / "hold").rename(PROJECT_DIR / "ctx")


def attempts(stack: Stack, command: str, image: str) -> tuple[int, int, int]:
    """The agent's builds while the swapper runs: (built clean, refused as changed, other), on
    past ATTEMPTS until one built or named the swap."""
    counts = {"built": 0, "changed": 0, "other": 0}

    def attempt() -> bool:
        result = stack.ssh(command, timeout=BUILD_TIMEOUT)
        assert SECRET.encode() not in result.stdout + result.stderr
        if image_exists(stack, image):
            assert not holds_secret(stack, image)  # built: the checked directory's snapshot
            counts["built"] += 1
            stack.docker("rmi", "-f", image, check=False)
            return True
        if b"build-context-changed" in result.stderr:
            counts["changed"] += 1
            return True
        counts["other"] += 1  # refused by the check itself (the symlink, or nothing, at its path)
        return False

    until_one(attempt, least=ATTEMPTS, most=MOST_ATTEMPTS)
    return counts["built"], counts["changed"], counts["other"]


def record(stack: Stack, what: str, figures: tuple[int, int, int]) -> None:
    with FIGURES.open("a") as out:
        out.write(f"{stack.mode} {what}: control took the swap; snapshot on: built clean {figures[0]}, "
                  f"refused build-context-changed {figures[1]}, refused otherwise {figures[2]} "
                  f"of {sum(figures)}\n")


def test_a_build_context_swapped_after_the_check_is_not_sent(stack: Stack, project: Path) -> None:
    context = project / "ctx"
    command = f"docker build -q -t {TAG} {context}"
    argv = ["build", "-q", "-t", TAG, "--file=-", str(context)]  # the decided argv, Dockerfile pinned
    assert unsnapshotted_build_took_the_swap(stack, command, argv, TAG, DOCKERFILE.encode())  # control
    stack.docker("rmi", "-f", TAG, check=False)
    start_swapper(stack, project)
    figures = attempts(stack, command, TAG)
    record(stack, "docker build", figures)
    assert figures[0] + figures[1], figures  # the snapshot builds, or names the swap it met


def test_a_compose_build_context_swapped_after_the_check_is_not_sent(stack: Stack, project: Path) -> None:
    compose = project / "compose.yaml"
    command = f"docker compose -f {compose} build"
    assert unsnapshotted_build_took_the_swap(stack, command, ["compose", "-f", str(compose), "build"],
                                             COMPOSE_BUILT)  # control: the defence off
    stack.docker("rmi", "-f", COMPOSE_BUILT, check=False)
    start_swapper(stack, project)
    figures = attempts(stack, command, COMPOSE_BUILT)
    record(stack, "compose build", figures)
    assert figures[0] + figures[1], figures


def test_a_build_without_a_swap_builds_the_context(stack: Stack, project: Path) -> None:
    """No false denial: the snapshot is the directory, .dockerignore applied by docker."""
    context = project / "ctx"
    write_file(context / ".dockerignore", "ignored\n", mode=0o644, owner=AGENT, group=AGENT)
    write_file(context / "ignored", "not sent\n", mode=0o644, owner=AGENT, group=AGENT)
    (context / "link").symlink_to("harmless")
    result = stack.ssh(f"docker build -q -t {TAG} {context}", timeout=BUILD_TIMEOUT)
    assert result.returncode == 0, result.stderr
    shown = stack.docker("run", "--rm", TAG, "sh", "-c", "cat /ctx/harmless /ctx/link; ls -A /ctx").stdout
    assert shown.split() == ["harmless", "harmless", ".dockerignore", "Dockerfile", "harmless", "link"]
    assert not list((AGENT_HOME / ".gatekeeper" / "pinned").glob("ctx-*"))  # removed after docker exited
