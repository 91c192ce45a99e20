"""Ownership with the CLI layer alone (layout c, issue 12): what an image carries is not the agent's word.

* An image the agent builds carries gatekeeper.owner=<profile> in its config labels, and every
  container made from it inherits the label. The operator's `docker run` of that image is the
  operator's: the agent's stop, logs and rm of it are refused (a container is the agent's only
  when its create set gatekeeper.created and its image does not carry that label), and the
  agent's `ps` under [scope] ps = "owned" and its `container prune` leave it out.
* The agent's own container of the same image stays its own (both sides).

Controls, in the same test: root's inspect shows the inherited owner label (what the CLI
layer used to trust) and root's listing with the old filter selects the operator's container;
the same decision with the rule switched off (owner.proven_labels as the identity) allows
the stop.

Layout (c) only, on purpose (tests/e2e/conftest.py THREE_WAY): it tests the CLI layer's own
answer; in layout (a) the proxy behind it would refuse the same requests (its own
gatekeeper.created rule), hiding a hole in the CLI layer.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest

from .stack import (
    AGENT,
    AGENT_HOME,
    CLI_ALONE,
    IMAGE,
    POLICY,
    Stack,
    policy_extended,
    serving_on_loopback,
    switch_mode,
)

pytestmark = pytest.mark.e2e

EX_NOPERM = 77
PREFIX = "ai-e2e-clio-"  # the agent names within the [names] prefix (the default "ai-")
BUILT = f"{PREFIX}img:1"
HEIR, MINE = f"{PREFIX}heir", f"{PREFIX}mine"
CONTEXT = AGENT_HOME / "work" / "clio"


@pytest.fixture(scope="module")
def stack(deployed_stack: Stack) -> Stack:
    """This module is about the CLI layer alone: layout (c) whatever the suite's default."""
    switch_mode(deployed_stack, CLI_ALONE)
    return deployed_stack


def remove_ours(stack: Stack) -> None:
    names = stack.docker("ps", "-a", "--format", "{{.Names}}").stdout.split()
    for name in names:
        if name.startswith(PREFIX):
            stack.docker("rm", "-f", name, check=False)
    stack.docker("rmi", "-f", BUILT, check=False)


@pytest.fixture
def built(stack: Stack) -> Iterator[str]:
    """An image the agent built through gatekeeper (so labelled as the agent's)."""
    remove_ours(stack)
    CONTEXT.mkdir(parents=True, exist_ok=True)
    (CONTEXT / "Dockerfile").write_text(f"FROM {IMAGE}\nLABEL app=clio\n")
    shutil.chown(CONTEXT, AGENT, AGENT)
    shutil.chown(CONTEXT / "Dockerfile", AGENT, AGENT)
    build = stack.ssh(f"docker build -q -t {BUILT} {CONTEXT}", timeout=120)
    assert build.returncode == 0, build.stderr
    yield BUILT
    remove_ours(stack)
    shutil.rmtree(CONTEXT, ignore_errors=True)


def labels(stack: Stack, name: str) -> str:
    return stack.docker("inspect", "--format", "{{json .Config.Labels}}", name).stdout


def refused(stack: Stack, command: str, rule: str = "scope-owned") -> None:
    result = stack.ssh(command)
    assert result.returncode == EX_NOPERM, (command, result.stderr)
    assert f"(rule {rule})" in result.stderr.decode(), result.stderr


def decided_without_the_rule(command: str, monkeypatch: pytest.MonkeyPatch) -> bool:
    """The CLI layer's decision on the real engine with owner.proven_labels switched off."""
    import gatekeeper.owner
    from gatekeeper.decision import decide
    from gatekeeper.policy import load_policy
    from gatekeeper.worlds import RealWorld

    policy = load_policy(str(POLICY))
    with monkeypatch.context() as off:
        off.setattr(gatekeeper.owner, "proven_labels", lambda labels, image_labels: labels)
        without = decide(command, policy, RealWorld()).allowed
    assert not decide(command, policy, RealWorld()).allowed  # and with it, on the same engine
    return without


