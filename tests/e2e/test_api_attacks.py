"""Layer (b)'s attacker on the real engine: a shell as the agent's account and only the
socket of `gatekeeper proxy` (this checkout's, started here with a policy of its own,
in front of the stack's engine). Does the proxy ALONE confine it?

Every case runs its control in the same test: the same steps sent by root to the bare
engine socket (the defence off) show the effect the check is about, or the harmless
twin of the request goes through the proxy; then the attack goes through the proxy.
Findings the proxy does not stop yet are xfail(strict=True) with the reason.

Not three ways (tests/e2e/conftest.py THREE_WAY), on purpose: the attacker here is layout
(b)'s by construction (raw HTTP on the proxy's socket, requests the docker CLI would never
send), and layouts (a) and (c) give the agent no such shell: there every request comes from
the pinned docker CLI after the CLI layer's decision. The same attacks spelled as docker
commands run three ways in test_attack_chains.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

from .stack import AGENT, AGENT_HOME, DOCKER_SOCKET, IMAGE, Stack, docker_client, engine, serving_on_loopback

pytestmark = pytest.mark.e2e

PREFIX = "ai-rt-"
BASE = AGENT_HOME / "work" / "gk-rt"
TARGET = Path("/var/tmp/gk-rt-target")  # outside the allowed root, root's
MARK = "gk-rt-target-mark"  # only TARGET holds it: a container that sees it has mounted TARGET
SECRET = "s3cret-gk-rt"
WAIT = 30.0

# Every name here starts with the [names] prefix (the default "ai-", no [names] table below),
# the operator's objects' too: an attack on a name the operator holds (a duplicate network, a
# volume create that would adopt theirs) then meets its own defence, not the name rule, which
# has its own tests (test_names, test_operator_leaks).
POLICY = """\
[docker]
workdir = "{home}"

[audit]
path = "{audit}"
syslog = false

[proxy]
listen = "{listen}"
group = "{agent}"
upstream = "{upstream}"

[proxy.users]
{agent} = "default"

[shared]
containers = ["{prefix}shared*"]

[protect]
labels = ["gk-rt-keep", "gk-rt-hold=yes"]

[images]
shared = ["docker.io/library/gk-*", "docker.io/library/ai-*"]
"""


RAW_CLIENT = """
import http.client, socket, sys
path, method, target, body = sys.argv[1:5]
conn = http.client.HTTPConnection("docker", timeout=60)
conn.sock = socket.socket(socket.AF_UNIX)
conn.sock.connect(path)
conn.request(method, target, body=body.encode() or None,
             headers={"Content-Type": "application/json"} if body else {})
answer = conn.getresponse()
print(answer.status)
print(answer.read().decode(errors="replace"))
"""


class AgentProxy:
    """`gatekeeper proxy` of this checkout, and the agent's docker CLI on its socket only."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.listen = root / "docker.sock"
        self.audit = root / "audit.jsonl"
        self.policy = root / "policy.toml"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.root.chmod(0o755)
        self.audit.touch(mode=0o600)
        self.policy.write_text(POLICY.format(home=AGENT_HOME, audit=self.audit, listen=self.listen,
                                             agent=AGENT, upstream=DOCKER_SOCKET, prefix=PREFIX))
        self.policy.chmod(0o644)
        self.process = subprocess.Popen([sys.executable, "-m", "gatekeeper", "proxy", "--policy",
                                         str(self.policy)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 20
        while not self.listen.exists():
            assert self.process.poll() is None, self.process.stderr.read()  # type: ignore[union-attr]
            assert time.monotonic() < deadline, "the proxy did not start listening"
            time.sleep(0.1)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)

    def docker(self, *args: str) -> subprocess.CompletedProcess[str]:
        """The agent's docker CLI, as the agent, on the proxy's socket only (the legacy builder:
        BuildKit's /grpc is refused by the proxy)."""
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(AGENT_HOME),
               "DOCKER_HOST": f"unix://{self.listen}", "DOCKER_BUILDKIT": "0"}
        return as_agent([str(docker_client()), *args], env)

    def api(self, method: str, target: str, body: object = None) -> tuple[int, str]:
        """One raw API request as the agent (its own HTTP client, no docker CLI in between)."""
        data = "" if body is None else json.dumps(body)
        argv = ["/usr/bin/python3", "-I", "-c", RAW_CLIENT, str(self.listen), method, target, data]
        result = as_agent(argv, {"PATH": "/usr/bin:/bin", "HOME": str(AGENT_HOME)})
        status, _, text = ok(result).partition("\n")
        return int(status), text

    def shell(self, script: str) -> subprocess.CompletedProcess[str]:
        """The agent's own shell on the host."""
        return as_agent(["/bin/sh", "-c", script], {"PATH": "/usr/bin:/bin", "HOME": str(AGENT_HOME)})


