# Commands read best on one line each; such lines run long.
# ruff: noqa: E501

"""Docker's shared namespaces through real ssh and the real engine (gatekeeper.vetting.namespaces,
gatekeeper.vetting.volumes, gatekeeper.steps).

The operator (root, straight on the engine) owns a volume holding a secret, a tag
`ai-op-image:15`, a network with a service on it, and a container whose environment
holds a token. Each attack is first run by root directly against the engine,
bypassing gatekeeper (the control: it works, so the test can fail); then the agent
tries it through ssh in every spelling, is refused (exit 77, the rule named; in layout (b)
of tests/e2e/conftest.py THREE_WAY the proxy's 403 and its "api" record, same rule), and
root checks nothing moved. Legit work beside it: new named volumes are created,
labelled and pruned by the agent; compose projects with their own networks and
volumes run; an image the agent pulled (recorded by gatekeeper.steps) can be
removed by it. The stack has no registry, so the pull itself is root's `docker
tag`; the record around it is made by gatekeeper's own code against the engine.

Every name here starts with the [names] prefix (the stack's default, "ai-"), the operator's
too: an operator's object inside the agent's part of the namespace is what these rules
still guard under the prefix, and each attack meets its own rule (foreign-volume,
foreign-tag, ...), never name-prefix first.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from .stack import (
    AGENT,
    CLI_ALONE,
    DOCKER_HOST,
    IMAGE,
    POLICY,
    PROXY_ALONE,
    Stack,
    audit_offset,
    policy_extended,
    write_file,
)
from .test_attack_chains import assert_refused

pytestmark = pytest.mark.e2e

OWNER = "gatekeeper.owner"
NAME = "ai-e2e-ns"
OPVOL, OPNET, OPDB, OPTAG = f"{NAME}-opvol", f"{NAME}-opnet", f"{NAME}-opdb", "ai-op-image:15"
SECRET, TOKEN = "gk-e2e-volume-secret", "gk-e2e-env-token"
WORK = Path("/home/ai-worker/work/ns")
COMPOSE_UP = "docker compose -f {file} up -d"

CONTAINERS = (OPDB, f"{NAME}-mine", f"{NAME}-posing", f"{NAME}-prodweb", f"{NAME}-ctl", "ai-ns-app-1", "ai-ns-mine-app-1")
VOLUMES = (OPVOL, f"{NAME}-new", f"{NAME}-new2", "ai-ns-mine_data")
NETWORKS = (OPNET, "ai-ns-mine_default", "ai-ns_default")
IMAGES = (OPTAG, f"{NAME}-mine:1", f"{NAME}-pulled:1", f"{NAME}-ctl:1")


def compose_file(name: str, text: str) -> str:
    path = WORK / name / "compose.yaml"
    write_file(path, text, mode=0o644, owner=AGENT, group=AGENT)
    for directory in (path.parent, WORK):
        shutil.chown(directory, AGENT, AGENT)
    return str(path)


def clean(stack: Stack) -> None:
    for container in CONTAINERS:
        stack.docker("rm", "-f", "-v", container, check=False)
    for image in IMAGES:
        stack.docker("rmi", "-f", image, check=False)
    for volume in VOLUMES:
        stack.docker("volume", "rm", "-f", volume, check=False)
    records = stack.docker("volume", "ls", "-q", "--filter", "label=gatekeeper.pulled-by", check=False)
    for volume in records.stdout.split():
        stack.docker("volume", "rm", "-f", volume, check=False)
    for network in NETWORKS:
        stack.docker("network", "rm", network, check=False)


@pytest.fixture(scope="module")
def operator(stack: Stack) -> Iterator[str]:
    """The operator's objects, made by root; yields the ID of ai-op-image:15."""
    clean(stack)
    stack.docker("volume", "create", OPVOL)
    stack.docker("run", "--rm", "-v", f"{OPVOL}:/d", IMAGE, "sh", "-c", f"echo {SECRET} > /d/secret")
    stack.docker("tag", IMAGE, OPTAG)
    stack.docker("network", "create", OPNET)
    stack.docker("run", "-d", "--name", OPDB, "-e", f"DB_TOKEN={TOKEN}", IMAGE, "sleep", "600")
    stack.docker("network", "connect", "--alias", "db", OPNET, OPDB)
    yield stack.docker("image", "inspect", "--format", "{{.Id}}", OPTAG).stdout.strip()
    clean(stack)
    shutil.rmtree(WORK, ignore_errors=True)


