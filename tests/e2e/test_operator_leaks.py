"""What the operator does beside the agent stays the operator's: red team, session 4.

Each attack runs in every layout (a: CLI layer + proxy, b: proxy alone, c: CLI layer
alone), so each layer alone is shown to hold. Its control runs in the same test: the
same request sent by root to the bare engine socket (the defence off) shows the
effect the check is about; then the agent sends it through ssh.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest

from .stack import IMAGE, MODES, PROXY_ALONE, Stack

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.parametrize("stack", MODES, indirect=True, scope="module"),
]

PREFIX = "gk-rt4-"
OPERATOR = f"{PREFIX}op"
OWN = f"{PREFIX}own"
SECRET = "gk-rt4-exec-secret"


def remove_ours(stack: Stack) -> None:
    names = stack.docker("ps", "-aq", "--filter", f"name={PREFIX}").stdout.split()
    if names:
        stack.docker("rm", "-f", *names, check=False)


@pytest.fixture
def clean(stack: Stack) -> Iterator[None]:
    remove_ours(stack)
    yield
    remove_ours(stack)


def event_names(lines: str) -> list[str]:
    return sorted({json.loads(line)["Actor"]["Attributes"].get("name", "") for line in lines.splitlines()})


@pytest.mark.usefixtures("clean")
def test_events_carry_only_the_agents_objects(stack: Stack) -> None:
    """`docker events` names every object on the engine and the command line of every exec:
    the operator's `docker exec db mysql -pSECRET` reaches whoever watches. The agent's
    events are its own objects' (the owner label filter, ANDed with its own filters)."""
    since = int(time.time()) - 1
    own = stack.ssh(f"docker run --rm --name {OWN} {IMAGE} true")
    assert own.returncode == 0, own.stderr
    stack.docker("run", "-d", "--name", OPERATOR, IMAGE, "sleep", "600")
    stack.docker("exec", OPERATOR, "sh", "-c", f"true {SECRET}")
    until = int(time.time()) + 1
    window = ("--since", str(since), "--until", str(until), "--format", "{{json .}}")

    control = stack.docker("events", *window).stdout  # the agent's command on the bare engine
    assert SECRET in control and OPERATOR in event_names(control) and OWN in event_names(control)

    seen = stack.ssh(f"docker events --since {since} --until {until} --format '{{{{json .}}}}'")
    assert seen.returncode == 0, seen.stderr
    text = seen.stdout.decode()
    assert SECRET not in text
    assert OWN in event_names(text) and OPERATOR not in event_names(text), text
    owners = {json.loads(line)["Actor"]["Attributes"].get("gatekeeper.owner") for line in text.splitlines()}
    assert owners == {"default"}, text
    # A filter of its own narrows, never widens: the operator's container by name is not there.
    named = stack.ssh(f"docker events --since {since} --until {until} --filter container={OPERATOR}")
    assert named.returncode == 0 and named.stdout == b"", named


VOLUME = f"{PREFIX}pgdata"


@pytest.fixture
def volume_gone(stack: Stack) -> Iterator[None]:
    stack.docker("volume", "rm", "-f", VOLUME, check=False)
    yield
    remove_ours(stack)
    stack.docker("volume", "rm", "-f", VOLUME, check=False)


def agent_makes_volume(stack: Stack) -> None:
    """A new named volume, the agent's way in the layout: the CLI layer makes it labelled for a
    run; the proxy alone takes `volume create` (labelled) and refuses a run of a missing one."""
    command = (f"docker volume create {VOLUME}" if stack.mode == PROXY_ALONE
               else f"docker run --rm -v {VOLUME}:/d {IMAGE} true")
    made = stack.ssh(command)
    assert made.returncode == 0, made.stderr


@pytest.mark.usefixtures("clean", "volume_gone")
@pytest.mark.xfail(strict=True, reason="OPEN (redteam s4 finding 2, design): docker, and compose with a "
                   "warning, use an existing volume of the name they are given; a volume the agent made "
                   "first is the agent's, whatever the operator writes to it later")
def test_volume_named_before_the_operator_uses_it(stack: Stack) -> None:
    """Squatting a name in the engine's volume namespace: the operator's `docker run -v pgdata:...`
    (or a compose project's volume) is the agent's volume if the agent made it first.
    Contrast (the rule that holds): a volume the operator made first is refused to the agent."""
    stack.docker("volume", "create", VOLUME)
    stack.docker("run", "--rm", "-v", f"{VOLUME}:/d", IMAGE, "sh", "-c", f"echo {SECRET} > /d/secret")
    refused = stack.ssh(f"docker run --rm -v {VOLUME}:/d {IMAGE} cat /d/secret")
    assert SECRET.encode() not in refused.stdout and stack.refused(refused), refused
    stack.docker("volume", "rm", VOLUME)

    agent_makes_volume(stack)
    # Later, the operator's service by that name: docker takes the existing volume without a word.
    stack.docker("run", "--rm", "-v", f"{VOLUME}:/d", IMAGE, "sh", "-c", f"echo {SECRET} > /d/secret")
    seen = stack.ssh(f"docker run --rm -v {VOLUME}:/d {IMAGE} cat /d/secret")
    assert SECRET.encode() not in seen.stdout, "the operator's data reached the agent"