def as_agent(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["/usr/sbin/runuser", "-u", AGENT, "--", *argv], env=env, capture_output=True,
                          text=True, timeout=120, check=False, cwd="/")


@pytest.fixture(scope="module")
def agent(stack: Stack) -> Iterator[AgentProxy]:
    root = Path(tempfile.mkdtemp(prefix="gk-rt-proxy-", dir="/run"))
    proxy = AgentProxy(root)
    proxy.start()
    try:
        yield proxy
    finally:
        proxy.stop()
        remove_ours()
        shutil.rmtree(root, ignore_errors=True)
        shutil.rmtree(BASE, ignore_errors=True)
        shutil.rmtree(TARGET, ignore_errors=True)


def remove_ours() -> None:
    names = engine("ps", "-aq", "--filter", f"name={PREFIX}").stdout.split()
    if names:
        engine("rm", "-f", *names)
    images = engine("images", "-q", "--filter", f"reference={PREFIX}*").stdout.split()
    if images:
        engine("rmi", "-f", *images)


@pytest.fixture
def target(agent: AgentProxy) -> Iterator[Path]:
    """TARGET with its mark, and the agent's BASE, both fresh."""
    remove_ours()
    for path in (TARGET, BASE):
        shutil.rmtree(path, ignore_errors=True)
    TARGET.mkdir(mode=0o755)
    (TARGET / MARK).write_text("root's\n")
    assert agent.shell(f"mkdir -p {BASE}/src").returncode == 0
    yield TARGET
    remove_ours()


def wait_for(path: Path, timeout: float = WAIT) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            return True
        time.sleep(0.25)
    return False


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr
    return result.stdout


# A container that proves it mounted TARGET by writing there (as root, outside the allowed root).
PROVE = f"if [ -f /x/{MARK} ]; then echo owned > /x/proof; fi; touch /x/ran; sleep 1"
SWAP = f"mv {BASE}/src {BASE}/src.old && ln -s {TARGET} {BASE}/src"


# ---------------------------------------------------------------- the restart-after-swap class


def test_start_after_the_agent_swapped_the_bind_source(agent: AgentProxy, target: Path) -> None:
    """create with -v ~/work/gk-rt/src:/x through the proxy; the agent's shell swaps src for a
    symlink to TARGET; `docker start`. Control: the same start sent by root to the bare
    engine mounts TARGET (proof written there). Through the proxy: refused (host-path)."""
    name = f"{PREFIX}swap"
    ok(agent.docker("create", "--name", name, "-v", f"{BASE}/src:/x", IMAGE, "sh", "-c", PROVE))
    ok(agent.docker("start", "-a", name))
    assert (BASE / "src" / "ran").exists() and not (target / "proof").exists()
    ok(agent.shell(SWAP))
    ok(engine("start", "-a", name))  # control: the engine itself follows the link
    assert (target / "proof").exists()
    (target / "proof").unlink()
    refused = agent.docker("start", "-a", name)
    assert refused.returncode != 0 and "rule host-path)" in refused.stderr, refused.stderr
    refused = agent.docker("restart", name)
    assert refused.returncode != 0 and "rule host-path)" in refused.stderr, refused.stderr
    assert not (target / "proof").exists()


