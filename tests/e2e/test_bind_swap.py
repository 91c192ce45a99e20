"""Host paths that stay what was checked (issue 10 items 1 and 3), through the real sshd and engine.

The engine resolves a bind source again at every start. A container that can
write a directory above another bind source swaps the child for a symlink
between two starts, and the next start mounts whatever the link points to,
as root. Every carrier of nested binds (-v, --mount, compose short and long
syntax) is tried against every later use (restart policy, docker start,
docker restart, compose restart, a second container doing the swap), and
client outputs (--iidfile, --cidfile) against a container planting links.

Each case runs twice in the same test. The control sends the very same docker
commands as root straight to the engine, bypassing gatekeeper: the proof file
appears in TARGET, a directory outside the allowed root. Then the agent sends
them through ssh: refused, and TARGET stays empty.

Three ways (tests/e2e/conftest.py THREE_WAY): in layout (b) the proxy refuses (its 403 as
docker prints it, and its "api" record), by the CLI layer's rule or by one of its own that
comes first there (swap_rules). There the client-side reads and writes (--env-file, --cidfile,
--iidfile) are the agent's own: TARGET and its canary are root's for them, so that only a root
process (the engine) could reach them; those are judged by TARGET alone.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from .stack import AGENT, AGENT_HOME, IMAGE, PROXY_ALONE, Stack, audit_offset, audit_records_since
from .test_attack_chains import assert_refused

pytestmark = pytest.mark.e2e

EX_NOPERM = 77
BASE = AGENT_HOME / "work" / "gkswap"
TARGET = Path("/var/tmp/gk-e2e-swap-target")  # outside the root; writable by the agent's account too
MARK = "gk-target"  # a file only TARGET holds: a container seeing it has mounted TARGET
NAME = "ai-swap"  # every name the agent gives starts with the [names] prefix (the default "ai-")
WAIT = 30.0

SAFE = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-./:=,@+%")


def as_command(args: list[str]) -> str:
    return " ".join(a if a and set(a) <= SAFE else f"'{a}'" for a in args)


def victim(case: str, then: str) -> str:
    """Write the proof when /x is TARGET; otherwise swap /w/a (if bound) for a link to TARGET."""
    return (f"if [ -f /x/{MARK} ]; then echo owned > /x/proof-{case}; sleep 3600; "
            f"elif [ -d /w/a ] && [ ! -L /w/a ]; then mv /w/a /w/a.old && ln -s {TARGET} /w/a; fi; {then}")


SWAPPER = f"mv /w/a /w/a.old && ln -s {TARGET} /w/a"


class Case:
    """One carrier against one later use, in its own directory."""

    def __init__(self, carrier: str, use: str, run: str) -> None:
        self.carrier, self.use = carrier, use
        self.slug = f"{carrier.strip('-')}-{use}".replace(" ", "-")
        self.dir = BASE / f"{self.slug}-{run}"
        self.p = self.dir / "p"
        self.name = f"{NAME}-{self.slug}-{run}"

    def prepare(self) -> None:
        (self.p / "a").mkdir(parents=True)
        for path in (BASE, self.dir, self.p, self.p / "a"):
            shutil.chown(path, AGENT, AGENT)

    def binds(self, sources: list[tuple[str, str]]) -> list[str]:
        out = []
        for source, target in sources:
            if self.carrier == "-v":
                out += ["-v", f"{source}:{target}"]
            else:
                out += ["--mount", f"type=bind,src={source},dst={target}"]
        return out

    def compose_file(self, services: dict[str, tuple[list[tuple[str, str]], str, str]]) -> Path:
        """services: name -> (binds, script, restart)."""
        lines = [f"name: {self.name}", "services:"]
        for service, (sources, script, restart) in services.items():
            lines += [f"  {service}:", f"    image: {IMAGE}", f"    container_name: {self.name}-{service}",
                      f"    restart: {json.dumps(restart or 'no')}",
                      f"    command: {json.dumps(['sh', '-c', script])}",
                      "    volumes:"]
            for source, target in sources:
                if self.carrier == "compose short":
                    lines.append(f"      - {source}:{target}")
                else:
                    lines += ["      - type: bind", f"        source: {source}", f"        target: {target}"]
        path = self.dir / "compose.yaml"
        path.write_text("\n".join(lines) + "\n")
        shutil.chown(path, AGENT, AGENT)
        return path

    def steps(self) -> list[list[str]]:
        """The docker commands of the attack, in order (also waits: ['wait-exited', name], ['wait-link'])."""
        both = [(str(self.p), "/w"), (f"{self.p}/a", "/x")]
        compose = self.carrier.startswith("compose")
        main = f"{self.name}-self"
        if self.use == "second container":
            if compose:
                f = self.compose_file({
                    "victim": ([(f"{self.p}/a", "/x")], victim(self.slug, "exit 1"), "on-failure"),
                    "swapper": ([(str(self.p), "/w")], SWAPPER, ""),
                })
                return [["compose", "-f", str(f), "up", "-d"]]
            victim_binds = self.binds([(f"{self.p}/a", "/x")])
            return [["create", "--name", f"{self.name}-victim", *victim_binds, IMAGE,
                     "sh", "-c", victim(self.slug, "exit 1")],
                    ["run", "--rm", "--name", f"{self.name}-swapper", *self.binds([(str(self.p), "/w")]),
                     IMAGE, "sh", "-c", SWAPPER],
                    ["start", f"{self.name}-victim"]]
        then = "sleep 3600" if self.use in ("docker restart", "compose restart") else "exit 1"
        restart = "on-failure" if self.use == "restart policy" else ""
        if compose:
            f = self.compose_file({"self": (both, victim(self.slug, then), restart)})
            create = [["compose", "-f", str(f), "up", "-d"]]
        else:
            policy = ["--restart", restart] if restart else []
            create = [["run", "-d", "--name", main, *policy, *self.binds(both), IMAGE, "sh", "-c",
                       victim(self.slug, then)]]
        later = {
            "restart policy": [],
            "docker start": [["wait-exited", main], ["start", main]],
            "docker restart": [["wait-link"], ["restart", main]],
            "compose restart": [["wait-link"], ["compose", "-f", str(self.dir / "compose.yaml"), "restart"]],
        }[self.use]
        return create + later

    def proof(self) -> Path:
        return TARGET / f"proof-{self.slug}"


CARRIERS = ("-v", "--mount", "compose short", "compose long")
USES = ("restart policy", "docker start", "docker restart", "second container")


def case_params() -> list[object]:
    params = [pytest.param(c, u, id=f"{c}-{u}") for c in CARRIERS for u in USES]
    params += [pytest.param(c, "compose restart", id=f"{c}-compose restart") for c in CARRIERS[2:]]
    return params


def remove_ours(stack: Stack) -> None:
    stack.remove_named(NAME)


@pytest.fixture
def target(stack: Stack) -> Iterator[Path]:
    """TARGET holding only its mark; BASE empty; afterwards both gone, with our containers."""
    TARGET.mkdir(mode=0o755, exist_ok=True)
    shutil.chown(TARGET, AGENT, AGENT)
    (TARGET / MARK).write_text("the host directory the attack aims at\n")
    yield TARGET
    remove_ours(stack)
    shutil.rmtree(TARGET, ignore_errors=True)
    shutil.rmtree(BASE, ignore_errors=True)


def swap_rules(stack: Stack) -> tuple[str, ...]:
    """The rules that may refuse a swap. The CLI layer: host-path-nested. The proxy (first in
    layout (b)) also refuses a restart policy on any container with host binds (flag-restart: the
    engine restarts it without asking the proxy) and, at a start, a source that resolves outside
    the allowed root by then (host-path: the swap already happened)."""
    if stack.mode == PROXY_ALONE:
        return ("host-path-nested", "flag-restart", "host-path")
    return ("host-path-nested",)


def assert_swap_refused(stack: Stack, status: int, said: str, since: int) -> None:
    """Refused by the layout's first layer with a rule of swap_rules: exit 77 in (a)/(c); in (b)
    the docker CLI's failure on the proxy's 403 and a deny record of layer "api" with that rule."""
    rules = swap_rules(stack)
    if stack.mode == PROXY_ALONE:
        assert status != 0, said
        denied = {record["rule"] for record in audit_records_since(since, layer="api")
                  if record["decision"] == "deny"}
        assert denied & set(rules), (denied, said)
    else:
        assert status == EX_NOPERM, said
    assert any(f"(rule {rule})" in said for rule in rules), said


def wait_for(what: str, ready, timeout: float = WAIT) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready():
            return True
        time.sleep(0.2)
    return False


def play(stack: Stack, case: Case, send) -> list[tuple[int, str]]:  # type: ignore[no-untyped-def]
    """Run the steps with `send(args) -> (status, stderr)`; returns what each sent step answered."""
    answers: list[tuple[int, str]] = []
    for step in case.steps():
        if step[0].startswith("wait-") and answers and answers[-1][0] != 0:
            continue  # what it waits for was refused
        if step[0] == "wait-exited":
            wait_for("exit", lambda s=step: stack.docker("inspect", "-f", "{{.State.Status}}", s[1],
                                                         check=False).stdout.strip() == "exited")
        elif step[0] == "wait-link":
            wait_for("swap", (case.p / "a").is_symlink)
        else:
            answers.append(send(step))
    return answers


@pytest.mark.parametrize(("carrier", "use"), case_params())
def test_nested_binds_cannot_swap_a_source(stack: Stack, target: Path, carrier: str, use: str) -> None:
    # Control: the same commands as root, straight to the engine, mount TARGET at the later start.
    control = Case(carrier, use, "control")
    control.prepare()
    play(stack, control, lambda args: (stack.docker(*args).returncode, ""))
    assert wait_for("proof", control.proof().exists), f"control: the swap did not work ({control.slug})"
    control.proof().unlink()
    remove_ours(stack)

    # Through gatekeeper: the nesting is refused before any container can swap anything.
    agent = Case(carrier, use, "agent")
    agent.prepare()

    def through_ssh(args: list[str]) -> tuple[int, str]:
        result = stack.ssh(as_command(["docker", *args]), timeout=120)
        return result.returncode, result.stderr.decode(errors="replace")

    since = audit_offset()
    answers = play(stack, agent, through_ssh)
    refused = [(status, err) for status, err in answers if status != 0]
    assert refused, answers
    assert_swap_refused(stack, *refused[0], since)
    time.sleep(2)  # a restart the engine would do has had its time
    assert not agent.proof().exists()
    assert sorted(p.name for p in TARGET.iterdir()) == [MARK]
    assert not (agent.p / "a").is_symlink()


def test_a_container_made_before_the_rule_cannot_be_started(stack: Stack, target: Path) -> None:
    """Item 5: a container with nested binds (made before this rule, owner label set) whose child
    was already swapped. Control: root's start mounts TARGET. The agent's start/restart: refused."""
    case = Case("-v", "legacy", "control")
    case.prepare()
    name = f"{NAME}-legacy"
    owner = ["--label", "gatekeeper.owner=default", "--label", "gatekeeper.created=default"]
    both = case.binds([(str(case.p), "/w"), (f"{case.p}/a", "/x")])
    stack.docker("create", "--name", name, *owner, *both, IMAGE, "sh", "-c", victim("legacy", "exit 1"))
    (case.p / "a").rename(case.p / "a.old")
    (case.p / "a").symlink_to(TARGET)
    for command in (f"docker start {name}", f"docker restart {name}", f"docker container start {name}"):
        since = audit_offset()
        result = stack.ssh(command)
        assert_swap_refused(stack, result.returncode, result.stderr.decode(errors="replace"), since)
    assert sorted(p.name for p in TARGET.iterdir()) == [MARK]
    stack.docker("start", name)
    assert wait_for("proof", (TARGET / "proof-legacy").exists), "control: root's start mounts TARGET"


# The CLI removes an --iidfile when the build starts and writes it at the end: the planter must
# plant its link again in between. The build's RUN step (never cached) gives it a second, even
# with every core busy (a cached build of a LABEL took less than the planter got: red in CI once).
OUTPUTS = {
    "--iidfile": ["build", "--no-cache", "--iidfile", "{out}", "{ctx}"],
    "--cidfile": ["run", "--rm", "--cidfile", "{out}", IMAGE, "true"],
}


@pytest.mark.parametrize("flag", OUTPUTS)
def test_client_output_cannot_be_redirected_by_a_container(stack: Stack, target: Path, flag: str) -> None:
    """A container bound to the output's directory plants out -> TARGET/proof in a loop; the CLI,
    writing the output at the end, follows it. Control as root: written. Through ssh: refused."""
    case = Case(flag, "planted link", "both")
    case.prepare()
    ctx = case.dir / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(f"FROM {IMAGE}\nLABEL gk=swap\nRUN sleep 1\n")
    out = f"{case.p}/out"
    proof = TARGET / f"proof-{case.slug}"
    plant = f"while true; do ln -sfn {proof} /w/out; sleep 0.05; done"
    started = stack.ssh(as_command(["docker", "run", "-d", "--name", f"{NAME}-planter", "-v", f"{case.p}:/w",
                                    IMAGE, "sh", "-c", plant]))
    assert started.returncode == 0, started.stderr
    assert wait_for("link", lambda: Path(out).is_symlink())
    args = [word.format(out=out, ctx=ctx) for word in OUTPUTS[flag]]
    if stack.mode == PROXY_ALONE:  # the unvetted CLI writes as the agent: TARGET root's, as OUTSIDE
        shutil.chown(TARGET, "root", "root")
    since = audit_offset()
    result = stack.ssh(as_command(["docker", *args]), timeout=120)
    assert_refused(stack, result, since, client_side=stack.mode == PROXY_ALONE)  # (b): TARGET judges
    assert sorted(p.name for p in TARGET.iterdir()) == [MARK]
    # The control: root's CLI writes through the planted link. A try can fall into the planter's
    # window between unlink and symlink (busybox ln -sfn) and write a plain file: then again.
    for _ in range(10):
        stack.docker(*args, check=False)
        if proof.exists():
            break
        time.sleep(0.5)
    assert proof.exists(), "control: the output did not follow the planted link"


# ---------------------------------------------------------------- legit work keeps working


def agent_dir(name: str) -> Path:
    path = BASE / name
    path.mkdir(parents=True)
    for p in (BASE, path):
        shutil.chown(p, AGENT, AGENT)
    return path


def test_relative_symlinks_resolve_inside_the_container(stack: Stack, target: Path) -> None:
    project = agent_dir("project")
    (project / "d").mkdir()
    (project / "d" / "f").write_text("through the link\n")
    (project / "link").symlink_to("d")
    result = stack.ssh(f"docker run --rm -v {project}:/p {IMAGE} cat /p/link/f")
    assert result.stdout == b"through the link\n", result.stderr


def test_the_same_directory_in_two_containers_and_siblings(stack: Stack, target: Path) -> None:
    shared = agent_dir("shared")
    first = stack.ssh(f"docker run -d --name {NAME}-one -v {shared}:/s {IMAGE} sleep 60")
    assert first.returncode == 0, first.stderr
    second = stack.ssh(f"docker run --rm -v {shared}/:/s {IMAGE} touch /s/two")
    assert second.returncode == 0, second.stderr
    (shared / "a").mkdir()
    (shared / "b").mkdir()
    siblings = stack.ssh(f"docker run --rm -v {BASE}/x:/x -v {BASE}/y:/y {IMAGE} true")
    assert siblings.returncode == 0, siblings.stderr
    since = audit_offset()
    below = stack.ssh(f"docker run --rm -v {shared}/a:/a {IMAGE} true")
    assert_refused(stack, below, since, rule="host-path-nested")
    assert f"container '{NAME}-one'".encode() in below.stderr, below.stderr


def test_dot_files_below_the_top_level(stack: Stack, target: Path) -> None:
    project = agent_dir("dotted")
    (project / ".env").write_text("GK_FROM_DOTENV=yes\n")
    (project / ".git").mkdir()
    (project / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    env = stack.ssh(f"docker run --rm --env-file {project}/.env {IMAGE} env")
    assert b"GK_FROM_DOTENV=yes" in env.stdout, env.stderr
    git = stack.ssh(f"docker run --rm -v {project}/.git:/g:ro {IMAGE} cat /g/HEAD")
    assert git.stdout == b"ref: refs/heads/main\n", git.stderr
    since = audit_offset()
    top = stack.ssh(f"docker run --rm -v {AGENT_HOME}/.ssh:/s {IMAGE} true")
    assert_refused(stack, top, since, rule="host-path-hidden")


def test_env_file_swapped_after_the_decision_is_not_read(stack: Stack, target: Path) -> None:
    """Item 3 (client reads): a container bound above an env file flips it between a plain
    file and a symlink to a file outside the root. The CLI reads it after the decision; as
    root (the control) it soon reads the outside file. Through gatekeeper docker gets the
    bytes the decision read (a sealed memfd), so the outside value never arrives."""
    case = Case("env-file", "swap", "both")
    case.prepare()
    (TARGET / "canary.env").write_text("GK_SWAP_CANARY=leaked\n")
    if stack.mode == PROXY_ALONE:  # the unvetted CLI reads as the agent: the canary root's alone
        (TARGET / "canary.env").chmod(0o600)
    env_file = f"{case.p}/app.env"
    flip = (f"while true; do echo GK_SAFE=1 > /w/app.new; mv /w/app.new /w/app.env; sleep 0.02; "
            f"ln -sfn {TARGET}/canary.env /w/app.env; sleep 0.02; done")
    started = stack.ssh(as_command(["docker", "run", "-d", "--name", f"{NAME}-flipper", "-v", f"{case.p}:/w",
                                    IMAGE, "sh", "-c", flip]))
    assert started.returncode == 0, started.stderr
    assert wait_for("flipping", lambda: Path(env_file).exists() or Path(env_file).is_symlink())
    command = ["run", "--rm", "--env-file", env_file, IMAGE, "env"]
    seen = []
    for _ in range(12):
        result = stack.ssh(as_command(["docker", *command]))
        assert b"leaked" not in result.stdout + result.stderr
        seen.append(result.returncode)
    assert 0 in seen, "no run got through at all"  # the benign file, pinned
    # ln -sfn unlinks before it links: root's CLI may find no file at all (exit 125); only a
    # read of the swapped-in file counts.
    assert any(b"leaked" in stack.docker(*command, check=False).stdout.encode() for _ in range(30)), \
        "control: root's CLI never read the swapped-in file"
