"""[protect] labels with several entries, with the CLI layer alone (layout c).

A prune gets `--filter label!=<entry>` per protected label, but the engine ANDs label!
filters: it keeps only the objects that carry every one of them, so with two entries the
agent's own container carrying one protected label was pruned. Now each protected label is
looked for among the agent's objects first and the prune is refused (rule protected).

Control, in the same test: root's prune on the bare engine with the filters the CLI layer
used to add (owner, created, one label! per entry) removes a container carrying one entry.

Layout (c) only (tests/e2e/conftest.py THREE_WAY): behind the proxy its own check
(gatekeeper.proxy.vet.refuse_protected_owned) would hide a hole in the CLI layer.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .stack import CLI_ALONE, IMAGE, Stack, policy_extended, switch_mode

pytestmark = pytest.mark.e2e

EX_NOPERM = 77
KEPT, SPARE = "ai-e2e-prune-kept", "ai-e2e-prune-spare"
TAG = "gk-e2e-prune=1"  # only the control's prune looks for it
PROTECT = '\n[protect]\nlabels = ["gk-e2e-vital=yes", "gk-e2e-keep=1"]\n'
OLD_FILTERS = ("--filter", "label=gatekeeper.owner=default", "--filter", "label=gatekeeper.created=default",
               "--filter", "label!=gk-e2e-vital=yes", "--filter", "label!=gk-e2e-keep=1")


@pytest.fixture(scope="module")
def stack(deployed_stack: Stack) -> Stack:
    switch_mode(deployed_stack, CLI_ALONE)
    return deployed_stack


@pytest.fixture
def stopped(stack: Stack) -> Iterator[None]:
    for name in (KEPT, SPARE):
        stack.docker("rm", "-f", name, check=False)
        made = stack.ssh(f"docker create --name {name} --label gk-e2e-keep=1 --label {TAG} {IMAGE} true")
        assert made.returncode == 0, made.stderr
    yield
    for name in (KEPT, SPARE):
        stack.docker("rm", "-f", name, check=False)


def exists(stack: Stack, name: str) -> bool:
    return stack.docker("inspect", "--type", "container", name, check=False).returncode == 0


def test_a_prune_never_removes_a_container_with_one_of_several_protected_labels(
        stack: Stack, stopped: None) -> None:
    # Control: the old filters on the bare engine remove a container carrying one entry.
    stack.docker("container", "prune", "-f", *OLD_FILTERS, "--filter", f"label={TAG}")
    assert not exists(stack, SPARE) and not exists(stack, KEPT)
    made = stack.ssh(f"docker create --name {KEPT} --label gk-e2e-keep=1 --label {TAG} {IMAGE} true")
    assert made.returncode == 0, made.stderr
    with policy_extended(PROTECT):
        result = stack.ssh("docker container prune -f")
    assert result.returncode == EX_NOPERM, result.stderr
    assert "(rule protected)" in result.stderr.decode() and KEPT in result.stderr.decode(), result.stderr
    assert exists(stack, KEPT)