def test_restart_policy_on_a_bound_container(agent: AgentProxy, target: Path) -> None:
    """A restart policy restarts the container (on exit, at a daemon restart) without asking the
    proxy. Control: root's same `run --restart always -v src:/x` on the bare engine; the agent's
    shell swaps src and the engine restarts the container onto TARGET. Through the proxy the
    restart policy on a bound container is refused (flag-restart), at create and by update."""
    name = f"{PREFIX}always"
    ok(engine("run", "-d", "--name", name, "--restart", "always", "-v", f"{BASE}/src:/x", IMAGE,
              "sh", "-c", PROVE))
    assert wait_for(BASE / "src" / "ran") and not (target / "proof").exists()
    ok(agent.shell(SWAP))
    assert wait_for(target / "proof"), "control: the engine restarted the container onto TARGET"
    ok(engine("rm", "-f", name))
    (target / "proof").unlink()
    ok(agent.shell(f"rm {BASE}/src && mv {BASE}/src.old {BASE}/src"))
    refused = agent.docker("run", "-d", "--name", name, "--restart", "always", "-v", f"{BASE}/src:/x", IMAGE,
                           "sh", "-c", PROVE)
    assert refused.returncode != 0 and "rule flag-restart)" in refused.stderr, refused.stderr
    ok(agent.docker("create", "--name", name, "-v", f"{BASE}/src:/x", IMAGE, "sh", "-c", PROVE))
    assert agent.docker("update", "--restart", "always", name).returncode != 0
    restart = json.loads(ok(engine("inspect", "--format", "{{json .HostConfig.RestartPolicy}}", name)))
    assert restart.get("Name") in ("", "no"), restart


# ---------------------------------------------------------------- ownership: labels images pass on


def agent_image(agent: AgentProxy, name: str) -> None:
    """The agent builds an image through the proxy (which adds the owner label to it)."""
    context = BASE / "ctx"
    ok(agent.shell(f"mkdir -p {context} && printf 'FROM {IMAGE}\\nLABEL app=x\\n' > {context}/Dockerfile"))
    ok(agent.docker("build", "-q", "-t", name, str(context)))


def test_operator_container_of_an_agent_image_stays_the_operators(agent: AgentProxy, target: Path) -> None:
    """Was: the owner label the proxy puts on a built image is inherited by every container made
    from it, so the operator's container of the agent's image counted as the agent's. Now a
    container is the agent's only when its create set gatekeeper.created (owner.proven_labels)."""
    image = f"{PREFIX}agentimg:1"
    agent_image(agent, image)
    ok(engine("run", "-d", "--name", f"{PREFIX}ops", "-e", f"DB_PASSWORD={SECRET}", IMAGE, "sleep", "600"))
    ok(engine("run", "-d", "--name", f"{PREFIX}prod", "-e", f"DB_PASSWORD={SECRET}", image, "sleep", "600"))
    control = ok(agent.docker("inspect", "--format", "{{json .Config.Env}}", f"{PREFIX}ops"))
    assert SECRET not in control  # the operator's container of its own image: redacted
    stop = agent.docker("stop", f"{PREFIX}ops")
    assert stop.returncode != 0 and "scope-owned" in stop.stderr
    labels = json.loads(ok(engine("inspect", "--format", "{{json .Config.Labels}}", f"{PREFIX}prod")))
    profile = labels.get("gatekeeper.owner")
    assert profile  # control: the image's owner label is inherited
    leaked = ok(agent.docker("inspect", "--format", "{{json .Config.Env}}", f"{PREFIX}prod"))
    assert SECRET not in leaked, "the operator's container of the agent's image is the agent's"
    for args in (("stop", f"{PREFIX}prod"), ("logs", f"{PREFIX}prod"), ("rm", "-f", f"{PREFIX}prod")):
        refused = agent.docker(*args)
        assert refused.returncode != 0 and "scope-owned" in refused.stderr, (args, refused.stderr)
    # Dockerfile LABEL gatekeeper.created=<the agent>: still inherited, still not the agent's
    context = BASE / "ctx2"
    ok(agent.shell(f"mkdir -p {context} && printf 'FROM {IMAGE}\\nLABEL gatekeeper.created={profile} "
                   f"gatekeeper.owner={profile}\\n' > {context}/Dockerfile"))
    built = agent.docker("build", "-q", "-t", f"{PREFIX}forged:1", str(context))
    if built.returncode == 0:
        ok(engine("run", "-d", "--name", f"{PREFIX}prod2", "-e", f"DB_PASSWORD={SECRET}", f"{PREFIX}forged:1",
                  "sleep", "600"))
        leaked = ok(agent.docker("inspect", "--format", "{{json .Config.Env}}", f"{PREFIX}prod2"))
        assert SECRET not in leaked, "a Dockerfile LABEL gatekeeper.created made it the agent's"
        stop = agent.docker("stop", f"{PREFIX}prod2")
        assert stop.returncode != 0 and "scope-owned" in stop.stderr, stop.stderr
    # the agent's everyday flow: its own container of its own image stays its own
    ok(agent.docker("run", "-d", "--name", f"{PREFIX}mine", "-e", "MINE=shown", image, "sleep", "600"))
    assert "MINE=shown" in ok(agent.docker("inspect", "--format", "{{json .Config.Env}}", f"{PREFIX}mine"))
    ok(agent.docker("logs", f"{PREFIX}mine"))
    ok(agent.docker("stop", "-t", "1", f"{PREFIX}mine"))
    ok(agent.docker("rm", f"{PREFIX}mine"))


