"""The owner label through FROM: an image is the agent's only when a build record names its ID
(gatekeeper.build_records), not because it carries `gatekeeper.owner=<profile>`.

The agent builds an image through gatekeeper; the operator (root on the engine) builds FROM it
with a secret in its environment and in a file, or commits a container of it. Both results
inherit the agent's owner label (root's inspect shows it: the control that the label is there).
With the label alone as proof the agent would inspect the operator's image unredacted, run it
(reading the baked-in file), and remove it. The defence switched off for that one image, in
every layer at once: root writes the build record gatekeeper would write for the agent's own
build (the record is all the proof is); then the agent's inspect, run and rmi of the operator's
image succeed (the control), without it each is redacted or refused. The agent's own build
works end to end on both sides: built, recorded, inspected unredacted, run, removed (its record
forgotten). Each layout (a: CLI layer + proxy, b: proxy alone, c: CLI layer alone); the classic
builder everywhere (the stack's client has no buildx; BuildKit images inherit labels alike, and
the proof does not depend on the builder: it is the image ID).
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator

import pytest

from .stack import (
    AGENT,
    AGENT_HOME,
    Stack,
    audit_offset,
    docker_client,
    policy_extended,
    record_agent_build,
    root_docker_env,
)
from .test_attack_chains import assert_refused

pytestmark = pytest.mark.e2e

BASE = "ai-fo-base:1"  # the agent's build
# The operator's (names outside the suite's [images] shared, gk-* and ai-*: not lent to the agent)
HEIR = "rt-fo-heir:1"  # built FROM the agent's image
COMMITTED = "rt-fo-commit:1"  # a commit of a container of the agent's image
SECRET = "gk-fo-operator-secret"
CONTEXT = AGENT_HOME / "work" / "fromowner"
OWNER = "gatekeeper.owner"


def image_id(stack: Stack, name: str) -> str:
    return stack.docker("image", "inspect", "--format", "{{.Id}}", name).stdout.strip()


def records_of(stack: Stack, ident: str) -> list[str]:
    return stack.docker("volume", "ls", "-q", "--filter", "label=gatekeeper.built-by=default",
                        "--filter", f"label=gatekeeper.built-image={ident}").stdout.split()


def root_build(tag: str, dockerfile: str) -> None:
    env = {**root_docker_env(), "DOCKER_BUILDKIT": "0"}
    argv = [str(docker_client()), "build", "-q", "-t", tag, "-"]
    built = subprocess.run(argv, input=dockerfile.encode(), env=env, capture_output=True, timeout=120,
                           check=False)
    assert built.returncode == 0, built.stderr


def clean(stack: Stack) -> None:
    """The images (a build record whose image is gone names nothing: gatekeeper.build_records)."""
    for name in (HEIR, COMMITTED, BASE):
        stack.docker("rmi", "-f", name, check=False)


@pytest.fixture
def base(stack: Stack) -> Iterator[str]:
    """The agent's image, built through gatekeeper (its build recorded by the layer in front)."""
    clean(stack)
    CONTEXT.mkdir(parents=True, exist_ok=True)
    (CONTEXT / "Dockerfile").write_text("FROM gk-busybox:latest\nENV AGENT_OWN=visible-to-agent\n")
    for path in (CONTEXT, CONTEXT / "Dockerfile", CONTEXT.parent):
        shutil.chown(path, AGENT, AGENT)
    built = stack.ssh(f"docker build -q -t {BASE} {CONTEXT}", timeout=180)
    assert built.returncode == 0, built.stderr
    yield BASE
    clean(stack)
    shutil.rmtree(CONTEXT, ignore_errors=True)


def heirs(stack: Stack) -> list[str]:
    """The operator's two descendants of the agent's image, each with the secret."""
    # (the file's content from the environment: a step's command line is not what inspect hides)
    root_build(HEIR, f"FROM {BASE}\nENV DB_PASSWORD={SECRET}\nRUN echo $DB_PASSWORD > /etc/op-secret\n")
    maker = "ai-fo-maker"
    stack.docker("rm", "-f", maker, check=False)
    stack.docker("run", "--name", maker, "-e", f"DB_PASSWORD={SECRET}", BASE, "sh", "-c",
                 "echo $DB_PASSWORD > /etc/op-secret")
    stack.docker("commit", "--change", f"ENV DB_PASSWORD={SECRET}", maker, COMMITTED)
    stack.docker("rm", "-f", maker)
    return [HEIR, COMMITTED]


def test_the_agents_own_build_is_recorded_and_its_own(stack: Stack, base: str) -> None:
    ident = image_id(stack, base)
    assert records_of(stack, ident), "the agent's build left no build record"
    seen = stack.ssh(f"docker image inspect --format '{{{{json .Config.Env}}}}' {base}")
    assert seen.returncode == 0 and b"AGENT_OWN=visible-to-agent" in seen.stdout, seen.stderr
    ran = stack.ssh(f"docker run --rm {base} sh -c 'echo $AGENT_OWN'")
    assert ran.returncode == 0 and b"visible-to-agent" in ran.stdout, ran.stderr
    removed = stack.ssh(f"docker rmi {base}")
    assert removed.returncode == 0, removed.stderr
    assert stack.docker("image", "inspect", base, check=False).returncode != 0
    assert not records_of(stack, ident), "the record outlived the image"


