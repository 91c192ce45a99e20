"""Names the engine reads as the operator's IDs: red team, session 5.

`docker ps`, `docker images` and `docker network ls` show 12-digit short IDs, and operators
type them (`docker exec -it 3f2a1b4c5d6e sh`, `docker cp app.env 3f2a1b4c5d6e:/app/`).
The engine resolves a reference by full ID, then by name (image: by tag), and only then by
ID prefix: an object the agent names after the operator's short ID takes the operator's
later commands (the operator's shell, files and secrets go into the agent's container).
Each attack runs in every layout (a: CLI layer + proxy, b: proxy alone, c: CLI layer
alone); its control, in the same test, is the agent's same object made on the bare engine
(the defence off): the operator's short ID then reaches it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest

from .stack import IMAGE, Stack, audit_offset, names_prefix
from .test_attack_chains import assert_refused

pytestmark = pytest.mark.e2e

PREFIX = "gk-rt5-"
OPERATOR = f"{PREFIX}op"
AGENTS = ("--label", "gatekeeper.owner=default", "--label", "gatekeeper.created=default")


def refused_by_the_id_rule(stack: Stack, command: str, stdin: bytes = b"") -> None:
    """Refused with rule name-like-id under the stack's [names] prefix, the default "ai-" (a
    hex word lies outside it too: the ID rule must be the one that answers), and with the
    prefix off (""), where the ID rule is the only defence."""
    for prefix_off in (False, True):
        with names_prefix("") if prefix_off else contextlib.nullcontext():
            since = audit_offset()
            result = stack.ssh(command, stdin=stdin)
            assert_refused(stack, result, since, rule="name-like-id")


def short_id(full: str) -> str:
    return full.removeprefix("sha256:")[:12]


def resolved(stack: Stack, kind: str, reference: str) -> str:
    found = stack.docker(kind, "inspect", "--format", "{{.Id}}", "--", reference, check=False)
    return found.stdout.strip()


@pytest.fixture
def operator_container(stack: Stack) -> Iterator[str]:
    stack.docker("rm", "-f", OPERATOR, check=False)
    full = stack.docker("run", "-d", "--name", OPERATOR, IMAGE, "sleep", "600").stdout.strip()
    yield full
    stack.docker("rm", "-f", OPERATOR, short_id(full), check=False)


def test_a_container_named_like_the_operators_short_id(stack: Stack, operator_container: str) -> None:
    """The agent's container named after the operator's short ID gets the operator's
    `docker exec/cp/stop <short ID>`."""
    short = short_id(operator_container)
    assert resolved(stack, "container", short) == operator_container
    # Control: the same container made on the bare engine: the operator's short ID now names it.
    stack.docker("run", "-d", "--name", short, *AGENTS, IMAGE, "sleep", "600")
    assert resolved(stack, "container", short) not in ("", operator_container)
    stack.docker("rm", "-f", short)

    refused_by_the_id_rule(stack, f"docker run -d --name {short} {IMAGE} sleep 600")
    assert resolved(stack, "container", short) == operator_container
    refused_by_the_id_rule(stack, f"docker create --name={short[:4]} {IMAGE} true")
    assert resolved(stack, "container", short[:4]) == operator_container


OPERATOR_TAG = f"{PREFIX}op-image:1"


@pytest.fixture
def operator_image(stack: Stack) -> Iterator[str]:
    """The operator's own image (its own ID, not the everyday test image's)."""
    stack.docker("rm", "-f", OPERATOR, check=False)
    stack.docker("run", "--name", OPERATOR, IMAGE, "sh", "-c", "echo operator > /marker")
    stack.docker("commit", OPERATOR, OPERATOR_TAG)
    stack.docker("rm", "-f", OPERATOR)
    full = resolved(stack, "image", OPERATOR_TAG)
    yield full
    stack.docker("rmi", "-f", short_id(full), check=False)
    stack.docker("rmi", "-f", OPERATOR_TAG, check=False)


def test_an_image_tagged_like_the_operators_short_id(stack: Stack, operator_image: str) -> None:
    """`docker run <short image ID>` (from `docker images`) runs the image tagged with that word:
    the agent's build tagged after the operator's short image ID is what the operator runs."""
    short = short_id(operator_image)
    assert resolved(stack, "image", short) == operator_image
    # Control: a tag of that word on the bare engine wins over the ID prefix.
    stack.docker("tag", IMAGE, short)
    assert resolved(stack, "image", short) not in ("", operator_image)
    stack.docker("rmi", short)

    refused_by_the_id_rule(stack, f"docker build -t {short} -", stdin=f"FROM {IMAGE}\n".encode())
    assert resolved(stack, "image", short) == operator_image