def test_refused_label_through_the_image(agent: AgentProxy, target: Path) -> None:
    """A Dockerfile LABEL com.docker.compose.project=<the operator's project> would make the
    agent's container pose as the operator's service; the create body may not say it, nor the image."""
    context = BASE / "ctx"
    ok(agent.shell(f"mkdir -p {context} && printf 'FROM {IMAGE}\\nLABEL com.docker.compose.project=ops "
                   f"com.docker.compose.service=db\\n' > {context}/Dockerfile"))
    project = "com.docker.compose.project=ops"
    ok(engine("create", "--name", f"{PREFIX}opsdb", "--label", project, IMAGE, "true"))  # the operator's
    refused = agent.docker("create", "--name", f"{PREFIX}direct", "--label", project,
                           "--label", "com.docker.compose.service=db", IMAGE, "true")
    assert refused.returncode != 0 and "refused-label" in refused.stderr, refused.stderr  # control
    ok(agent.docker("build", "-q", "-t", f"{PREFIX}posing:1", str(context)))
    ok(engine("create", "--name", f"{PREFIX}posing-root", f"{PREFIX}posing:1", "true"))
    labels = json.loads(ok(engine("inspect", "--format", "{{json .Config.Labels}}", f"{PREFIX}posing-root")))
    assert labels.get("com.docker.compose.project") == "ops"  # control: the image's labels are inherited
    made = agent.docker("create", "--name", f"{PREFIX}posing", f"{PREFIX}posing:1", "true")
    assert made.returncode != 0 and "rule refused-label)" in made.stderr, made.stderr


# ---------------------------------------------------------------- data leaving: others' objects


def test_events_do_not_carry_the_operators_commands(agent: AgentProxy, target: Path) -> None:
    """Events carry the operator's exec command lines and every label of its objects, which
    inspect redacts. Control: the same events read by root on the bare engine hold the
    secret; through the proxy only the agent's own objects' events come."""
    since = str(int(time.time()) - 1)
    ok(agent.docker("run", "-d", "--name", f"{PREFIX}evmine", IMAGE, "sleep", "600"))
    ok(engine("run", "-d", "--name", f"{PREFIX}evops", "--label", f"db.password={SECRET}", IMAGE,
              "sleep", "600"))
    ok(engine("exec", f"{PREFIX}evops", "sh", "-c", f"true {SECRET}-exec"))
    inspect = ok(agent.docker("inspect", "--format", "{{json .Config.Labels}}", f"{PREFIX}evops"))
    assert SECRET not in inspect  # inspect redacts the secret-looking label
    until = str(int(time.time()) + 1)
    window = ("events", "--since", since, "--until", until, "--format", "{{json .}}")
    assert f"{SECRET}-exec" in ok(engine(*window))  # control: the engine's own events hold it
    events = ok(agent.docker(*window))
    assert f"{PREFIX}evmine" in events  # the agent's own events are served
    assert SECRET not in events, "the operator's command line and labels leak through events"