def denied(stack: Stack, command: str, rule: str) -> bytes:
    """Refused by the layout's first layer with `rule` (in layout (b) by the proxy)."""
    since = audit_offset()
    result = stack.ssh(command, timeout=120)
    assert_refused(stack, result, since, rule=rule)
    return result.stdout + result.stderr


def allowed(stack: Stack, command: str) -> bytes:
    result = stack.ssh(command, timeout=120)
    assert result.returncode == 0, f"{command}: {result.stderr.decode()}"
    return result.stdout


def label(stack: Stack, kind: str, name: str, key: str = OWNER) -> str:
    path = ".Config.Labels" if kind in ("container", "image") else ".Labels"
    template = f'{{{{index {path} "{key}"}}}}'
    return stack.docker(kind, "inspect", "--format", template, name, check=False).stdout.strip()


# ---------------------------------------------------------------- volumes


VOLUME_SPELLINGS = {
    "-v": f"docker run --rm -v {OPVOL}:/d {IMAGE} cat /d/secret",
    "-v :ro": f"docker run --rm -v {OPVOL}:/d:ro {IMAGE} cat /d/secret",
    "--volume=": f"docker run --rm --volume={OPVOL}:/d {IMAGE} cat /d/secret",
    "--mount src=": f"docker run --rm --mount src={OPVOL},dst=/d {IMAGE} cat /d/secret",
    "--mount type=volume,source=": f"docker run --rm --mount type=volume,source={OPVOL},target=/d {IMAGE} cat /d/secret",
    "create, then start": f"docker create --name {NAME}-mine -v {OPVOL}:/d {IMAGE} cat /d/secret",
}
COMPOSE_VOLUMES = {
    "external: true": f"volumes:\n  v:\n    external: true\n    name: {OPVOL}\n",
    "named like it": f"volumes:\n  v:\n    name: {OPVOL}\n",
}


def volume_project(volumes: str) -> str:
    return f"services:\n  app:\n    image: {IMAGE}\n    command: cat /d/secret\n    volumes:\n      - type: volume\n        source: v\n        target: /d\n{volumes}"


def test_operator_volume_cannot_be_mounted(stack: Stack, operator: str) -> None:
    control = stack.docker("run", "--rm", "-v", f"{OPVOL}:/d", IMAGE, "cat", "/d/secret")
    assert SECRET in control.stdout  # the mount works: a refusal below is the rule's doing
    for command in VOLUME_SPELLINGS.values():
        assert SECRET.encode() not in denied(stack, command, "foreign-volume")
    for number, volumes in enumerate(COMPOSE_VOLUMES.values()):
        path = compose_file(f"vol-{number}", volume_project(volumes))
        try:
            root_run = stack.docker("compose", "-f", path, "-p", "ai-ns", "up", "--abort-on-container-exit", check=False)
            assert SECRET in root_run.stdout, root_run.stderr  # control: compose mounts it for root
        finally:
            stack.docker("compose", "-f", path, "-p", "ai-ns", "down", check=False)
        out = denied(stack, f"docker compose -f {path} -p ai-ns up", "foreign-volume")
        assert SECRET.encode() not in out
    assert label(stack, "volume", OPVOL) == ""  # still the operator's, unlabelled
    assert stack.docker("run", "--rm", "-v", f"{OPVOL}:/d", IMAGE, "cat", "/d/secret").stdout.strip() == SECRET


def test_new_volume_is_created_labelled_and_prunable(stack: Stack, operator: str) -> None:
    new = f"{NAME}-new"
    allowed(stack, f"docker run --rm -v {new}:/d {IMAGE} sh -c 'echo mine > /d/f'")
    assert label(stack, "volume", new) == "default"
    assert allowed(stack, f"docker run --rm -v {new}:/d {IMAGE} cat /d/f") == b"mine\n"  # now it exists: its own
    allowed(stack, f"docker create --name {NAME}-mine --mount type=volume,src={NAME}-new2,dst=/d {IMAGE}")
    assert label(stack, "volume", f"{NAME}-new2") == "default"
    stack.docker("rm", "-f", f"{NAME}-mine")
    with policy_extended('[commands]\nallowed = ["volume prune", "volume ls"]\n'):
        prune = stack.ssh("docker volume prune -f", timeout=120)
        assert prune.returncode == 0, prune.stderr
        if label(stack, "volume", new):  # an engine of API >= 1.42 prunes named volumes only with --all
            allowed(stack, "docker volume prune -a -f")
    names = stack.docker("volume", "ls", "--format", "{{.Name}}").stdout.split()
    assert new not in names and f"{NAME}-new2" not in names
    assert OPVOL in names  # unused too, and not the agent's: prune left it


