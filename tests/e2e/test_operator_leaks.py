"""What the operator does beside the agent stays the operator's: red team, session 4.

Each attack runs in every layout (a: CLI layer + proxy, b: proxy alone, c: CLI layer
alone), so each layer alone is shown to hold. Its control runs in the same test: the
same request sent by root to the bare engine socket (the defence off) shows the
effect the check is about; then the agent sends it through ssh.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .stack import AGENT, AGENT_HOME, BRIDGE, IMAGE, PROXY_ALONE, Stack, names_prefix

pytestmark = pytest.mark.e2e

PREFIX = "gk-rt4-"
OURS = "ai-"  # the names the agent gives start with the stack's [names] prefix (the default)
OPERATOR = f"{PREFIX}op"
OWN = f"{OURS}{PREFIX}own"
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


HEIR_IMAGE = f"{OURS}{PREFIX}heir:1"
HEIR_CONTEXT = AGENT_HOME / "work" / "gk-rt4-heir"


@pytest.fixture
def agents_image(stack: Stack) -> Iterator[str]:
    """An image the agent built (labelled gatekeeper.owner=default, which containers inherit)."""
    HEIR_CONTEXT.mkdir(parents=True, exist_ok=True)
    (HEIR_CONTEXT / "Dockerfile").write_text(f"FROM {IMAGE}\nLABEL app=heir\n")
    for path in (HEIR_CONTEXT, HEIR_CONTEXT / "Dockerfile"):
        shutil.chown(path, AGENT, AGENT)
    built = stack.ssh(f"docker build -q -t {HEIR_IMAGE} {HEIR_CONTEXT}", timeout=120)
    assert built.returncode == 0, built.stderr
    yield HEIR_IMAGE
    remove_ours(stack)
    stack.docker("rmi", "-f", HEIR_IMAGE, check=False)
    shutil.rmtree(HEIR_CONTEXT, ignore_errors=True)


@pytest.mark.usefixtures("clean")
def test_events_of_the_operators_container_of_the_agents_image_stay_out(
        stack: Stack, agents_image: str) -> None:
    """The operator's container of an image the agent built inherits gatekeeper.owner (never
    gatekeeper.created): its events, with the operator's exec command lines, must not reach
    the agent's `docker events` (redteam redcli for the CLI layer, redapi for the proxy)."""
    since = int(time.time()) - 1
    stack.docker("run", "-d", "--name", OPERATOR, agents_image, "sleep", "600")
    stack.docker("exec", OPERATOR, "sh", "-c", f"true {SECRET}")
    until = int(time.time()) + 1
    window = ("--since", str(since), "--until", str(until))
    # Control: the old filter (the owner label alone) on the bare engine shows the exec line.
    control = stack.docker("events", *window, "--filter", "label=gatekeeper.owner=default").stdout
    assert SECRET in control, control
    seen = stack.ssh(f"docker events --since {since} --until {until}")
    assert seen.returncode == 0, seen.stderr
    assert SECRET not in seen.stdout.decode(), seen.stdout
    # Its own image events (the build's tag) stay its own with a type filter naming images alone.
    images = stack.ssh(f"docker events --since {since - 300} --until {until} --filter type=image")
    assert images.returncode == 0, images.stderr


# Names taken first: the operator's later work lands in the agent's object. The control runs
# with the name rule off ([names] prefix = ""), the defence under the stack's policy, the
# embedded default ("ai-": the agent gives only names starting with it).
VOLUME = f"{PREFIX}pgdata"
TAG = f"{PREFIX}pg:16"
NETWORK = f"{PREFIX}backend"
CONTEXT = AGENT_HOME / "work" / "gk-rt4-image"


@pytest.fixture
def names_gone(stack: Stack) -> Iterator[None]:
    def remove() -> None:
        remove_ours(stack)
        for name in (VOLUME, OURS + VOLUME):
            stack.docker("volume", "rm", "-f", name, check=False)
        for name in (NETWORK, OURS + NETWORK):
            stack.docker("network", "rm", name, check=False)
        stack.docker("rmi", "-f", TAG, OURS + TAG, check=False)

    remove()
    yield
    remove()
    shutil.rmtree(CONTEXT, ignore_errors=True)


def agent_makes_volume(stack: Stack, name: str) -> subprocess.CompletedProcess[bytes]:
    """A new named volume, the agent's way in the layout: the CLI layer makes it labelled for a
    run; the proxy alone takes `volume create` (labelled) and refuses a run of a missing one."""
    return stack.ssh(f"docker volume create {name}" if stack.mode == PROXY_ALONE
                     else f"docker run --rm -v {name}:/d {IMAGE} true")


