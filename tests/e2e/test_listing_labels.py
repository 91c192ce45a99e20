"""Labels in listings, through real ssh and the real engine, in all three layouts.

The operator's container, volume and network carry a label whose key holds a [redact]
word (`gk-e2e.backup_password=<secret>`). docker's listings print labels only through a
`--format` template (`{{.Labels}}`, `{{.Label "k"}}`, `{{json .}}`, `{{.}}`), which runs in
the docker CLI on what the engine answered: the CLI layer lists from gatekeeper's
redacting stand-in (gatekeeper.redacting_engine), the proxy answers the lists redacted
(gatekeeper.proxy.vet.redact_listing). Control in the same run: root's listing straight at
the engine prints the secret; the agent's own container keeps its label values.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .stack import AGENT, AGENT_HOME, IMAGE, Stack, write_file

pytestmark = pytest.mark.e2e

NAME = "gk-e2e-listed"
SECRET, MINE = "gk-e2e-listed-secret", "gk-e2e-listed-mine"
OWN = "ai-e2e-listed-mine"  # the agent's container, named within the [names] prefix
LABEL = f"gk-e2e.backup_password={SECRET}"
LISTINGS = [
    ("docker ps -a --format '{{.Names}} {{.Labels}}'", "docker ps -a --format '{{.Labels}}'"),
    ("docker container ls -a --format '{{json .}}'", "docker ps -a --format '{{json .}}'"),
    ("docker ps -a --format '{{.}}'", "docker ps -a --format '{{.}}'"),
    ("docker ps -a --format '{{.Label \"gk-e2e.backup_password\"}}'",
     "docker ps -a --format '{{.Label \"gk-e2e.backup_password\"}}'"),
    ("docker volume ls --format '{{.Name}} {{.Labels}}'", "docker volume ls --format '{{.Labels}}'"),
    ("docker network ls --format '{{json .Labels}}'", "docker network ls --format '{{json .Labels}}'"),
    # The disk usage lists every container and volume with its labels (GET /system/df).
    ("docker system df -v --format '{{json .}}'", "docker system df -v --format '{{json .}}'"),
    ("docker system df --verbose --format '{{json .Containers}}'",
     "docker system df --verbose --format '{{json .Containers}}'"),
]


@pytest.fixture(scope="module")
def operator(stack: Stack) -> Iterator[None]:
    clean(stack)
    stack.docker("run", "-d", "--name", f"{NAME}-op", "--label", LABEL, IMAGE, "sleep", "600")
    stack.docker("volume", "create", "--label", LABEL, f"{NAME}-op")
    stack.docker("network", "create", "--label", LABEL, f"{NAME}-op")
    yield
    clean(stack)


def clean(stack: Stack) -> None:
    for container in (f"{NAME}-op", OWN):
        stack.docker("rm", "-f", container, check=False)
    stack.docker("volume", "rm", "-f", f"{NAME}-op", check=False)
    stack.docker("network", "rm", f"{NAME}-op", check=False)


def root_listing(stack: Stack, command: str) -> str:
    """The same listing as root straight at the engine (the control)."""
    import shlex

    return stack.docker(*shlex.split(command)[1:]).stdout


@pytest.mark.parametrize(("command", "control"), LISTINGS, ids=[c for c, _ in LISTINGS])
def test_listing_templates_show_the_operators_label_values_redacted(
        stack: Stack, operator: None, command: str, control: str) -> None:
    assert SECRET in root_listing(stack, control)  # control: the defence off, the value shows
    result = stack.ssh(command, timeout=60)
    assert result.returncode == 0, result.stderr
    shown = result.stdout.decode(errors="replace")
    assert SECRET not in shown
    assert "***" in shown


def test_the_agents_own_label_values_are_shown(stack: Stack, operator: None) -> None:
    started = stack.ssh(f"docker run -d --name {OWN} --label gk-e2e.api_token={MINE} {IMAGE} sleep 600")
    assert started.returncode == 0, started.stderr
    result = stack.ssh("docker ps -a --format '{{.Names}} {{.Labels}}'", timeout=60)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.decode(errors="replace").splitlines()
    assert any(line.startswith(f"{OWN} ") and MINE in line for line in lines), lines
    assert not any(SECRET in line for line in lines)


# compose ps lists any project's containers (a read-only listing: no ownership check); in
# layout (c) nothing but the CLI layer's stand-in stands between its template and the labels.
PROJECT = "gk-e2e-listed-proj"
PROJECT_FILE = AGENT_HOME / "work" / "listed" / "compose.yaml"
COMPOSE_PS = [f"ps -a --format {fmt}" for fmt in ("'{{.Labels}}'", "json", "'{{json .}}'")]


@pytest.fixture
def operators_project(stack: Stack, operator: None) -> Iterator[None]:
    """The operator's compose project (root's compose up, its file outside the agent's area), and
    a file of the agent's naming that project."""
    operators_file = stack.workdir / "operators-compose.yaml"
    service = f"  db:\n    image: {IMAGE}\n    command: [sleep, '600']\n"
    operators_file.write_text(f"name: {PROJECT}\nservices:\n{service}    labels:\n      - {LABEL}\n")
    stack.docker("compose", "-f", str(operators_file), "up", "-d", check=True)
    write_file(PROJECT_FILE, f"name: {PROJECT}\nservices:\n{service}", mode=0o644, owner=AGENT, group=AGENT)
    yield
    stack.docker("compose", "-f", str(operators_file), "down", check=False)
    operators_file.unlink(missing_ok=True)
    PROJECT_FILE.unlink(missing_ok=True)
    PROJECT_FILE.parent.rmdir()


@pytest.mark.parametrize("listing", COMPOSE_PS)
def test_compose_ps_templates_show_the_operators_label_values_redacted(
        stack: Stack, operators_project: None, listing: str) -> None:
    import shlex

    root = stack.docker("compose", "-f", str(PROJECT_FILE), *shlex.split(listing))
    assert SECRET in root.stdout, root.stderr  # control: the same listing unredacted prints the value
    result = stack.ssh(f"docker compose -f {PROJECT_FILE} {listing}", timeout=90)
    assert result.returncode == 0, result.stderr
    shown = result.stdout.decode(errors="replace")
    assert "gk-e2e.backup_password" in shown, shown  # the operator's container is listed
    assert SECRET not in shown
    assert "***" in shown