def test_compose_project_with_its_own_network_and_volume(stack: Stack, operator: str) -> None:
    text = (f"services:\n  app:\n    image: {IMAGE}\n    command: sh -c 'echo ok > /d/f; sleep 60'\n"
            "    volumes: [\"data:/d\"]\n    networks:\n      default:\n        aliases: [api]\n"
            "volumes:\n  data: {}\n")
    path = compose_file("mine", text)
    try:
        allowed(stack, f"docker compose -f {path} -p ai-ns-mine up -d")
        assert label(stack, "volume", "ai-ns-mine_data") == "default"
        assert label(stack, "network", "ai-ns-mine_default") == "default"
        allowed(stack, f"docker compose -f {path} -p ai-ns-mine up -d")  # again: its own network and volume exist
    finally:
        down = stack.ssh(f"docker compose -f {path} -p ai-ns-mine down -v", timeout=120)
    assert down.returncode == 0, down.stderr
    assert "ai-ns-mine_data" not in stack.docker("volume", "ls", "--format", "{{.Name}}").stdout.split()


def test_agent_cannot_forge_a_pull_record(stack: Stack, operator: str) -> None:
    denied(stack, f"docker run --rm -v gatekeeper-pull-{'0' * 40}:/d {IMAGE} true", "foreign-volume")
    denied(stack, f"docker run --rm --mount type=volume,src={NAME}-new,dst=/d,"
                  f"volume-label=gatekeeper.pulled-by=default {IMAGE} true", "reserved-label")


# ---------------------------------------------------------------- image tags


def test_operator_tag_is_not_moved(stack: Stack, operator: str) -> None:
    context = WORK / "build"
    write_file(context / "Dockerfile", f"FROM {IMAGE}\nLABEL gk-e2e-moved=yes\n", mode=0o644, owner=AGENT, group=AGENT)
    control = stack.docker("build", "-t", f"{NAME}-ctl:1", str(context))  # the builder works for root
    assert control.returncode == 0
    for command in (f"docker build -t {OPTAG} {context}", f"docker build --tag={OPTAG} {context}",
                    f"docker build -t {NAME}-ok:1 -t docker.io/library/{OPTAG} {context}",
                    f"docker image build --tag {OPTAG} {context}"):
        denied(stack, command, "foreign-tag")
    text = f"services:\n  app:\n    image: {OPTAG}\n    build: {{context: {context}}}\n"
    path = compose_file("tag", text)
    for sub in ("build", "up -d --build", "create"):
        if stack.mode == PROXY_ALONE and sub == "create":
            # (b): compose builds only a missing image, so it creates a container of the operator's
            # image (allowed: running an image moves no tag); the tag is checked below
            made = stack.ssh(f"docker compose -f {path} -p ai-ns {sub}", timeout=120)
            assert made.returncode == 0, made.stderr
            stack.docker("rm", "-f", "ai-ns-app-1")
            continue
        denied(stack, f"docker compose -f {path} -p ai-ns {sub}", "foreign-tag")
    denied(stack, f"docker pull {OPTAG}", "foreign-tag")  # refused before it reaches any registry
    assert stack.docker("image", "inspect", "--format", "{{.Id}}", OPTAG).stdout.strip() == operator
    assert label(stack, "image", OPTAG, "gk-e2e-moved") == ""
    # legit: a tag of its own builds, is labelled, and is the agent's to remove
    allowed(stack, f"docker build -t {NAME}-mine:1 {context}")
    assert label(stack, "image", f"{NAME}-mine:1") == "default"
    allowed(stack, f"docker build -t {NAME}-mine:1 {context}")  # rebuilding its own tag
    allowed(stack, f"docker rmi {NAME}-mine:1")