def exists(stack: Stack, kind: str, name: str) -> bool:
    return stack.docker(kind, "inspect", name, check=False).returncode == 0


def said_instead(result: subprocess.CompletedProcess[bytes], name: str) -> bool:
    """The refusal names the rule or the prefixed spelling (layout (b): the proxy's message)."""
    return b"name-prefix" in result.stderr and f"{OURS}{name}".encode() in result.stderr


@pytest.mark.usefixtures("clean", "names_gone")
def test_volume_named_before_the_operator_uses_it(stack: Stack) -> None:
    """Squatting a name in the engine's volume namespace: the operator's `docker run -v pgdata:...`
    (or a compose project's volume) is the agent's volume if the agent made it first.
    Contrast (the rule that holds either way): a volume the operator made first is refused."""
    stack.docker("volume", "create", VOLUME)
    stack.docker("run", "--rm", "-v", f"{VOLUME}:/d", IMAGE, "sh", "-c", f"echo {SECRET} > /d/secret")
    refused = stack.ssh(f"docker run --rm -v {VOLUME}:/d {IMAGE} cat /d/secret")
    assert SECRET.encode() not in refused.stdout and stack.refused(refused), refused
    stack.docker("volume", "rm", VOLUME)

    # Control, the rule off: the agent names it first; docker takes it for the operator's service.
    with names_prefix(""):
        assert agent_makes_volume(stack, VOLUME).returncode == 0
        stack.docker("run", "--rm", "-v", f"{VOLUME}:/d", IMAGE, "sh", "-c", f"echo {SECRET} > /d/secret")
        seen = stack.ssh(f"docker run --rm -v {VOLUME}:/d {IMAGE} cat /d/secret")
        assert SECRET.encode() in seen.stdout, "control: the operator's data should reach the agent"
        stack.docker("volume", "rm", VOLUME)

    taken = agent_makes_volume(stack, VOLUME)
    assert stack.refused(taken) and said_instead(taken, VOLUME), taken
    assert not exists(stack, "volume", VOLUME)
    assert agent_makes_volume(stack, OURS + VOLUME).returncode == 0  # its own name works
    stack.docker("run", "--rm", "-v", f"{VOLUME}:/d", IMAGE, "sh", "-c", f"echo {SECRET} > /d/secret")
    seen = stack.ssh(f"docker run --rm -v {VOLUME}:/d {IMAGE} cat /d/secret")
    assert SECRET.encode() not in seen.stdout and stack.refused(seen), "the operator's data reached it"


@pytest.mark.usefixtures("clean", "names_gone")
def test_image_tag_named_before_the_operator_uses_it(stack: Stack) -> None:
    """An image the agent builds as the tag the operator will run (`postgres:16` before the
    operator's first pull): the operator's `docker run` runs the agent's image."""
    CONTEXT.mkdir(parents=True, exist_ok=True)
    (CONTEXT / "Dockerfile").write_text(f'FROM {IMAGE}\nCMD ["echo", "{SECRET}-agent-image"]\n')
    for path in (CONTEXT, CONTEXT / "Dockerfile"):
        shutil.chown(path, AGENT, AGENT)

    with names_prefix(""):  # control: the rule off
        built = stack.ssh(f"docker build -t {TAG} {CONTEXT}", timeout=300)
    assert built.returncode == 0, built.stderr
    ran = stack.docker("run", "--rm", TAG).stdout
    assert f"{SECRET}-agent-image" in ran, "control: the operator's run should run the agent's image"
    stack.docker("rmi", TAG)

    taken = stack.ssh(f"docker build -t {TAG} {CONTEXT}", timeout=300)
    assert stack.refused(taken) and said_instead(taken, TAG), taken
    assert not exists(stack, "image", TAG)
    own = stack.ssh(f"docker build -t {OURS}{TAG} {CONTEXT}", timeout=300)
    assert own.returncode == 0, own.stderr


@pytest.mark.usefixtures("clean", "names_gone")
def test_network_named_before_the_operator_uses_it(stack: Stack) -> None:
    """A network the agent creates under the name the operator's services will join: they join
    the agent's network (its owner label, where the agent's containers wait for them)."""
    with names_prefix(""):  # control: the rule off
        made = stack.ssh(f"docker network create {NETWORK}")
    assert made.returncode == 0, made.stderr
    stack.docker("run", "--rm", "--network", NETWORK, IMAGE, "true")  # the operator's service joins it
    owner = stack.docker("network", "inspect", "-f", '{{index .Labels "gatekeeper.owner"}}', NETWORK).stdout
    assert owner.strip() == "default", "control: the operator's container should be on the agent's network"
    stack.docker("network", "rm", NETWORK)

    taken = stack.ssh(f"docker network create {NETWORK}")
    assert stack.refused(taken) and said_instead(taken, NETWORK), taken
    assert not exists(stack, "network", NETWORK)
    own = stack.ssh(f"docker network create {OURS}{NETWORK}")
    assert own.returncode == 0, own.stderr


