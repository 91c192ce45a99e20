"""What a compose service's containers inherit from images, checked by each layer alone.

A container starts from its image's config: every healthcheck field the create leaves at 0
comes from the image's HEALTHCHECK, and every label the service does not set from the image's
labels, which a built image copies from the images its Dockerfile starts FROM. Before this the
CLI layer checked neither for compose (a service of an image with HEALTHCHECK --interval=1ms
ran its checks back to back; a service built FROM an image labelled traefik.enable=true ran
with that label): only the proxy did, at the create, so layout (c) let both through; so did
a service whose own Dockerfile, built by the same compose up, says HEALTHCHECK --interval=1ms.
(`docker build` then `docker run` of such an image: test_hostile_caps, the image exists by the run.)
Each layout (a: CLI layer + proxy, b: proxy alone, c: CLI layer alone). The controls in the
same test: the floors off (the container gets the image's 1 ms interval), and root's compose
up of the agent's very file (the defence off: the built container carries the label).
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from .stack import (
    AGENT,
    AGENT_HOME,
    IMAGE,
    Stack,
    audit_offset,
    policy_extended,
    policy_rewritten,
    record_agent_build,
    write_file,
)
from .test_attack_chains import assert_refused

pytestmark = pytest.mark.e2e

HEALTH_BASE = "gk-rl-fastcheck:1"  # stand for images pulled from a registry: the operator built neither
LABEL_BASE = "gk-rl-traefiked:1"
PROJECT_DIR = AGENT_HOME / "work" / "ai-rl-inherited"
FLOORS = '\n[limits]\nmin_health_interval = "5s"\n'
FAST_DOCKERFILE = f"FROM {IMAGE}\nHEALTHCHECK --interval=1ms CMD true\n"


def root_built(stack: Stack, tag: str, dockerfile: str) -> None:
    context = Path(tempfile.mkdtemp(prefix="gk-rl-"))
    try:
        (context / "Dockerfile").write_text(dockerfile)
        stack.docker("build", "-q", "-t", tag, str(context), check=True)
    finally:
        shutil.rmtree(context)


def project_containers(stack: Stack, project: str) -> list[str]:
    label = f"label=com.docker.compose.project={project}"
    return stack.docker("ps", "-aq", "--filter", label).stdout.split()


def remove_project(stack: Stack, project: str) -> None:
    for container in project_containers(stack, project):
        stack.docker("rm", "-f", container, check=False)
    stack.docker("network", "rm", f"{project}_default", check=False)


@pytest.fixture
def project(stack: Stack) -> Iterator[Path]:
    root_built(stack, HEALTH_BASE, f"FROM {IMAGE}\nHEALTHCHECK --interval=1ms CMD true\n")
    root_built(stack, LABEL_BASE, f"FROM {IMAGE}\nLABEL traefik.enable=true\n")
    yield PROJECT_DIR
    for name in ("ai-rl-health", "ai-rl-based", "ai-rl-built", "ai-rl-stale", "ai-rl-relabel"):
        remove_project(stack, name)
    stack.docker("image", "rm", "-f", HEALTH_BASE, LABEL_BASE, "ai-rl-based-app", "ai-rl-built-app",
                 "ai-rl-stale-app", "ai-rl-relabel-app", check=False)
    shutil.rmtree(PROJECT_DIR, ignore_errors=True)


def test_a_service_images_own_healthcheck_follows_the_floors(stack: Stack, project: Path) -> None:
    compose = project / "health.yaml"
    text = f"name: ai-rl-health\nservices:\n  app:\n    image: {HEALTH_BASE}\n    command: [sleep, '60']\n"
    write_file(compose, text, mode=0o644, owner=AGENT, group=AGENT)
    up = f"docker compose -f {compose} up -d"
    result = stack.ssh(up, timeout=120)  # control: no floors, the image's 1 ms interval reaches the engine
    assert result.returncode == 0, result.stderr
    [made] = project_containers(stack, "ai-rl-health")
    interval = stack.docker("inspect", "--format", "{{.Config.Healthcheck.Interval}}", made).stdout
    assert interval.strip() == "1ms", interval
    remove_project(stack, "ai-rl-health")
    with policy_extended(FLOORS):
        since = audit_offset()
        assert_refused(stack, stack.ssh(up, timeout=120), since, rule="limit-health")
        assert project_containers(stack, "ai-rl-health") == []
        given = text + "    healthcheck:\n      interval: 5s\n"
        write_file(compose, given, mode=0o644, owner=AGENT, group=AGENT)
        allowed = stack.ssh(up, timeout=120)  # the service's own interval at the floor
        assert allowed.returncode == 0, allowed.stderr


def test_a_built_services_base_image_labels_follow_the_label_rules(stack: Stack, project: Path) -> None:
    write_file(project / "Dockerfile", f"FROM {LABEL_BASE}\n", mode=0o644, owner=AGENT, group=AGENT)
    compose = project / "based.yaml"
    text = "name: ai-rl-based\nservices:\n  app:\n    build: .\n    command: [sleep, '60']\n"
    write_file(compose, text, mode=0o644, owner=AGENT, group=AGENT)
    # control: the defence off (root's compose of the same file): the container carries the label
    stack.docker("compose", "-f", str(compose), "up", "-d", check=True)
    [made] = project_containers(stack, "ai-rl-based")
    labels = stack.docker("inspect", "--format", '{{index .Config.Labels "traefik.enable"}}', made).stdout
    assert labels.strip() == "true", labels
    remove_project(stack, "ai-rl-based")
    stack.docker("image", "rm", "-f", "ai-rl-based-app", check=False)
    since = audit_offset()
    assert_refused(stack, stack.ssh(f"docker compose -f {compose} up -d", timeout=240), since,
                   rule="refused-label")
    assert project_containers(stack, "ai-rl-based") == []


def interval_of(stack: Stack, container: str) -> str:
    return stack.docker("inspect", "--format", "{{.Config.Healthcheck.Interval}}", container).stdout.strip()


def test_a_service_built_in_the_same_command_has_its_healthcheck_checked(stack: Stack, project: Path) -> None:
    """compose up of a service whose own Dockerfile says HEALTHCHECK --interval=1ms: the image does
    not exist when the CLI layer decides, and layout (c) let it through (the proxy checks the create
    in a and b). Now the CLI layer reads the HEALTHCHECK from the Dockerfile."""
    write_file(project / "Dockerfile", FAST_DOCKERFILE, mode=0o644, owner=AGENT, group=AGENT)
    compose = project / "built.yaml"
    text = "name: ai-rl-built\nservices:\n  app:\n    build: .\n    command: [sleep, '60']\n"
    write_file(compose, text, mode=0o644, owner=AGENT, group=AGENT)
    up = f"docker compose -f {compose} up -d"
    result = stack.ssh(up, timeout=240)  # control: no floors, the Dockerfile's 1 ms interval runs
    assert result.returncode == 0, result.stderr
    [made] = project_containers(stack, "ai-rl-built")
    assert interval_of(stack, made) == "1ms"
    remove_project(stack, "ai-rl-built")
    stack.docker("image", "rm", "-f", "ai-rl-built-app", check=False)  # so that up builds it again
    with policy_extended(FLOORS):
        since = audit_offset()
        assert_refused(stack, stack.ssh(up, timeout=240), since, rule="limit-health")
        assert project_containers(stack, "ai-rl-built") == []
        given = text + "    healthcheck:\n      interval: 5s\n"
        write_file(compose, given, mode=0o644, owner=AGENT, group=AGENT)
        allowed = stack.ssh(up, timeout=240)  # the service's own interval at the floor
        assert allowed.returncode == 0, allowed.stderr
        [made] = project_containers(stack, "ai-rl-built")
        assert interval_of(stack, made) == "5s"



def test_a_built_services_existing_image_has_its_healthcheck_checked(stack: Stack, project: Path) -> None:
    """The agent builds ai-rl-stale-app (compose's name for service app of project ai-rl-stale)
    from a Dockerfile with HEALTHCHECK --interval=1ms, then `compose up` of a clean Dockerfile:
    compose finds the image and runs it without building. Control: no floors, the 1 ms interval
    runs. With floors: refused; `compose up --build` builds the clean one and runs."""
    stale = project / "stale"
    write_file(stale / "Dockerfile", FAST_DOCKERFILE, mode=0o644, owner=AGENT, group=AGENT)
    built = stack.ssh(f"docker build -q -t ai-rl-stale-app {stale}", timeout=240)
    assert built.returncode == 0, built.stderr
    write_file(project / "Dockerfile", f"FROM {IMAGE}\n", mode=0o644, owner=AGENT, group=AGENT)
    compose = project / "stale.yaml"
    text = "name: ai-rl-stale\nservices:\n  app:\n    build: .\n    command: [sleep, '60']\n"
    write_file(compose, text, mode=0o644, owner=AGENT, group=AGENT)
    up = f"docker compose -f {compose} up -d"
    result = stack.ssh(up, timeout=240)  # control: no floors, compose runs the image it found
    assert result.returncode == 0, result.stderr
    [made] = project_containers(stack, "ai-rl-stale")
    assert interval_of(stack, made) == "1ms"
    remove_project(stack, "ai-rl-stale")
    with policy_extended(FLOORS):
        since = audit_offset()
        assert_refused(stack, stack.ssh(up, timeout=240), since, rule="limit-health")
        assert project_containers(stack, "ai-rl-stale") == []
        rebuilt = stack.ssh(up + " --build", timeout=240)  # the clean Dockerfile, built now
        assert rebuilt.returncode == 0, rebuilt.stderr
        [made] = project_containers(stack, "ai-rl-stale")
        health = stack.docker("inspect", "--format", "{{json .Config.Healthcheck}}", made).stdout.strip()
        assert health == "null", health


def test_a_built_services_existing_image_has_its_labels_checked(stack: Stack, project: Path) -> None:
    """ai-rl-relabel-app (compose's name for service app of project ai-rl-relabel), the agent's
    own, is on the engine with LABEL traefik.enable=true; `compose up` of a clean Dockerfile runs
    it without building. Control: root's compose up of the agent's very file (the defence off):
    the container carries the label. The agent's: refused (rule refused-label)."""
    root_built(stack, "ai-rl-relabel-app", f"FROM {LABEL_BASE}\nLABEL gatekeeper.owner=default\n")
    ident = stack.docker("image", "inspect", "--format", "{{.Id}}", "ai-rl-relabel-app").stdout.strip()
    record = record_agent_build(ident)  # the agent's own, as after its build (gatekeeper.build_records)
    write_file(project / "Dockerfile", f"FROM {IMAGE}\n", mode=0o644, owner=AGENT, group=AGENT)
    compose = project / "relabel.yaml"
    text = "name: ai-rl-relabel\nservices:\n  app:\n    build: .\n    command: [sleep, '60']\n"
    write_file(compose, text, mode=0o644, owner=AGENT, group=AGENT)
    stack.docker("compose", "-f", str(compose), "up", "-d", check=True)
    [made] = project_containers(stack, "ai-rl-relabel")
    labels = stack.docker("inspect", "--format", '{{index .Config.Labels "traefik.enable"}}', made).stdout
    assert labels.strip() == "true", labels
    remove_project(stack, "ai-rl-relabel")
    up = f"docker compose -f {compose} up -d"
    since = audit_offset()
    try:
        assert_refused(stack, stack.ssh(up, timeout=240), since, rule="refused-label")
        assert project_containers(stack, "ai-rl-relabel") == []
    finally:
        stack.docker("volume", "rm", record, check=False)


def test_a_built_service_does_not_re_point_the_operators_image_of_composes_name(
        stack: Stack, project: Path) -> None:
    """compose builds a service without image: as <project>-<service>. The operator's image of
    that name (not lent: [images] shared without ai-* here) would be re-pointed at the agent's
    build, and the operator's next compose up would run it. Refused (rule foreign-tag); control:
    a project whose name is free builds, and the operator's tag still names its own image."""
    stack.docker("tag", LABEL_BASE, "ai-rl-optag-app", check=True)
    before = stack.docker("image", "inspect", "--format", "{{.Id}}", "ai-rl-optag-app").stdout.strip()
    write_file(project / "Dockerfile", f"FROM {IMAGE}\nLABEL mine=1\n", mode=0o644, owner=AGENT, group=AGENT)
    compose = project / "optag.yaml"
    text = "name: {}\nservices:\n  app:\n    build: .\n    command: [sleep, '60']\n"
    not_lent = '"docker.io/library/gk-*", "docker.io/library/ai-*"'
    try:
        with policy_rewritten(lambda policy: policy.replace(not_lent, '"docker.io/library/gk-*"')):
            write_file(compose, text.format("ai-rl-optfree"), mode=0o644, owner=AGENT, group=AGENT)
            free = stack.ssh(f"docker compose -f {compose} build", timeout=240)  # control: a free name
            assert free.returncode == 0, free.stderr
            write_file(compose, text.format("ai-rl-optag"), mode=0o644, owner=AGENT, group=AGENT)
            since = audit_offset()
            assert_refused(stack, stack.ssh(f"docker compose -f {compose} build", timeout=240), since,
                           rule="foreign-tag")
        after = stack.docker("image", "inspect", "--format", "{{.Id}}", "ai-rl-optag-app").stdout.strip()
        assert after == before, (before, after)
    finally:
        stack.docker("image", "rm", "-f", "ai-rl-optag-app", "ai-rl-optfree-app", check=False)