def test_agent_can_remove_what_it_pulled(stack: Stack, operator: str) -> None:
    """The pull is root's `docker tag` (no registry here); the record around it is
    gatekeeper.steps, run against the engine with the deployed policy."""
    from gatekeeper.policy import load_policy
    from gatekeeper.steps import run_afterwards, snapshot_before

    pulled, context = f"{NAME}-pulled:1", WORK / "pulled"
    write_file(context / "Dockerfile", f"FROM {IMAGE}\nLABEL gk-e2e-pulled=yes\n", mode=0o644)
    stack.docker("build", "-t", pulled, str(context))
    denied(stack, f"docker rmi {pulled}", "scope-owned")  # control: no record, not the agent's
    stack.docker("rmi", pulled)
    policy = load_policy(str(POLICY))
    # On the engine's socket as the CLI layer alone makes it: behind the proxy (layouts a, b) the
    # proxy refuses gatekeeper's record to anyone but itself (docs/operating.md: pulls are not yet
    # recorded there). What this checks is that both layers' rmi honour a record.
    policy.host = DOCKER_HOST
    plan = [("pull-record", pulled, "new")]
    before = snapshot_before(policy, plan)
    stack.docker("build", "-t", pulled, str(context))  # "the pull": the image arrives under this tag only
    assert run_afterwards(policy, plan, before) == []
    stack.docker("tag", pulled, f"{NAME}-ctl:1")  # the operator tags it too:
    denied(stack, f"docker rmi {pulled}", "scope-owned")  # then it is not the agent's alone
    denied(stack, f"docker rmi {NAME}-ctl:1", "scope-owned")
    stack.docker("rmi", f"{NAME}-ctl:1")
    # ... and no longer the agent's at all: the tag moved the image's LastTagTime, which the
    # record pins (gatekeeper.owner.PULLED_TAG_TIME; tests/e2e/test_pull_pins.py)
    denied(stack, f"docker rmi {pulled}", "scope-owned")
    plan = [("pull-record", pulled, "owned")]  # the agent's own pull of the tag again: pinned anew
    assert run_afterwards(policy, plan, snapshot_before(policy, plan)) == []
    allowed(stack, f"docker rmi {pulled}")
    assert stack.docker("image", "inspect", pulled, check=False).returncode != 0
    records = stack.docker("volume", "ls", "-q", "--filter", "label=gatekeeper.pulled-by=default").stdout.split()
    if stack.mode == CLI_ALONE:
        assert records == []  # forgotten with the image
    elif records:  # behind the proxy the CLI layer's forget step is refused too (docs/operating.md)
        stack.docker("volume", "rm", *records)


# ---------------------------------------------------------------- networks and links


NETWORK_SPELLINGS = {
    "--network": f"docker run --rm --network {OPNET} {IMAGE} nslookup db",
    "--network=": f"docker run --rm --network={OPNET} {IMAGE} true",
    "--net": f"docker create --name {NAME}-mine --net {OPNET} {IMAGE}",
    "long syntax": f"docker run --rm --network name={OPNET} {IMAGE} true",
    "alias": f"docker run -d --name {NAME}-mine --network {OPNET} --network-alias db {IMAGE} sleep 60",
    "alias in the long syntax": f"docker run -d --name {NAME}-mine --network name={OPNET},alias=db {IMAGE} sleep 60",
}


def attached(stack: Stack) -> list[str]:
    template = "{{range .Containers}}{{.Name}} {{end}}"
    return stack.docker("network", "inspect", "--format", template, OPNET).stdout.split()


def test_operator_network_is_not_joined(stack: Stack, operator: str) -> None:
    control = stack.docker("run", "-d", "--name", f"{NAME}-ctl", "--network", OPNET, "--network-alias", "db",
                           IMAGE, "sleep", "60")
    assert control.returncode == 0 and f"{NAME}-ctl" in attached(stack)  # joining works for root
    stack.docker("rm", "-f", f"{NAME}-ctl")
    for command in NETWORK_SPELLINGS.values():
        denied(stack, command, "foreign-network")
    external = f"services:\n  app:\n    image: {IMAGE}\n    command: sleep 60\n    networks: [op]\n" \
               f"networks:\n  op:\n    external: true\n    name: {OPNET}\n"
    denied(stack, f"docker compose -f {compose_file('net', external)} -p ai-ns up -d", "foreign-network")
    assert attached(stack) == [OPDB]
    with policy_extended(f'[shared]\nnetworks = ["{OPNET}"]\n'):
        allowed(stack, f"docker run --rm --network {OPNET} {IMAGE} true")  # shared: joined
        denied(stack, NETWORK_SPELLINGS["alias"], "foreign-network")  # but no alias taken there


