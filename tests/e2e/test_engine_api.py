"""Engine questions over the API socket answer exactly what the docker CLI answers
(gatekeeper.engine_api), on the real engine.

For each question the vetters ask (ownership, volume drivers, bind sources),
RealWorld.run_docker (the API path) and RealWorld.run_docker_cli (the pinned
CLI, the reference) are asked the same thing: names, `/names`, full and short
IDs, ambiguous ID prefixes, missing objects, and several words at once (a
`/name` is left to the CLI, and the answer is still compared). The status and
stdout must be equal; on a failure both say the same about each word
("No such ..." for a missing one). The control: the API path really answered
(answer_from_api is not None), so the comparison is not the CLI against itself.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from gatekeeper.engine_api import answer_from_api
from gatekeeper.engine_objects import QUERY_FORMATS
from gatekeeper.vetting.binds import CONTAINER_FORMAT, OWNED_CONTAINERS
from gatekeeper.vetting.limits import HEALTH_FORMAT
from gatekeeper.vetting.ownership import OWNED_LISTINGS
from gatekeeper.vetting.running import RUNNING_FORMAT
from gatekeeper.vetting.volumes import VOLUME_FORMAT
from gatekeeper.worlds import RealWorld

from .stack import DOCKER_CONFIG_DIR, DOCKER_HOST, IMAGE, Stack, docker_client

pytestmark = pytest.mark.e2e

PREFIX = "gk-e2e-api-"
HEALTH_IMAGE = f"{PREFIX}health:1"  # with a HEALTHCHECK (the health floors' question)
# (gatekeeper.created: what the create itself sets on a container; volumes and networks ignore it)
LABELS = ["--label", "gatekeeper.owner=default", "--label", "gatekeeper.created=default",
          "--label", "note=<a&b>"]


@pytest.fixture(scope="module")
def objects(stack: Stack) -> Iterator[dict[str, list[str]]]:
    """Containers (enough that two IDs share a first hex digit), a volume, a network."""
    clean(stack)
    ids: list[str] = []
    for n in range(18):  # 17 IDs over 16 hex digits: two share a first digit
        extra = LABELS if n % 2 else []
        made = stack.docker("create", "--name", f"{PREFIX}{n}", *extra, IMAGE, "true")
        ids.append(made.stdout.strip())
    stack.docker("run", "-d", "--name", f"{PREFIX}running", *LABELS, "--label", "gatekeeper.start=t1",
                 IMAGE, "sleep", "300")
    stack.docker("volume", "create", *LABELS, f"{PREFIX}vol")
    stack.docker("volume", "create", "--driver", "local", "--opt", "type=tmpfs", "--opt", "device=tmpfs",
                 f"{PREFIX}tmpvol")
    net = stack.docker("network", "create", *LABELS, f"{PREFIX}net").stdout.strip()
    image = stack.docker("image", "inspect", "--format", "{{.Id}}", IMAGE).stdout.strip()
    with tempfile.TemporaryDirectory() as context:
        (Path(context) / "Dockerfile").write_text(
            f"FROM {IMAGE}\nHEALTHCHECK --interval=7s --timeout=3s --retries=2 CMD true\n")
        stack.docker("build", "-q", "-t", HEALTH_IMAGE, context)
    yield {"ids": ids, "net": [net], "image": [image]}
    clean(stack)


def clean(stack: Stack) -> None:
    for n in [*range(18), "running"]:
        stack.docker("rm", "-f", f"{PREFIX}{n}", check=False)
    stack.docker("volume", "rm", f"{PREFIX}vol", f"{PREFIX}tmpvol", check=False)
    stack.docker("network", "rm", f"{PREFIX}net", check=False)
    stack.docker("image", "rm", "-f", HEALTH_IMAGE, check=False)


def ambiguous(ids: list[str]) -> str:
    firsts = [ident[0] for ident in ids]
    return next(digit for digit in firsts if firsts.count(digit) > 1)


def questions(objects: dict[str, list[str]]) -> list[tuple[str, str, list[str]]]:
    ids, net, image = objects["ids"], objects["net"][0], objects["image"][0]
    container, image_q = QUERY_FORMATS["container"], QUERY_FORMATS["image"]
    return [
        ("container", container, [f"{PREFIX}1"]),
        ("container", container, [f"/{PREFIX}1"]),
        ("container", container, [ids[2]]),
        ("container", container, [ids[3][:12]]),
        ("container", container, [ids[4][:5], f"{PREFIX}5", f"/{PREFIX}6"]),
        ("container", container, [ambiguous(ids)]),
        ("container", container, [f"{PREFIX}missing"]),
        ("container", container, [f"{PREFIX}1", f"{PREFIX}missing", f"{PREFIX}2"]),
        ("container", container, [f"/{ids[1][:12]}"]),  # '/' + ID prefix: a name lookup only
        ("container", CONTAINER_FORMAT, [f"{PREFIX}7", ids[8][:12]]),
        ("container", CONTAINER_FORMAT, [f"{PREFIX}7", f"{PREFIX}missing"]),
        ("container", "{{.State.Running}}", [f"{PREFIX}running", f"{PREFIX}1"]),
        ("container", "{{.State.Running}}", [f"{PREFIX}running", f"{PREFIX}missing"]),
        ("image", image_q, [IMAGE]),
        ("image", image_q, ["gk-busybox"]),
        ("image", image_q, [image]),
        ("image", image_q, [image.removeprefix("sha256:")[:12]]),
        ("image", image_q, ["gk-no-such-image:1"]),
        ("image", HEALTH_FORMAT, [HEALTH_IMAGE]),
        ("image", HEALTH_FORMAT, [IMAGE, HEALTH_IMAGE]),
        ("image", HEALTH_FORMAT, ["gk-no-such-image:1"]),
        ("volume", QUERY_FORMATS["volume"], [f"{PREFIX}vol"]),
        ("volume", QUERY_FORMATS["volume"], [f"{PREFIX}vol", f"{PREFIX}nothing"]),
        ("volume", VOLUME_FORMAT, [f"{PREFIX}vol", f"{PREFIX}tmpvol"]),
        ("network", QUERY_FORMATS["network"], [f"{PREFIX}net"]),
        ("network", QUERY_FORMATS["network"], [net]),
        ("network", QUERY_FORMATS["network"], [net[:12]]),
        ("network", QUERY_FORMATS["network"], ["bridge", f"{PREFIX}nonet"]),
    ]


def policy() -> SimpleNamespace:
    return SimpleNamespace(binary=str(docker_client()), host=DOCKER_HOST, workdir="/",
                           config_dir=str(DOCKER_CONFIG_DIR), state_dir="/run/gk-e2e/state",
                           settings={})  # no [proxy]: the engine's own socket


def comparable(template: str, out: bytes) -> object:
    """`{{json .}}` is the CLI's Go structs re-encoded: compare the fields readers take.
    Blank lines are dropped: for an ambiguous prefix the CLI prints one (status 1)."""
    lines = [line for line in out.splitlines() if line.strip()]
    if template == HEALTH_FORMAT:  # the CLI's struct order against sorted keys: the same JSON
        return [json.loads(line) for line in lines]
    if template != CONTAINER_FORMAT:
        return lines
    objects = [json.loads(line) for line in lines]
    return [(o["Id"], o["Name"], o.get("Mounts"), (o.get("HostConfig") or {}).get("Binds")) for o in objects]


def failures(err: bytes) -> list[str]:
    """Per failed word: the kind of failure (not the CLI's exact wording)."""
    lines = [line for line in err.decode().splitlines() if line.strip()]
    return ["missing" if "No such" in line else "ambiguous" if "multiple" in line.lower() else line
            for line in lines]


def test_api_answers_equal_the_cli(objects: dict[str, list[str]]) -> None:
    world, pol = RealWorld(), policy()
    for kind, template, words in questions(objects):
        args = [kind, "inspect", "--format", template, "--", *words]
        # control: the API path answered, so this is not the CLI compared with itself
        # ('/name' words are left to the CLI: the engine does not route '//name')
        answered = answer_from_api(pol.host, args, 10.0)
        assert (answered is None) == any(w.startswith("/") for w in words), (kind, words, answered)
        api, cli = world.run_docker(pol, args), world.run_docker_cli(pol, args)
        what = (kind, template, words, api, cli)
        assert api[0] == cli[0], what
        assert comparable(template, api[1]) == comparable(template, cli[1]), what
        assert failures(api[2]) == failures(cli[2]), what


OWNER = ("--filter", "label=gatekeeper.owner=default")
LISTINGS = [
    OWNED_CONTAINERS,
    ["container", "ls", "-q"],
    ["container", "ls", "-a", "-q"],
    ["container", "ls", "--no-trunc", *OWNER, "--format", RUNNING_FORMAT],
    ["container", "ls", "-a", "-q", "--no-trunc", *OWNER, "--filter", "label=note"],
    ["container", "ls", "-a", "-q", "--no-trunc", "--filter", "label=com.docker.compose.project=gk-none"],
    ["container", "ls", "-a", "--format", '{{.ID}}\t{{.Names}}\t{{.Label "gatekeeper.owner"}}|'],
    ["container", "ls", "-a", "--no-trunc", "--format", "{{.Names}}"],
    *([*listing[:-2], *OWNER, *listing[-2:]] for kind, listing in OWNED_LISTINGS.items() if kind != "image"),
    ["volume", "ls", "--format", "{{.Name}}"],
    ["volume", "ls", "-q"],
    ["volume", "ls", *OWNER, "--format", '{{.Label "note"}}|'],
    ["network", "ls", "--format", "{{.Name}}"],
    ["network", "ls", "-q"],
    ["network", "ls", "-q", "--no-trunc"],
]


def test_api_listings_equal_the_cli(objects: dict[str, list[str]]) -> None:
    """Containers in the engine's order, as the CLI prints them; volumes and networks as
    sets (the CLI sorts them by name, every caller reads them as sets)."""
    world, pol = RealWorld(), policy()
    for args in LISTINGS:
        assert answer_from_api(pol.host, args, 10.0) is not None, args  # control: the API answered
        api, cli = world.run_docker(pol, args), world.run_docker_cli(pol, args)
        assert api[0] == cli[0] == 0, (args, api, cli)
        api_lines, cli_lines = api[1].decode().splitlines(), cli[1].decode().splitlines()
        if args[0] != "container":
            api_lines, cli_lines = sorted(api_lines), sorted(cli_lines)
        assert api_lines == cli_lines, (args, api, cli)
        assert len(cli_lines) > 0 or "gk-none" in " ".join(args), args  # something was listed


def test_the_health_question_reads_the_images_healthcheck(objects: dict[str, list[str]]) -> None:
    """Control for the health rows above: the API path's answer is the image's HEALTHCHECK
    (not `null` on both sides), read as gatekeeper.vetting.limits reads it."""
    args = ["image", "inspect", "--format", HEALTH_FORMAT, "--", HEALTH_IMAGE]
    answered = answer_from_api(DOCKER_HOST, args, 10.0)
    assert answered is not None and answered[0] == 0, answered
    health = json.loads(answered[1])
    assert (health["Interval"], health["Timeout"], health["Retries"]) == (7 * 10**9, 3 * 10**9, 2)