def test_events_of_the_operators_container_of_an_agent_image(agent: AgentProxy, target: Path) -> None:
    """The operator runs a container of an image the agent built (it inherits the owner label,
    never gatekeeper.created) and execs a command line with a secret in it. Control: the
    engine's events under the owner label alone (the proxy's filter before) hold the command
    line and the container's labels; through the proxy the container's events need the created
    label too, and the agent's own container's events still come."""
    image = f"{PREFIX}evimg:1"
    agent_image(agent, image)
    since = str(int(time.time()) - 1)
    ok(agent.docker("run", "-d", "--name", f"{PREFIX}evmine2", image, "sleep", "600"))
    ok(engine("run", "-d", "--name", f"{PREFIX}evprod", "--label", f"db.password={SECRET}-label", image,
              "sleep", "600"))
    ok(engine("exec", f"{PREFIX}evprod", "sh", "-c", f"true {SECRET}-exec"))
    until = str(int(time.time()) + 1)
    window = ("events", "--since", since, "--until", until, "--format", "{{json .}}")
    control = ok(engine(*window, "--filter", "label=gatekeeper.owner=default"))
    assert f"{SECRET}-exec" in control and f"{SECRET}-label" in control  # control: the old filter
    events = ok(agent.docker(*window))
    assert f"{PREFIX}evmine2" in events  # the agent's own container's events are served
    assert SECRET not in events, "the operator's container of the agent's image sends its events"
    status, answer = agent.api("GET", f"/v1.41/events?since={since}&until={until}")
    assert status == 200 and f"{PREFIX}evmine2" in answer and SECRET not in answer, answer[:2000]
    typed = quote(json.dumps({"type": ["image"]}))
    status, answer = agent.api("GET", f"/v1.41/events?since={since}&until={until}&filters={typed}")
    assert status == 200 and SECRET not in answer and f"{PREFIX}evprod" not in answer, answer[:2000]


def root_api_get(target: str) -> str:
    """A GET as root on the bare engine's socket (the control: no proxy in between)."""
    import http.client
    import socket

    conn = http.client.HTTPConnection("docker", timeout=60)
    conn.sock = socket.socket(socket.AF_UNIX)
    conn.sock.connect(str(DOCKER_SOCKET))
    conn.request("GET", target)
    answer = conn.getresponse()
    assert answer.status == 200, answer.status
    return answer.read().decode(errors="replace")


def test_disk_usage_does_not_carry_the_operators_labels(agent: AgentProxy, target: Path) -> None:
    """GET /system/df (docker system df) lists every container, image and volume with its labels
    and volumes' driver options, which their inspect and listings redact. Control: root's same
    request on the bare engine holds the secrets; through the proxy they are hidden (redact-listing)
    and the agent's own container's labels still come."""
    volume = f"{PREFIX}dfvol"
    ok(engine("volume", "create", "--label", f"backup.api_token={SECRET}-vol", volume))
    try:
        ok(engine("run", "-d", "--name", f"{PREFIX}dfops", "--label", f"db.password={SECRET}-ctr",
                  "-v", f"{volume}:/data", IMAGE, "sleep", "600"))
        ok(agent.docker("run", "-d", "--name", f"{PREFIX}dfmine", "--label", "my.token=mine-shown", IMAGE,
                        "sleep", "600"))
        containers = ok(agent.docker("ps", "-a", "--format", "{{.Labels}}"))
        assert f"{SECRET}-ctr" not in containers  # the listing redacts the label
        control = root_api_get("/v1.41/system/df")
        assert f"{SECRET}-ctr" in control and f"{SECRET}-vol" in control  # control: the engine's answer
        status, answer = agent.api("GET", "/v1.41/system/df")
        assert status == 200, answer
        assert SECRET not in answer, "the operator's labels leak through system df"
        assert "mine-shown" in answer and f"{PREFIX}dfops" in answer  # its own labels; others' names
        ok(agent.docker("system", "df", "-v"))  # the docker CLI reads the redacted answer
    finally:
        engine("rm", "-f", f"{PREFIX}dfops", f"{PREFIX}dfmine")
        engine("volume", "rm", "-f", volume)


