"""Image sources through the real stack (policy [images], issue 14 item 5).

Control: without an [images] list the agent runs gk-busybox. With a list that does not
name it, `run` is refused (image-source) before anything reaches the engine, and so are a
pull from an unlisted registry and a build whose Dockerfile starts FROM one; with a list
that names docker.io/library/gk-*, the same run succeeds.
"""

from __future__ import annotations

import shutil

import pytest

from .stack import AGENT, AGENT_HOME, IMAGE, Stack, policy_extended, write_file

pytestmark = pytest.mark.e2e

OTHER_REGISTRY = '\n[images]\nallowed = ["registry.example.com/team/**"]\n'
OURS = '\n[images]\nallowed = ["docker.io/library/gk-*"]\n'


def test_unlisted_images_are_refused(stack: Stack) -> None:
    run = f"docker run --rm {IMAGE} true"
    control = stack.ssh(run)
    assert control.returncode == 0, control.stderr
    app = AGENT_HOME / "gk-images-app"
    try:
        write_file(app / "Dockerfile", "FROM ghcr.io/evil/base\n", mode=0o644, owner=AGENT, group=AGENT)
        with policy_extended(OTHER_REGISTRY):
            for command in (run, "docker pull ghcr.io/evil/base", f"docker build {app}"):
                refused = stack.ssh(command)
                assert refused.returncode == 77, (command, refused.stderr)
                assert b"(rule image-source)" in refused.stderr, refused.stderr
        with policy_extended(OURS):
            allowed = stack.ssh(run)
            assert allowed.returncode == 0, allowed.stderr
    finally:
        shutil.rmtree(app, ignore_errors=True)


def test_pinned_runs_use_the_image_id(stack: Stack) -> None:
    """[images] pin_digests: the tag is resolved when deciding and the container is made
    from that image ID, which the audit record's argv shows. Control: without it, by tag."""
    from .stack import audit_offset, audit_records_since

    image_id = stack.docker("image", "inspect", "--format", "{{.Id}}", IMAGE).stdout.strip()
    names = ("gk-pin-control", "gk-pin")
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
