"""Image sources through the real stack (policy [images], issue 14 item 5).

Control: without an [images] list the agent runs gk-busybox. With a list that does not
name it, `run` is refused (image-source) before anything reaches the engine, and so are a
pull from an unlisted registry, a build whose Dockerfile starts FROM one and a compose
service with such an `image:`; with a list that names docker.io/library/gk-*, the same run
succeeds.

Three ways (tests/e2e/conftest.py THREE_WAY): in layout (b) the proxy refuses the create,
the pulls and the build (its FROM read from the build context it received) by the same
rule, with its "api" record, and nothing is made. Pinning ([images] pin_digests) rewrites
the CLI layer's argv: that test is skipped in (b), why is in the test.
"""

from __future__ import annotations

import shutil

import pytest

from .stack import (
    AGENT,
    AGENT_HOME,
    IMAGE,
    PROXY_ALONE,
    Stack,
    audit_offset,
    audit_records_since,
    policy_extended,
    write_file,
)
from .test_attack_chains import assert_refused

pytestmark = pytest.mark.e2e

OTHER_REGISTRY = '\n[images]\nallowed = ["registry.example.com/team/**"]\n'
OURS = '\n[images]\nallowed = ["docker.io/library/gk-*"]\n'


COMPOSE = 'services:\n  app:\n    image: ghcr.io/evil/base\n    command: ["true"]\n'


def test_unlisted_images_are_refused(stack: Stack) -> None:
    run = f"docker run --rm {IMAGE} true"
    control = stack.ssh(run)
    assert control.returncode == 0, control.stderr
    app = AGENT_HOME / "ai-images-app"  # compose's project, named after it, within the [names] prefix
    try:
        write_file(app / "Dockerfile", "FROM ghcr.io/evil/base\n", mode=0o644, owner=AGENT, group=AGENT)
        write_file(app / "compose.yaml", COMPOSE, mode=0o644, owner=AGENT, group=AGENT)
        with policy_extended(OTHER_REGISTRY):
            commands = (run, "docker pull ghcr.io/evil/base", f"docker build {app}",
                        f"docker compose -f {app}/compose.yaml up -d")
            for command in commands:
                images, containers = engine_objects(stack)
                since = audit_offset()
                assert_refused(stack, stack.ssh(command), since, rule="image-source")
                assert engine_objects(stack) == (images, containers), command
        with policy_extended(OURS):
            allowed = stack.ssh(run)
            assert allowed.returncode == 0, allowed.stderr
    finally:
        shutil.rmtree(app, ignore_errors=True)
        stack.docker("network", "rm", "ai-images-app_default", check=False)  # (b): compose may make it


def engine_objects(stack: Stack) -> tuple[list[str], list[str]]:
    """Every image and container ID the engine holds, as root sees them."""
    images = stack.docker("images", "-aq", "--no-trunc").stdout.split()
    return sorted(images), sorted(stack.docker("ps", "-aq", "--no-trunc").stdout.split())


def test_pinned_runs_use_the_image_id(stack: Stack) -> None:
    """[images] pin_digests: the tag is resolved when deciding and the container is made
    from that image ID, which the audit record's argv shows. Control: without it, by tag."""
    if stack.mode == PROXY_ALONE:
        # Not an attack on (b): the proxy decides each create on the image the tag names and
        # forwards it one at a time with the profile's pulls and builds (gatekeeper/proxy/
        # guards.py), and tag/commit/load are refused, so no request of the agent re-points
        # the tag in between; there is no argv to pin.
        pytest.skip("pinning rewrites the CLI layer's argv; layout (b) has none")
    image_id = stack.docker("image", "inspect", "--format", "{{.Id}}", IMAGE).stdout.strip()
    names = ("ai-pin-control", "ai-pin")
    try:
        assert stack.ssh(f"docker create --name {names[0]} {IMAGE} true").returncode == 0
        control = stack.docker("container", "inspect", "--format", "{{.Config.Image}}", names[0]).stdout
        assert control.strip() == IMAGE
        with policy_extended("\n[images]\npin_digests = true\n"):
            offset = audit_offset()
            pinned = stack.ssh(f"docker create --name {names[1]} {IMAGE} true")
            assert pinned.returncode == 0, pinned.stderr
            [record] = [r for r in audit_records_since(offset) if r.get("event") == "decision"]
        assert image_id in record["argv"]  # type: ignore[operator]
        made = stack.docker("container", "inspect", "--format", "{{.Config.Image}}", names[1]).stdout
        assert made.strip() == image_id
    finally:
        stack.docker("rm", "-f", *names, check=False)