def test_prune_keeps_an_object_with_one_of_several_protected_labels(agent: AgentProxy, target: Path) -> None:
    """[protect] labels become label! filters, and the engine ANDs them: an object is kept only
    when it carries every protected label, so prune removed what `docker rm` may not (a
    container with one of two protected labels). Control: root's prune on the bare engine with the
    filters the proxy used to send removes a container labelled with one of the two. Through
    the proxy the prune is refused (protected) while one of the agent's containers carries one,
    and goes through once none does."""
    kept, plain = f"{PREFIX}keep", f"{PREFIX}plain"
    mine = ["--label", "gatekeeper.owner=default", "--label", "gatekeeper.created=default"]
    ok(engine("create", "--name", f"{PREFIX}rootkeep", *mine, "--label", "gk-rt-keep=1", IMAGE, "true"))
    filters = ("--filter", "label=gatekeeper.owner=default", "--filter", "label=gatekeeper.created=default",
               "--filter", "label!=gk-rt-keep", "--filter", "label!=gk-rt-hold=yes")
    ok(engine("container", "prune", "-f", *filters))
    assert engine("inspect", f"{PREFIX}rootkeep").returncode != 0  # control: the engine pruned it
    ok(agent.docker("create", "--name", kept, "--label", "gk-rt-keep=1", IMAGE, "true"))
    ok(agent.docker("create", "--name", plain, IMAGE, "true"))
    refused = agent.docker("container", "prune", "-f")
    assert refused.returncode != 0 and "rule protected)" in refused.stderr and kept in refused.stderr, \
        refused.stderr
    assert engine("inspect", kept).returncode == 0 and engine("inspect", plain).returncode == 0
    refused = agent.docker("rm", kept)  # what prune would have done: refused by name too
    assert refused.returncode != 0 and "rule protected)" in refused.stderr, refused.stderr
    ok(engine("rm", kept))  # the operator removes it
    ok(agent.docker("container", "prune", "-f"))  # none carries a protected label: pruned
    assert engine("inspect", plain).returncode != 0


def test_exec_cp_export_commit_refused_on_own_container(agent: AgentProxy, target: Path) -> None:
    """The agent's own running container: root in it is fine, but exec/cp/export/commit would
    carry data in or out unvetted. Control: root on the bare engine can do each."""
    name = f"{PREFIX}own"
    ok(agent.docker("run", "-d", "--name", name, IMAGE, "sleep", "600"))
    ok(engine("exec", name, "true"))
    for args in (("exec", name, "true"), ("cp", f"{name}:/etc/hostname", "/tmp/gk-rt-cp"),
                 ("export", "-o", "/tmp/gk-rt-export.tar", name), ("commit", name, f"{PREFIX}committed:1")):
        refused = agent.docker(*args)
        assert refused.returncode != 0 and "api-unvetted" in refused.stderr, (args, refused.stderr)
    assert not Path("/tmp/gk-rt-cp").exists() and not Path("/tmp/gk-rt-export.tar").exists()


def test_proxy_records_the_attacks(agent: AgentProxy) -> None:
    """Every decision above is in the proxy's own log, with the api layer and the agent's uid."""
    records = [json.loads(line) for line in agent.audit.read_text().splitlines()]
    assert records
    uid = int(ok(subprocess.run(["id", "-u", AGENT], capture_output=True, text=True, check=False)))
    assert {r.get("layer") for r in records} == {"api"}
    assert all(r.get("uid") == uid for r in records if "uid" in r)
    denied = [r for r in records if r.get("decision") == "deny"]
    assert {"host-path", "api-unvetted", "scope-owned"} <= {r.get("rule") for r in denied}
    assert all(r.get("profile") == "default" for r in records)


# ---------------------------------------------------------------- the engine's own network reach


@pytest.fixture
def loopback_service() -> Iterator[str]:
    with serving_on_loopback(f"{SECRET}-loopback\n") as url:
        yield url


def test_build_add_url_does_not_reach_the_hosts_loopback(agent: AgentProxy, target: Path,
                                                        loopback_service: str) -> None:
    """A Dockerfile `ADD <url>` is fetched by the engine itself, on the host's network: a build
    would read services only the host's loopback reaches into the agent's image. Control: the
    agent's containers cannot reach the URL, root's same build on the bare engine fetches it.
    The proxy refuses the build (build-add-url: it reads the Dockerfile from the spooled context)."""
    fetch = agent.docker("run", "--rm", IMAGE, "wget", "-q", "-T", "3", "-O", "-", loopback_service)
    assert SECRET not in fetch.stdout  # control: the agent's containers cannot reach it
    context = BASE / "addctx"
    ok(agent.shell(f"mkdir -p {context} && printf 'FROM {IMAGE}\\nADD {loopback_service} /secret\\n' "
                   f"> {context}/Dockerfile"))
    ok(engine("build", "-q", "-t", f"{PREFIX}rootadd:1", str(context)))  # control: the defence off
    assert SECRET in ok(engine("run", "--rm", f"{PREFIX}rootadd:1", "cat", "/secret"))
    built = agent.docker("build", "-q", "-t", f"{PREFIX}add:1", str(context))
    assert built.returncode != 0 and "build-add-url" in built.stderr, built.stderr
    assert not engine("images", "-q", f"{PREFIX}add:1").stdout.strip()


