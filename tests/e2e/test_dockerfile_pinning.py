"""The Dockerfile checked is the Dockerfile built: red team, session 8.

Every check on a Dockerfile (ADD <url>: the engine fetches it on the host's network, rule
build-add-url; FROM and its ONBUILD steps; LABEL keys; [images]) is worth what the builder
then reads. Two ways the CLI layer's reading and the build's parted, both in layout (c)
(behind the proxy, (a) and (b), the proxy reads the context the engine unpacks):

1. compose `build.dockerfile_inline`: gatekeeper checked the inline text, but every build
   takes the classic builder (DOCKER_BUILDKIT=0, execution.child_environment), and compose's
   classic builder ignores dockerfile_inline: it builds `<context>/Dockerfile`, never read.
2. `docker build DIR` (or `-f FILE`): gatekeeper read the Dockerfile, then docker's CLI read it
   again to send it. A container of the agent's with the directory bound swaps the file in
   that window (the agent's own moves, no shell needed).

Each layout (a: CLI layer + proxy, b: proxy alone, c: CLI layer alone). Controls in the same
test: root's build of the very same files on the bare engine fetches the loopback secret
(the defence off), and for the race, the decision without its pin (`gatekeeper check`, then
docker run as the agent on the checked argv) builds the swapped file.
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
    PROXY_ALONE,
    Stack,
    allowed_then_swapped,
    audit_offset,
    docker_client,
    root_docker_env,
    serving_on_loopback,
    write_file,
)
from .test_attack_chains import assert_refused

pytestmark = pytest.mark.e2e

PROJECT_DIR = AGENT_HOME / "work" / "ai-rt8-pin"
SECRET = "gk-rt8-pin-secret"
INLINE_PROJECT = "ai-rt8-inline"


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    with serving_on_loopback(f"{SECRET}\n") as served:
        yield served


@pytest.fixture
def project(stack: Stack) -> Iterator[Path]:
    PROJECT_DIR.mkdir(parents=True, exist_ok=True)
    shutil.chown(PROJECT_DIR, AGENT, AGENT)
    yield PROJECT_DIR
    stack.remove_named("ai-rt8-")
    images = stack.docker("images", "-q", "--filter", "reference=ai-rt8-*").stdout.split()
    if images:
        stack.docker("rmi", "-f", *dict.fromkeys(images), check=False)
    shutil.rmtree(PROJECT_DIR, ignore_errors=True)


def holds_secret(stack: Stack, image: str) -> bool:
    shown = stack.docker("run", "--rm", image, "cat", "/secret", check=False)
    return SECRET in shown.stdout


def image_exists(stack: Stack, image: str) -> bool:
    return bool(stack.docker("images", "-q", image).stdout.strip())


def test_compose_dockerfile_inline_is_not_what_the_classic_builder_builds(
        stack: Stack, url: str, project: Path) -> None:
    """The inline text is harmless; the context's Dockerfile fetches the loopback secret."""
    write_file(project / "Dockerfile", f"FROM {IMAGE}\nADD {url} /secret\n", mode=0o644, owner=AGENT,
               group=AGENT)
    compose = project / "inline.yaml"
    text = (f"name: {INLINE_PROJECT}\nservices:\n  app:\n    image: {INLINE_PROJECT}-app\n"
            f"    build:\n      context: .\n      dockerfile_inline: |\n        FROM {IMAGE}\n")
    write_file(compose, text, mode=0o644, owner=AGENT, group=AGENT)
    image = f"{INLINE_PROJECT}-app"
    # control: the defence off (root's compose build with the classic builder, as gatekeeper runs it)
    env = {**root_docker_env(), "DOCKER_BUILDKIT": "0", "COMPOSE_BAKE": "false"}
    built = subprocess.run([str(docker_client()), "compose", "-f", str(compose), "build"], env=env,
                           capture_output=True, text=True, timeout=240, check=False)
    assert built.returncode == 0, built.stderr
    assert holds_secret(stack, image)  # the context's Dockerfile was built, not the inline text
    stack.docker("rmi", "-f", image, check=False)
    since = audit_offset()
    result = stack.ssh(f"docker compose -f {compose} build", timeout=240)
    rule = "build-add-url" if stack.mode == PROXY_ALONE else "compose-dockerfile_inline"
    assert_refused(stack, result, since, rule=rule)  # (b): the proxy reads the context's Dockerfile
    assert not image_exists(stack, image)
    assert SECRET.encode() not in result.stdout + result.stderr


RACE_TAG = "ai-rt8-race:1"
SWAPPER = "ai-rt8-swapper"
ATTEMPTS = 12
TO_THE_BAD_ONE = "cp /w/bad /w/ctx/.b && mv /w/ctx/.b /w/ctx/Dockerfile"


def swap_loop() -> str:
    """The agent's container: the context's Dockerfile is the harmless one, then the other, again."""
    return f"while :; do cp /w/good /w/ctx/.a && mv /w/ctx/.a /w/ctx/Dockerfile; {TO_THE_BAD_ONE}; done"


def race_project(project: Path, url: str) -> Path:
    context = project / "ctx"
    context.mkdir()
    shutil.chown(context, AGENT, AGENT)
    write_file(project / "good", f"FROM {IMAGE}\n", mode=0o644, owner=AGENT, group=AGENT)
    write_file(project / "bad", f"FROM {IMAGE}\nADD {url} /secret\n", mode=0o644, owner=AGENT, group=AGENT)
    write_file(context / "Dockerfile", f"FROM {IMAGE}\n", mode=0o644, owner=AGENT, group=AGENT)
    return context


def unpinned_build_took_the_swap(stack: Stack, context: Path) -> bool:
    """The decision without its pin: `gatekeeper check` allows the build (it read the harmless
    file; --offline: root is no [proxy.users] user), the agent's container swaps the Dockerfile,
    then docker builds the argv as the agent typed it, reading the Dockerfile again."""
    allowed_then_swapped(stack, f"docker build -q -t {RACE_TAG} {context}", context.parent, TO_THE_BAD_ONE)
    stack.docker("build", "-q", "-t", RACE_TAG, str(context), check=False)
    return image_exists(stack, RACE_TAG) and holds_secret(stack, RACE_TAG)


def test_a_dockerfile_swapped_after_the_check_is_not_built(stack: Stack, url: str, project: Path) -> None:
    context = race_project(project, url)
    assert unpinned_build_took_the_swap(stack, context)  # control: the defence off
    stack.docker("rmi", "-f", RACE_TAG, check=False)
    started = stack.ssh(f"docker run -d --name {SWAPPER} -v {project}:/w {IMAGE} sh -c '{swap_loop()}'")
    assert started.returncode == 0, started.stderr
    try:
        for _ in range(ATTEMPTS):
            result = stack.ssh(f"docker build -q -t {RACE_TAG} {context}", timeout=120)
            assert SECRET.encode() not in result.stdout + result.stderr
            if image_exists(stack, RACE_TAG):
                assert not holds_secret(stack, RACE_TAG)  # built: the harmless file it checked
                stack.docker("rmi", "-f", RACE_TAG, check=False)
    finally:
        stack.docker("rm", "-f", SWAPPER, check=False)
