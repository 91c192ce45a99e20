"""The operator's own images: red team, session 5; [images] shared (gatekeeper.image_scope).

Inspect answers about an image the agent does not own are redacted (`Config.Env` values,
values under `[redact]` keys), so the operator's image built with `ENV DB_PASSWORD=...`
shows `DB_PASSWORD=***`. A container of that image would print it all the same (`docker run
IMAGE env`, or cat of any file in it), and so would a build FROM it, a COPY --from it, a
compose service of it, a mount of it (unit tables only: this engine has no image mounts).
The agent may use only its own images (built or pulled by it), images carrying a digest
from a registry [images] allowed admits, and those the operator lends it in [images]
shared: the operator's local build is none of these. Each runs in every layout (a: CLI
layer + proxy, b: proxy alone, c: CLI layer alone); the control is root's same command,
and the same image listed in [images] shared.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest

from .stack import (
    AGENT,
    AGENT_HOME,
    IMAGE,
    SUITE_IMAGES,
    Stack,
    audit_offset,
    policy_rewritten,
    write_file,
)
from .test_attack_chains import assert_refused

pytestmark = pytest.mark.e2e

PREFIX = "ai-rt5-"  # what the agent names: inside the [names] prefix
OPERATOR_IMAGE = "rt5-operator-app:1"  # outside the suite's [images] shared (gk-*, ai-*)
SECRET = "gk-rt5-image-secret"
SECRET_FILE = "/etc/operator-secret"
LENT = SUITE_IMAGES.replace('"]', '", "docker.io/library/rt5-operator-app"]', 1)
WORK = AGENT_HOME / "work" / "rt5-images"


@pytest.fixture
def operator_image(stack: Stack) -> Iterator[str]:
    """The operator's local build (no registry, no owner label) with a secret in its
    environment and in a file."""
    name = f"{PREFIX}builder"
    stack.docker("rm", "-f", name, check=False)
    stack.docker("create", "--name", name, IMAGE, "sh", "-c", f"echo {SECRET} > {SECRET_FILE}")
    stack.docker("start", "-a", name)
    stack.docker("commit", "--change", f"ENV DB_PASSWORD={SECRET}", "--change", 'CMD ["sh"]', name,
                 OPERATOR_IMAGE)
    stack.docker("rm", "-f", name)
    yield OPERATOR_IMAGE
    stack.docker("rmi", "-f", OPERATOR_IMAGE, check=False)


def agent_file(relative: str, text: str) -> str:
    path = WORK / relative
    write_file(path, text, mode=0o644, owner=AGENT, group=AGENT)
    for directory in (path.parent, WORK, WORK.parent):
        shutil.chown(directory, AGENT, AGENT)
    return str(path)


def test_the_operators_image_environment_stays_hidden(stack: Stack, operator_image: str) -> None:
    """Contrast (the rule that holds): inspect redacts the operator's image's environment. The
    attack: a container of that image prints it. (Control: root's same run prints the secret;
    and once the operator lends the image in [images] shared, so does the agent's.)"""
    inspected = stack.ssh(f"docker image inspect --format '{{{{json .Config.Env}}}}' {operator_image}")
    assert inspected.returncode == 0, inspected.stderr
    assert SECRET.encode() not in inspected.stdout and b"DB_PASSWORD=***" in inspected.stdout
    control = stack.docker("run", "--rm", operator_image, "env").stdout
    assert SECRET in control

    since = audit_offset()
    seen = stack.ssh(f"docker run --rm {operator_image} env")
    assert SECRET.encode() not in seen.stdout, "the operator's image environment reached the agent"
    assert_refused(stack, seen, since, rule="image-not-shared")

    with policy_rewritten(lambda text: text.replace(SUITE_IMAGES, LENT)):
        lent = stack.ssh(f"docker run --rm {operator_image} env")
    assert lent.returncode == 0, lent.stderr
    assert SECRET.encode() in lent.stdout


def routes(image: str, short_id: str) -> dict[str, tuple[str, bytes]]:
    """Each route by which the image's content would reach the agent: (command, its stdin)."""
    build_from = f"FROM {image}\nRUN cat {SECRET_FILE}\n".encode()
    copy_from = f"FROM {IMAGE}\nCOPY --from={image} {SECRET_FILE} /got\nRUN cat /got\n".encode()
    compose = agent_file("compose.yaml", f"services:\n  app:\n    image: {image}\n    command: env\n")
    return {
        "create": (f"docker create --name {PREFIX}made {image} env", b""),
        "container run by short ID": (f"docker container run --rm {short_id} cat {SECRET_FILE}", b""),
        "build FROM": (f"docker build --no-cache -t {PREFIX}child:1 -", build_from),
        "build COPY --from": (f"docker build --no-cache -t {PREFIX}child:1 -", copy_from),
        "compose run": (f"docker compose -f {compose} -p ai-rt5-images run --rm app", b""),
    }


@pytest.mark.parametrize("route", ["create", "container run by short ID", "build FROM", "build COPY --from",
                                   "compose run"])
def test_every_route_to_the_operators_image_is_refused(stack: Stack, operator_image: str, route: str) -> None:
    """run/create (any spelling, by ID), build FROM and COPY --from, compose: refused; the
    same command works for the image once [images] shared lends it (the control)."""
    short_id = stack.docker("image", "inspect", "--format", "{{.Id}}", operator_image).stdout.strip()[7:19]
    command, stdin = routes(operator_image, short_id)[route]
    try:
        since = audit_offset()
        refused = stack.ssh(command, stdin=stdin, timeout=180)
        assert SECRET.encode() not in refused.stdout + refused.stderr
        assert_refused(stack, refused, since, rule="image-not-shared")
        assert not stack.docker("ps", "-aq", "--filter", f"ancestor={operator_image}").stdout.strip()
        assert not stack.docker("images", "-q", f"{PREFIX}child:1").stdout.strip()

        with policy_rewritten(lambda text: text.replace(SUITE_IMAGES, LENT)):
            lent = stack.ssh(command, stdin=stdin, timeout=180)
        assert lent.returncode == 0, lent.stderr
    finally:
        for container in stack.docker("ps", "-aq", "--filter", f"ancestor={operator_image}").stdout.split():
            stack.docker("rm", "-f", container, check=False)
        stack.docker("rmi", "-f", f"{PREFIX}child:1", check=False)
        stack.docker("compose", "-p", "ai-rt5-images", "down", check=False)


@pytest.fixture(autouse=True, scope="module")
def clean_work() -> Iterator[None]:
    yield
    shutil.rmtree(WORK, ignore_errors=True)
