"""A build context archive hiding its Dockerfile: red team, session 6.

Both layers check the Dockerfile of a build before the engine reads it (ADD <url> is fetched by
the engine on the host's network: rule build-add-url; FROM, ONBUILD, [images]). When the agent
sends the context itself as an archive (`docker build - < ctx.tar`; in layout (b) any client on
the proxy's socket), the check must read the Dockerfile the ENGINE builds. The engine reads the
tar with Go's archive/tar and unpacks it member by member: a later member named Dockerfile
replaces an earlier one, a member is written through a symlink an earlier member made
(`a -> .`, then `a/Dockerfile`), `dockerfile` stands in for a missing `Dockerfile`, and several
header fields read differently from Python's tarfile (tests/context_archives.py). Before this
module, the CLI layer read the first member named Dockerfile (layout c took all of them) and the
proxy missed writes through symlinks and the header differences (layouts a and b).

The same fallback in a directory context: with no `Dockerfile`, docker's CLI (and the engine,
for compose's builds) build `dockerfile`, which the CLI layer did not read (layout c).

Each shape in each layout (a: CLI layer + proxy, b: proxy alone, c: CLI layer alone); the
control in the same test builds the very archive on the bare engine, which fetches the loopback
secret into the image: the shape hides what it claims to hide from the engine's reading.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator

import pytest

from tests.context_archives import SHAPES, naive_dockerfile

from .stack import (
    AGENT,
    AGENT_HOME,
    IMAGE,
    PROXY_ALONE,
    Stack,
    audit_offset,
    docker_client,
    root_docker_env,
    serving_on_loopback,
    write_file,
)
from .test_attack_chains import assert_refused

pytestmark = pytest.mark.e2e

TAG = "ai-rt6-context:1"
SECRET = "gk-rt6-loopback-secret"
HARMLESS = f"FROM {IMAGE}\nRUN true\n".encode()


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    with serving_on_loopback(f"{SECRET}\n") as served:
        yield served


@pytest.mark.parametrize("shape", SHAPES, ids=list(SHAPES))
def test_the_dockerfile_the_engine_builds_is_the_one_checked(stack: Stack, url: str, shape: str) -> None:
    evil = f"FROM {IMAGE}\nADD {url} /secret\n".encode()
    archive = SHAPES[shape](HARMLESS, evil)
    assert naive_dockerfile(archive) == HARMLESS  # what a plain reading of the archive finds
    try:  # Control: the bare engine builds the hidden Dockerfile and fetches the secret.
        root = subprocess.run([str(docker_client()), "build", "-q", "-t", TAG, "-"], input=archive,
                              env=root_docker_env(), capture_output=True, timeout=120, check=False)
        assert root.returncode == 0, root.stderr
        assert SECRET in stack.docker("run", "--rm", TAG, "cat", "/secret").stdout
    finally:
        stack.docker("rmi", "-f", TAG, check=False)

    since = audit_offset()
    built = stack.ssh(f"docker build -q -t {TAG} -", stdin=archive, timeout=120)
    assert_refused(stack, built, since, rule="build-add-url")
    assert SECRET.encode() not in built.stdout + built.stderr
    assert not stack.docker("images", "-q", TAG).stdout.strip()


APP = AGENT_HOME / "ai-rt6-app"
COMPOSE = f"services:\n  web:\n    build: .\n    image: {TAG}\n"


@pytest.mark.parametrize("command", [f"docker build -q -t {TAG} {APP}",
                                     f"docker compose -f {APP}/compose.yaml -p ai-rt6 build"],
                         ids=["build", "compose_build"])
def test_a_lowercase_dockerfile_in_a_directory_is_checked(stack: Stack, url: str, command: str) -> None:
    """No Dockerfile, a `dockerfile` (the agent's containers can write one into its area)."""
    evil = f"FROM {IMAGE}\nADD {url} /secret\n"
    try:
        write_file(APP / "dockerfile", evil, mode=0o644, owner=AGENT, group=AGENT)
        write_file(APP / "compose.yaml", COMPOSE, mode=0o644, owner=AGENT, group=AGENT)
        # Control: the bare engine builds the lowercase file and fetches the secret.
        stack.docker("build", "-q", "-t", TAG, str(APP))
        assert SECRET in stack.docker("run", "--rm", TAG, "cat", "/secret").stdout
        stack.docker("rmi", "-f", TAG)

        since = audit_offset()
        built = stack.ssh(command, timeout=120)
        # (b): compose's classic builder (DOCKER_BUILDKIT=0) itself wants the Dockerfile and stops
        client_side = stack.mode == PROXY_ALONE and "compose" in command
        assert_refused(stack, built, since, rule="build-add-url", client_side=client_side)
        assert SECRET.encode() not in built.stdout + built.stderr
        assert not stack.docker("images", "-q", TAG).stdout.strip()
    finally:
        stack.docker("rmi", "-f", TAG, check=False)
        shutil.rmtree(APP, ignore_errors=True)