@pytest.mark.parametrize("kind", ["build FROM", "commit"])
def test_the_operators_descendant_is_not_the_agents(stack: Stack, base: str, kind: str) -> None:
    heir = heirs(stack)[0 if kind == "build FROM" else 1]
    ident = image_id(stack, heir)
    labels = stack.docker("image", "inspect", "--format", "{{json .Config.Labels}}", heir).stdout
    assert f'"{OWNER}":"default"' in labels  # control: the owner label is inherited
    assert not records_of(stack, ident)

    inspected = stack.ssh(f"docker image inspect --format '{{{{json .Config.Env}}}}' {heir}")
    assert inspected.returncode == 0, inspected.stderr
    assert SECRET.encode() not in inspected.stdout and b"DB_PASSWORD=***" in inspected.stdout
    plain = stack.ssh(f"docker image inspect {heir}")
    assert plain.returncode == 0 and SECRET.encode() not in plain.stdout, plain.stderr
    since = audit_offset()
    ran = stack.ssh(f"docker run --rm {heir} cat /etc/op-secret")
    assert SECRET.encode() not in ran.stdout + ran.stderr
    assert_refused(stack, ran, since, rule="image-not-shared")
    since = audit_offset()
    removed = stack.ssh(f"docker rmi {heir}")
    assert_refused(stack, removed, since, rule="scope-owned")
    assert image_id(stack, heir) == ident, "the operator's image was removed"

    forged = record_agent_build(ident)  # the control: the defence off for this image
    try:
        shown = stack.ssh(f"docker image inspect --format '{{{{json .Config.Env}}}}' {heir}")
        assert SECRET.encode() in shown.stdout, shown.stderr
        leaked = stack.ssh(f"docker run --rm {heir} cat /etc/op-secret")
        assert leaked.returncode == 0 and SECRET.encode() in leaked.stdout, leaked.stderr
        gone = stack.ssh(f"docker rmi {heir}")
        assert gone.returncode == 0, gone.stderr
        assert stack.docker("image", "inspect", heir, check=False).returncode != 0
    finally:
        stack.docker("volume", "rm", forged, check=False)


OWNED_IMAGES = '\n[scope]\nimages = "owned"\n'
LISTINGS = ["docker images --format '{{.Repository}}:{{.Tag}}'", "docker system df -v --format '{{json .}}'"]


@pytest.mark.parametrize("command", LISTINGS)
def test_an_owned_image_list_leaves_the_operators_descendant_out(stack: Stack, base: str,
                                                                 command: str) -> None:
    """Under [scope] images = "owned" the engine's owner filter (and the disk usage, no filter
    at all) lists the descendant too: its tag named the operator's image to the agent."""
    ident = image_id(stack, heirs(stack)[0])
    mine, theirs = BASE.partition(":")[0].encode(), HEIR.partition(":")[0].encode()
    with policy_extended(OWNED_IMAGES):
        listed = stack.ssh(command, timeout=90)
        assert listed.returncode == 0, listed.stderr
        assert mine in listed.stdout, listed.stdout  # the agent's own
        assert theirs not in listed.stdout, listed.stdout
        forged = record_agent_build(ident)  # the control: the defence off for this image
        try:
            shown = stack.ssh(command, timeout=90)
            assert theirs in shown.stdout, shown.stdout
        finally:
            stack.docker("volume", "rm", forged, check=False)


def test_image_events_leave_the_operators_descendant_out(stack: Stack, base: str) -> None:
    """An image's events carry its labels and its name; the descendant inherits the owner label,
    so `docker events --filter type=image` under the owner filter sent the operator's tags."""
    ident = image_id(stack, heirs(stack)[0])
    since = int(time.time()) - 1
    stack.docker("tag", HEIR, "rt-fo-heir:2")
    stack.docker("tag", base, "ai-fo-base:2")  # an event of the agent's own image
    command = f"docker events --filter type=image --since {since} --until {int(time.time()) + 1}"
    shown = stack.ssh(command, timeout=60)
    assert shown.returncode == 0, shown.stderr
    assert b"ai-fo-base:2" in shown.stdout, shown.stdout
    assert b"rt-fo-heir" not in shown.stdout, shown.stdout
    forged = record_agent_build(ident)  # the control: the defence off for this image
    try:
        leaked = stack.ssh(command, timeout=60)
        assert b"name=rt-fo-heir:2" in leaked.stdout, leaked.stdout + leaked.stderr
    finally:
        stack.docker("volume", "rm", forged, check=False)
        stack.docker("rmi", "rt-fo-heir:2", "ai-fo-base:2", check=False)