def test_the_operators_container_of_the_agents_image_stays_the_operators(
        stack: Stack, built: str, monkeypatch: pytest.MonkeyPatch) -> None:
    stack.docker("run", "-d", "--name", HEIR, built, "sleep", "600")
    inherited = labels(stack, HEIR)
    assert '"gatekeeper.owner":"default"' in inherited and "gatekeeper.created" not in inherited  # control
    assert decided_without_the_rule(f"docker stop {HEIR}", monkeypatch)  # control: allowed without the rule
    for command in (f"docker stop -t 1 {HEIR}", f"docker logs {HEIR}", f"docker rm -f {HEIR}",
                    f"docker kill {HEIR}", f"docker run --rm --link {HEIR}:db {IMAGE} true"):
        refused(stack, command, "foreign-link" if "--link" in command else "scope-owned")
    assert stack.docker("inspect", "--format", "{{.State.Running}}", HEIR).stdout.strip() == "true"
    # the other side: the agent's own container of the same image is its own
    run = stack.ssh(f"docker run -d --name {MINE} {built} sleep 600")
    assert run.returncode == 0, run.stderr
    assert '"gatekeeper.created":"default"' in labels(stack, MINE)
    for command in (f"docker logs {MINE}", f"docker stop -t 1 {MINE}", f"docker rm {MINE}"):
        done = stack.ssh(command)
        assert done.returncode == 0, (command, done.stderr)


def test_owned_listings_and_prune_leave_the_inherited_label_out(stack: Stack, built: str) -> None:
    stack.docker("create", "--name", HEIR, built, "true")  # the operator's, stopped: prunable
    made = stack.ssh(f"docker create --name {MINE} {built} true")
    assert made.returncode == 0, made.stderr
    old_filter = stack.docker("ps", "-a", "--filter", "label=gatekeeper.owner=default",
                              "--format", "{{.Names}}").stdout.split()
    assert HEIR in old_filter and MINE in old_filter  # control: the owner label alone selects both
    with policy_extended('\n[scope]\nps = "owned"\n'):
        listed = stack.ssh("docker ps -a --format '{{.Names}}'")
    assert listed.returncode == 0, listed.stderr
    assert MINE in listed.stdout.decode().split() and HEIR not in listed.stdout.decode().split()
    pruned = stack.ssh("docker container prune -f")
    assert pruned.returncode == 0, pruned.stderr
    left = stack.docker("ps", "-a", "--format", "{{.Names}}").stdout.split()
    assert MINE not in left, "the agent's own stopped container is pruned"
    assert HEIR in left, "the agent's prune removed the operator's container of its image"


POSING = f"{PREFIX}posing:1"


def test_labels_an_image_carries_follow_the_label_rules(stack: Stack, built: str) -> None:
    """A Dockerfile LABEL traefik.* / com.docker.compose.project=<the operator's> (or a pulled
    image carrying one) would make the agent's container steer the operator's proxy or pose as
    its compose service. Control: root builds that image and its container inherits the label."""
    posing = "LABEL traefik.enable=true com.docker.compose.project=ops"
    (CONTEXT / "Dockerfile").write_text(f"FROM {IMAGE}\n{posing}\n")
    refused(stack, f"docker build -q -t {POSING} {CONTEXT}", "refused-label")
    stack.docker("build", "-q", "-t", POSING, str(CONTEXT))  # the operator's (or a registry's) image
    try:
        stack.docker("create", "--name", f"{PREFIX}posing-root", POSING, "true")
        assert '"traefik.enable":"true"' in labels(stack, f"{PREFIX}posing-root")  # control: inherited
        refused(stack, f"docker run -d --name {PREFIX}posing {POSING} sleep 60", "refused-label")
        refused(stack, f"docker create {POSING} true", "refused-label")
        assert f"{PREFIX}posing" not in stack.docker("ps", "-a", "--format", "{{.Names}}").stdout.split()
        refused(stack, f"docker run --rm {PREFIX}not-here:1 true", "image-labels-unchecked")
        # the other side: the agent's own image with plain labels runs
        done = stack.ssh(f"docker run --rm {built} true")
        assert done.returncode == 0, done.stderr
    finally:
        stack.docker("rm", "-f", f"{PREFIX}posing-root", check=False)
        stack.docker("rmi", "-f", POSING, check=False)


COMPOSE_PROJECT = "ai-clio"


