"""The Dockerfile compose builds is the Dockerfile gatekeeper checked (session 9).

gatekeeper reads a compose service's Dockerfile and checks it (ADD <url>: the engine fetches
it on the host's network, rule build-add-url; FROM and its ONBUILD steps; LABEL keys;
[images]); compose's classic builder then read `<context>/Dockerfile` again when it built. A
container of the agent's with the project bound swaps the file in that window (the agent's own
moves, no shell needed), and in layout (c) (the CLI layer alone) nothing else reads it: the
image held what the check never saw. Now the vetted model's build.dockerfile names a copy of
the checked bytes in gatekeeper's state directory, which no container reaches.

Each layout (a: CLI layer + proxy, b: proxy alone, c: CLI layer alone). Control in the same
test: the decision without its pin (`gatekeeper check` allows the project, a container of the
agent's swaps the Dockerfile, then compose builds the file as the agent wrote it, reading the
Dockerfile again) builds the swapped file.
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
    IMAGE,
    MODES,
    Stack,
    allowed_then_swapped,
    docker_client,
    root_docker_env,
    serving_on_loopback,
    until_one,
    write_file,
)

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.parametrize("stack", MODES, indirect=True, scope="module"),
]

PROJECT_DIR = AGENT_HOME / "work" / "ai-pin9"
SECRET = "gk-pin9-secret"
PROJECT = "ai-pin9"
BUILT = f"{PROJECT}-app"
SWAPPER = "ai-pin9-swapper"
ATTEMPTS, MOST_ATTEMPTS = 8, 30
TO_THE_BAD_ONE = "cp /w/bad /w/ctx/.b && mv /w/ctx/.b /w/ctx/Dockerfile"
BUILD_TIMEOUT = 240


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    with serving_on_loopback(f"{SECRET}\n") as served:
        yield served


@pytest.fixture
def project(stack: Stack, url: str) -> Iterator[Path]:
    PROJECT_DIR.mkdir(parents=True, exist_ok=True)
    shutil.chown(PROJECT_DIR, AGENT, AGENT)
    context = PROJECT_DIR / "ctx"
    context.mkdir()
    shutil.chown(context, AGENT, AGENT)
    for path, text in ((PROJECT_DIR / "good", f"FROM {IMAGE}\n"),
                       (PROJECT_DIR / "bad", f"FROM {IMAGE}\nADD {url} /secret\n"),
                       (context / "Dockerfile", f"FROM {IMAGE}\n"),
                       (PROJECT_DIR / "compose.yaml",
                        f"name: {PROJECT}\nservices:\n  app:\n    image: {BUILT}\n    build:\n"
                        "      context: ./ctx\n")):
        write_file(path, text, mode=0o644, owner=AGENT, group=AGENT)
    yield PROJECT_DIR
    stack.remove_named("ai-pin9")
    stack.docker("rmi", "-f", BUILT, check=False)
    shutil.rmtree(PROJECT_DIR, ignore_errors=True)


def swap_loop() -> str:
    """The agent's container: the context's Dockerfile is the harmless one, then the other, again."""
    return f"while :; do cp /w/good /w/ctx/.a && mv /w/ctx/.a /w/ctx/Dockerfile; {TO_THE_BAD_ONE}; done"


def holds_secret(stack: Stack) -> bool:
    shown = stack.docker("run", "--rm", BUILT, "cat", "/secret", check=False)
    return SECRET in shown.stdout


def image_exists(stack: Stack) -> bool:
    return bool(stack.docker("images", "-q", BUILT).stdout.strip())


def unpinned_build_took_the_swap(stack: Stack, compose: Path) -> bool:
    """The decision without its pin: `gatekeeper check` allows the build (it read the harmless
    file; --offline: root is no [proxy.users] user), the agent's container swaps the Dockerfile,
    then compose builds the project as written, with the classic builder as gatekeeper runs it,
    reading the Dockerfile again."""
    allowed_then_swapped(stack, f"docker compose -f {compose} build", compose.parent, TO_THE_BAD_ONE)
    env = {**root_docker_env(), "DOCKER_BUILDKIT": "0", "COMPOSE_BAKE": "false"}
    subprocess.run([str(docker_client()), "compose", "-f", str(compose), "build"], env=env,
                   capture_output=True, timeout=BUILD_TIMEOUT, check=False)
    return image_exists(stack) and holds_secret(stack)


def test_a_compose_dockerfile_swapped_after_the_check_is_not_built(stack: Stack, project: Path) -> None:
    compose = project / "compose.yaml"
    assert unpinned_build_took_the_swap(stack, compose)  # control: the defence off
    stack.docker("rmi", "-f", BUILT, check=False)
    started = stack.ssh(f"docker run -d --name {SWAPPER} -v {project}:/w {IMAGE} sh -c '{swap_loop()}'")
    assert started.returncode == 0, started.stderr

    def pinned_build() -> bool:
        result = stack.ssh(f"docker compose -f {compose} build", timeout=BUILD_TIMEOUT)
        assert SECRET.encode() not in result.stdout + result.stderr
        if not image_exists(stack):
            return False
        assert not holds_secret(stack)  # built: the harmless file it checked
        stack.docker("rmi", "-f", BUILT, check=False)
        return True

    try:
        assert until_one(pinned_build, least=ATTEMPTS, most=MOST_ATTEMPTS)  # the pinned copy builds
    finally:
        stack.docker("rm", "-f", SWAPPER, check=False)