VICTIM = f"{PREFIX}victim"
FORGER_SOURCE = Path(__file__).with_name("garp.c")  # a gratuitous ARP reply on AF_PACKET
FORGER_DIR = AGENT_HOME / "work" / "gk-rt4"


@pytest.fixture(scope="module")
def forger() -> Iterator[Path]:
    """garp (tests/e2e/garp.c) built static into the agent's work area, as the agent could put
    any program there (busybox's arping will not send another address than its own)."""
    compiler = shutil.which("cc")
    if compiler is None:
        pytest.skip("no C compiler for the ARP forger (.ci/e2e-setup.sh installs gcc)")
    FORGER_DIR.mkdir(parents=True, exist_ok=True)
    program = FORGER_DIR / "garp"
    subprocess.run([compiler, "-static", "-Os", "-o", str(program), str(FORGER_SOURCE)], check=True)
    for path in (FORGER_DIR, program):
        shutil.chown(path, AGENT, AGENT)
    yield program
    shutil.rmtree(FORGER_DIR, ignore_errors=True)


def neighbour(address: str) -> str:
    """The host's neighbour entry for `address` on the engine's bridge: the MAC it sends to."""
    shown = subprocess.run(["ip", "neigh", "show", address, "dev", BRIDGE], capture_output=True, text=True,
                           check=True).stdout.split()
    return shown[shown.index("lladdr") + 1] if "lladdr" in shown else ""


def learn(address: str) -> None:
    """The host's entry for `address` afresh (our own bridge): forget it, reach it, let it settle
    past the kernel's ARP locktime (1 s), so that a forged reply would replace it."""
    subprocess.run(["ip", "neigh", "flush", "to", address, "dev", BRIDGE], capture_output=True, check=False)
    with contextlib.suppress(OSError), socket.create_connection((address, 9), timeout=2):
        pass  # refused or not: the host resolved the address
    time.sleep(1.5)


def entry_names(address: str, mac: str, within: float) -> bool:
    """Whether the host's entry for `address` names `mac` at some moment within `within` s (a
    forged entry goes stale at once; probed later, the departed forger leaves it empty)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if neighbour(address) == mac:
            return True
        time.sleep(0.1)
    return False


@pytest.mark.usefixtures("clean")
def test_arp_spoofing_on_the_shared_bridge(stack: Stack, forger: Path) -> None:
    """A container with docker's default capabilities holds CAP_NET_RAW: it may send any frame
    on its bridge. A forged ARP reply that claims the operator's container's address moves the
    host's traffic for it (published ports) to the agent's container: the MAC clone the
    mac_address rule refuses, without a MAC of its own. The agent's containers get NET_RAW
    dropped (run/create, compose services, the proxy's creates)."""
    stack.docker("run", "-d", "--name", VICTIM, IMAGE, "sleep", "600")
    details = json.loads(stack.docker("inspect", VICTIM).stdout)[0]["NetworkSettings"]
    address, victim_mac = details["IPAddress"], details["MacAddress"]
    spoof = f"cat /sys/class/net/eth0/address; /x/garp eth0 {address}"
    mount = f"{forger.parent}:/x:ro"

    learn(address)
    assert neighbour(address) == victim_mac
    control = stack.docker("run", "-d", "--name", f"{PREFIX}ctl", "-v", mount, IMAGE, "sh", "-c",
                           f"sleep 1; {spoof}; sleep 30")  # its bridge port up first
    assert control.returncode == 0, control.stderr
    forged = stack.docker("inspect", "-f", "{{.NetworkSettings.MacAddress}}", f"{PREFIX}ctl").stdout.strip()
    assert entry_names(address, forged, 8.0), "control: the forged reply should move the host's entry"
    stack.docker("rm", "-f", f"{PREFIX}ctl")

    learn(address)
    assert neighbour(address) == victim_mac
    attack = stack.ssh(f"docker run --rm --name {OURS}{PREFIX}spoof -v {mount} {IMAGE} sh -c '{spoof}'")
    attacker = attack.stdout.decode().split()[:1]
    assert attacker or stack.refused(attack), attack.stderr
    assert not (attacker and entry_names(address, attacker[0], 3.0)), "the agent's container took the address"
    assert b"Operation not permitted" in attack.stderr or stack.refused(attack), attack.stderr