def test_compose_services_image_labels_follow_the_label_rules(stack: Stack, built: str) -> None:
    """The same for a compose service's image: its containers inherit the image's labels, which
    the CLI layer checks before `compose up/create/run` as run/create's (the proxy checks the
    create body's). Control: root's `compose up` of the same file makes the posing container."""
    posing_labels = "LABEL traefik.enable=true com.docker.compose.project=ops"
    (CONTEXT / "Dockerfile").write_text(f"FROM {IMAGE}\n{posing_labels}\n")
    stack.docker("build", "-q", "-t", POSING, str(CONTEXT))  # the operator's (or a registry's) image
    posing = CONTEXT / "posing.yaml"
    posing.write_text(f"services:\n  web:\n    image: {POSING}\n    command: [sleep, '60']\n")
    mine = CONTEXT / "mine.yaml"
    mine.write_text(f"services:\n  web:\n    image: {built}\n    command: [sleep, '60']\n")
    absent = CONTEXT / "absent.yaml"
    absent.write_text(f"services:\n  web:\n    image: {PREFIX}not-here:1\n")
    for path in (posing, mine, absent):
        shutil.chown(path, AGENT, AGENT)
    project = ["compose", "-p", COMPOSE_PROJECT, "-f"]
    of_project = f"label=com.docker.compose.project={COMPOSE_PROJECT}"
    try:
        control = stack.docker(*project, str(posing), "up", "-d", check=False)
        assert control.returncode == 0, control.stderr
        root_made = stack.docker("ps", "-aq", "--filter", of_project)
        assert '"traefik.enable":"true"' in labels(stack, root_made.stdout.split()[0])  # control: inherited
        stack.docker(*project, str(posing), "down", check=False)
        for sub in ("up -d", "create", "run --rm web true"):
            refused(stack, f"docker compose -p {COMPOSE_PROJECT} -f {posing} {sub}", "refused-label")
        refused(stack, f"docker compose -p {COMPOSE_PROJECT} -f {absent} up -d", "image-labels-unchecked")
        left = stack.docker("ps", "-aq", "--filter", of_project)
        assert left.stdout.split() == []
        # the other side: a service of the agent's own image with plain labels comes up
        done = stack.ssh(f"docker compose -p {COMPOSE_PROJECT} -f {mine} up -d", timeout=120)
        assert done.returncode == 0, done.stderr
        down = stack.ssh(f"docker compose -p {COMPOSE_PROJECT} -f {mine} down", timeout=120)
        assert down.returncode == 0, down.stderr
    finally:
        stack.docker(*project, str(posing), "down", check=False)
        stack.docker(*project, str(mine), "down", check=False)
        stack.docker("rmi", "-f", POSING, check=False)


@pytest.fixture
def loopback_service() -> Iterator[str]:
    with serving_on_loopback("clio-loopback-secret\n") as url:
        yield url


def test_a_dockerfile_on_stdin_is_checked_too(stack: Stack, built: str, loopback_service: str) -> None:
    """`docker build -f - DIR` and `docker build -` read the Dockerfile from stdin, which the CLI
    layer now reads (bounded), checks like any Dockerfile and hands docker as it was checked.
    Control: root's build of the same Dockerfile on the bare engine fetches the loopback URL."""
    fetching = f"FROM {IMAGE}\nADD {loopback_service} /secret\n"
    (CONTEXT / "Dockerfile.add").write_text(fetching)
    root_file = str(CONTEXT / "Dockerfile.add")
    stack.docker("build", "-q", "-t", f"{PREFIX}rootadd:1", "-f", root_file, str(CONTEXT))
    try:
        shown = stack.docker("run", "--rm", f"{PREFIX}rootadd:1", "cat", "/secret").stdout
        assert "clio-loopback-secret" in shown  # control: the engine fetches it on the host's loopback
    finally:
        stack.docker("rmi", "-f", f"{PREFIX}rootadd:1", check=False)
    tag = f"{PREFIX}add:1"
    for command in (f"docker build -q -t {tag} -f - {CONTEXT}", f"docker build -q -t {tag} -"):
        result = stack.ssh(command, stdin=fetching.encode(), timeout=120)
        assert result.returncode == EX_NOPERM and b"(rule build-add-url)" in result.stderr, result.stderr
    assert not stack.docker("images", "-q", f"{PREFIX}add:1").stdout.strip()
    # the other side: a Dockerfile on stdin without a URL builds, from exactly what was sent
    plain = f"FROM {IMAGE}\nRUN echo from-stdin > /note\n".encode()
    done = stack.ssh(f"docker build -q -t {PREFIX}plain:1 -f - {CONTEXT}", stdin=plain, timeout=120)
    try:
        assert done.returncode == 0, done.stderr
        assert stack.docker("run", "--rm", f"{PREFIX}plain:1", "cat", "/note").stdout == "from-stdin\n"
    finally:
        stack.docker("rmi", "-f", f"{PREFIX}plain:1", check=False)