def test_link_does_not_copy_the_operators_environment(stack: Stack, operator: str) -> None:
    control = stack.docker("run", "--rm", "--link", f"{OPDB}:db", IMAGE, "env")
    assert TOKEN in control.stdout  # docker copies the linked container's environment
    for command in (f"docker run --rm --link {OPDB}:db {IMAGE} env", f"docker run --rm --link={OPDB} {IMAGE} env",
                    f"docker run --rm --link /{OPDB}:x {IMAGE} env"):
        assert TOKEN.encode() not in denied(stack, command, "foreign-link")
    text = f"services:\n  app:\n    image: {IMAGE}\n    command: env\n    external_links: [\"{OPDB}:db\"]\n"
    out = denied(stack, f"docker compose -f {compose_file('link', text)} -p ai-ns up", "foreign-link")
    assert TOKEN.encode() not in out


# ---------------------------------------------------------------- labels


def project_members(stack: Stack, project: str) -> list[str]:
    listing = stack.docker("ps", "-a", "--filter", f"label=com.docker.compose.project={project}", "--format", "{{.Names}}")
    return sorted(listing.stdout.split())


def test_posing_as_a_compose_service_is_refused(stack: Stack, operator: str) -> None:
    """The operator's compose project ai-ns-prod has a container (root's); the agent's container
    posing as its service db would be one of it for the operator's compose (down, exec, logs)."""
    project = ["--label", "com.docker.compose.project=ai-ns-prod", "--label", "com.docker.compose.oneoff=False"]
    posing = [*project, "--label", "com.docker.compose.service=db"]
    stack.docker("run", "-d", "--name", f"{NAME}-prodweb", *project, "--label", "com.docker.compose.service=web",
                 IMAGE, "sleep", "600")
    stack.docker("run", "-d", "--name", f"{NAME}-posing", *posing, IMAGE, "sleep", "60")
    members = [f"{NAME}-posing", f"{NAME}-prodweb"]
    assert project_members(stack, "ai-ns-prod") == members  # control: run directly, the container joins the project
    stack.docker("rm", "-f", f"{NAME}-posing")
    denied(stack, f"docker run -d --name {NAME}-posing {' '.join(posing)} {IMAGE} sleep 60", "refused-label")
    denied(stack, f"docker run -d -l 'traefik.http.routers.x.rule=Host(shop)' {IMAGE} sleep 60", "refused-label")
    labels = WORK / "labels"
    write_file(labels, "team=x\ncom.docker.compose.project=ai-ns-prod\n", mode=0o644, owner=AGENT, group=AGENT)
    denied(stack, f"docker run -d --label-file {labels} {IMAGE} sleep 60", "refused-label")
    write_file(labels, "\ufeffgatekeeper.owner=root\n", mode=0o644, owner=AGENT, group=AGENT)
    denied(stack, f"docker run -d --label-file {labels} {IMAGE} sleep 60", "reserved-label")
    text = (f"services:\n  app:\n    image: {IMAGE}\n    command: sleep 60\n"
            "    labels:\n      com.docker.compose.project: ai-ns-prod\n")
    path = compose_file("labelled", text)
    if stack.mode != PROXY_ALONE:
        denied(stack, f"docker compose -f {path} -p ai-ns up -d", "refused-label")
    else:  # (b): compose labels the container with its own project (-p ai-ns): no posing reaches the engine
        up = stack.ssh(f"docker compose -f {path} -p ai-ns up -d", timeout=120)
        try:
            assert up.returncode == 0, up.stderr
            assert label(stack, "container", "ai-ns-app-1", "com.docker.compose.project") == "ai-ns"
        finally:
            stack.ssh(f"docker compose -f {path} -p ai-ns down", timeout=120)
    assert project_members(stack, "ai-ns-prod") == [f"{NAME}-prodweb"]


def test_top_takes_no_ps_arguments(stack: Stack, operator: str) -> None:
    allowed(stack, f"docker run -d --name {NAME}-mine {IMAGE} sleep 60")
    allowed(stack, f"docker top {NAME}-mine")
    denied(stack, f"docker top {NAME}-mine -o pid,args", "top-arguments")