# ---------------------------------------------------------------- names the operator's objects already have


def test_duplicate_network_name_with_an_old_api_version(agent: AgentProxy, target: Path) -> None:
    """Engines before API 1.44 honour CheckDuplicate=false: a second network named like the
    operator's, whose name then resolves to neither (the operator's `--network NAME` fails).
    Control: the same request sent by root to the bare engine makes the duplicate."""
    name = f"{PREFIX}opsnet"
    request = {"Name": name, "CheckDuplicate": False}
    ok(engine("network", "create", name))
    try:
        status, text = root_api("POST", "/v1.24/networks/create", request)
        assert status == 201, text
        assert len(networks_named(name)) == 2  # control: the engine makes it
        engine("network", "rm", json.loads(text)["Id"])
        status, text = agent.api("POST", "/v1.24/networks/create", request)
        assert len(networks_named(name)) == 1, f"a second network {name!r} exists ({status} {text})"
        assert status == 409, text
    finally:
        for network in networks_named(name):
            engine("network", "rm", network)


def networks_named(name: str) -> list[str]:
    return ok(engine("network", "ls", "-q", "--filter", f"name=^{name}$")).split()


def root_api(method: str, target: str, body: object) -> tuple[int, str]:
    """Root on the bare engine socket (the defence off)."""
    import http.client
    import socket

    conn = http.client.HTTPConnection("docker", timeout=60)
    conn.sock = socket.socket(socket.AF_UNIX)
    conn.sock.connect(str(DOCKER_SOCKET))
    conn.request(method, target, body=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    answer = conn.getresponse()
    text = answer.read().decode(errors="replace")
    conn.close()
    return answer.status, text


def test_volume_create_does_not_adopt_the_operators_volume(agent: AgentProxy, target: Path) -> None:
    """`docker volume create NAME` of an existing volume answers with that volume: the owner
    label the proxy adds must not make it the agent's. Control: the agent's own volume mounts."""
    theirs, mine = f"{PREFIX}opsvol", f"{PREFIX}myvol"
    ok(engine("volume", "create", theirs))
    try:
        ok(agent.docker("volume", "create", mine))
        ok(agent.docker("run", "--rm", "-v", f"{mine}:/d", IMAGE, "true"))
        agent.docker("volume", "create", theirs)
        labels = ok(engine("volume", "inspect", "--format", "{{json .Labels}}", theirs))
        assert "gatekeeper.owner" not in labels
        refused = agent.docker("run", "--rm", "-v", f"{theirs}:/d", IMAGE, "true")
        assert refused.returncode != 0 and "foreign-volume" in refused.stderr, refused.stderr
    finally:
        engine("volume", "rm", "-f", theirs, mine)


# ---------------------------------------------------------------- root in a container, files on the host


@contextlib.contextmanager
def area_with_suid() -> Iterator[None]:
    """The defence switched off: the agent's area remounted without nosuid,nodev (the install
    step area-mount makes it nosuid,nodev), put back afterwards."""
    remount = ["mount", "-o", "remount,bind,suid,dev", str(AGENT_HOME)]
    ok(subprocess.run(remount, capture_output=True, text=True, check=False))
    try:
        yield
    finally:
        ok(subprocess.run(["mount", "-o", "remount,bind,nosuid,nodev", str(AGENT_HOME)],
                          capture_output=True, text=True, check=False))


def plant_as_root_on_the_engine(command: str) -> None:
    """What a container of the agent's does when nothing refuses the bind (root on the bare engine)."""
    ok(engine("run", "--rm", "-v", f"{BASE}/src:/x", IMAGE, "sh", "-c", command))


def test_setuid_file_planted_through_a_bind(agent: AgentProxy, target: Path) -> None:
    """Root in the agent's container makes a copy of python3 in its bind setuid root; the agent's
    shell runs it. Control: on a suid area that is root on the host (and the proxy refuses the
    bind there, host-path-mount); on the nosuid,nodev area the bind is allowed and the bit inert."""
    python = Path(os.path.realpath("/usr/bin/python3"))
    escalate = (f"{BASE}/src/py -I -c \"import os; os.setuid(0); "
                f"open('{target}/rootproof', 'w').write('root')\"")
    ok(agent.shell(f"cp {python} {BASE}/src/py"))
    assert agent.shell(escalate).returncode != 0 and not (target / "rootproof").exists()  # not root yet
    with area_with_suid():
        refused = agent.docker("run", "--rm", "-v", f"{BASE}/src:/x", IMAGE, "true")
        assert refused.returncode != 0 and "host-path-mount" in refused.stderr, refused.stderr
        plant_as_root_on_the_engine("chown 0:0 /x/py && chmod 4755 /x/py")
        agent.shell(escalate)
        assert (target / "rootproof").exists(), "control: the planted setuid program did not make root"
    (target / "rootproof").unlink()
    ok(agent.shell(f"rm -f {BASE}/src/py && cp {python} {BASE}/src/py"))
    ok(agent.docker("run", "--rm", "-v", f"{BASE}/src:/x", IMAGE, "sh", "-c",
                    "chown 0:0 /x/py && chmod 4755 /x/py"))
    assert os.stat(BASE / "src" / "py").st_mode & 0o4000  # planted, but on a nosuid mount
    agent.shell(escalate)
    assert not (target / "rootproof").exists(), "the agent's shell ran a setuid-root file and wrote as root"


def test_device_node_planted_through_a_bind(agent: AgentProxy, target: Path) -> None:
    """Root in the agent's container (CAP_MKNOD is docker's default) makes a node of the host's
    null device, mode 0666, in its bind; the agent's shell opens it. Control: on a suid,dev area
    that opens (a disk's node would read the raw disk); on the nosuid,nodev area it cannot."""
    node = BASE / "src" / "node"
    null = os.stat("/dev/null")
    mknod = f"mknod -m 0666 /x/node c {os.major(null.st_rdev)} {os.minor(null.st_rdev)}"
    opened = f"echo x > {node} && echo opened"
    with area_with_suid():
        plant_as_root_on_the_engine(mknod)
        assert "opened" in agent.shell(opened).stdout, "control: the planted node did not open"
    node.unlink()
    ok(agent.docker("run", "--rm", "-v", f"{BASE}/src:/x", IMAGE, "sh", "-c", mknod))
    assert node.is_char_device()
    assert "opened" not in agent.shell(opened).stdout, "the agent's shell opened a planted device node"


def test_setuid_file_planted_in_a_named_volume(agent: AgentProxy, target: Path) -> None:
    """A named volume's data lives under the engine's data root, on a suid,dev file system (the
    nosuid,nodev rule covers bind sources only): root in the agent's container can make a
    setuid-root program there. It stays inert because the agent's shell cannot reach it by its
    host path (docker keeps each volume's directory closed to others). Control: root sees it."""
    volume = f"{PREFIX}vol"
    python = Path(os.path.realpath("/usr/bin/python3"))
    ok(agent.shell(f"cp {python} {BASE}/src/py"))
    ok(agent.docker("volume", "create", volume))
    try:
        data = Path(ok(engine("volume", "inspect", "--format", "{{.Mountpoint}}", volume)).strip())
        ok(agent.docker("run", "--rm", "-v", f"{BASE}/src:/b:ro", "-v", f"{volume}:/x", IMAGE, "sh", "-c",
                        "cp /b/py /x/py && chmod 4755 /x/py"))
        assert (data / "py").stat().st_mode & 0o4000  # control: planted, setuid root, on the host
        escalate = agent.shell(f"{data}/py -I -c \"import os; os.setuid(0); "
                               f"open('{target}/rootproof', 'w').write('root')\"")
        assert escalate.returncode != 0 and not (target / "rootproof").exists(), escalate.stderr
        assert "Permission denied" in escalate.stderr  # the path is closed, not the bit ignored
    finally:
        engine("volume", "rm", "-f", volume)
