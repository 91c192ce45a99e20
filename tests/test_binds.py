"""The disjoint-bind invariant (gatekeeper.vetting.binds), against a fake engine.

The engine resolves a bind source again at every start; a container that can
write a parent directory swaps a child for a symlink to / in between. So a new
bind source may not be a strict ancestor or descendant of any bind source the
agent's containers hold (any profile, any state) or a live session has in
flight; client outputs may not touch one at all.

Engine contents (every container carries gatekeeper.owner unless said):
    web      /home/ai-worker/w                 running, profile default
    old      /home/ai-worker/stopped/data      exited (can be started again)
    bot      /home/ai-worker/botdir            profile 'bot' (same uid, same home)
    legacy   /home/ai-worker/l and /home/ai-worker/l/a/etc   made before this rule
    proj-a   /home/ai-worker/p/src             compose project 'proj'
    proj-b   /home/ai-worker/p                 compose project 'proj' (nested with proj-a)
    secret   /home/ai-worker/s/token.txt       a compose secret (HostConfig.Mounts)
    theirs   /home/ai-worker/op                the operator's (no owner label): not in E
"""

# One case per line keeps each command beside its expected rule; such lines run long.
# ruff: noqa: E501

from __future__ import annotations

import json

import pytest

from gatekeeper.decision import decide
from gatekeeper.policy import load_policy
from gatekeeper.vetting.binds import CONTAINER_FORMAT, OWNED_CONTAINERS, normal, overlapping, strictly_nested
from tests.fakes import StaticWorld

H = "/home/ai-worker"


class Box:
    def __init__(self, name: str, binds: list[str], mounts: list[str] = (), owner: str | None = "default",
                 project: str = "") -> None:
        self.ident = (name.encode().hex() + "0" * 64)[:64]
        self.name, self.binds, self.mounts, self.owner, self.project = name, binds, list(mounts), owner, project


ENGINE = [
    Box("web", [f"{H}/w:/w"]),
    Box("old", [f"{H}/stopped/data:/d:ro"]),
    Box("bot", [f"{H}/botdir:/b"], owner="bot"),
    Box("legacy", [f"{H}/l:/l", f"{H}/l/a/etc:/e"]),
    Box("proj-a", [], mounts=[f"{H}/p/src"], project="proj"),
    Box("proj-b", [f"{H}/p:/p"], project="proj"),
    Box("secret", [], mounts=[f"{H}/s/token.txt"]),
    Box("theirs", [f"{H}/op:/op"], owner=None),
]


class BindsEngine(StaticWorld):
    """Answers the invariant's two queries (and the ownership rails') from ENGINE."""

    def __init__(self, boxes: list[Box], claims: list[tuple[str, str]] = ()) -> None:
        super().__init__()
        self.boxes, self.claims, self.calls = boxes, list(claims), []

    def claims_in_flight(self, policy: object) -> list[tuple[str, str]]:
        self.calls.append(["claims"])
        return self.claims

    def run_docker(self, policy, args, stdin=None, timeout=60.0):  # type: ignore[no-untyped-def]
        self.calls.append(args)
        if args == OWNED_CONTAINERS:
            return 0, "".join(b.ident + "\n" for b in self.boxes if b.owner).encode(), b""
        if args[:4] == ["container", "inspect", "--format", CONTAINER_FORMAT]:
            assert args[4] == "--"
            return self.inspect(args[5:])
        if args[:3] == ["container", "inspect", "--format"]:  # the ownership rails
            hits = [self.find(w) for w in args[5:]]
            mine = [{"gatekeeper.owner": b.owner, "gatekeeper.created": b.owner} if b.owner else None for b in hits]  # its create set both
            lines = [f"{b.ident}\t{json.dumps('/' + b.name)}\t{json.dumps(labels)}\timage-of-{b.name}\n" for b, labels in zip(hits, mine, strict=True)]
            return 0, "".join(lines).encode(), b""
        return super().run_docker(policy, args, stdin, timeout)

    def find(self, word: str) -> Box:
        return next(b for b in self.boxes if word in (b.name, b.ident) or b.ident.startswith(word))

    def inspect(self, words: list[str]) -> tuple[int, bytes, bytes]:
        lines = []
        for word in words:
            box = self.find(word)
            mounts = [{"Type": "bind", "Source": s, "Target": "/m"} for s in box.mounts]
            points = [{"Type": "bind", "Source": s.split(":")[0]} for s in box.binds] + [{"Type": "volume", "Source": "/var/lib/docker/volumes/x/_data"}]
            labels = {"com.docker.compose.project": box.project} if box.project else None
            container = {"Id": box.ident, "Name": "/" + box.name, "Config": {"Labels": labels},
                         "HostConfig": {"Binds": box.binds or None, "Mounts": mounts or None}, "Mounts": points}
            lines.append(json.dumps(container) + "\n")
        return 0, "".join(lines).encode(), b""


@pytest.fixture(scope="module")
def policy():  # type: ignore[no-untyped-def]
    return load_policy(None)


def decided(command: str, policy, world=None):  # type: ignore[no-untyped-def]
    return decide(command, policy, world or BindsEngine(ENGINE))


# (command, expected rule or "allowed"); the trick each one tries is in the comment above it.
CASES = [
    # -- beside the agent's running container web (/home/ai-worker/w)
    ("docker run -v /home/ai-worker/w/a/etc:/e img", "host-path-nested"),  # below web's source: web swaps w/a for a link to /
    ("docker run -v /home/ai-worker:/h img", "host-path"),  # the root itself: the path rule already
    ("docker run -v /home/ai-worker/w/a/etc/:/e img", "host-path-nested"),  # trailing slash
    ("docker run -v /home/ai-worker/./w/a/../a/etc:/e img", "host-path-nested"),  # . and .. spellings
    ("docker run -v ./w//a:/e img", "host-path-nested"),  # relative, doubled separator
    ("docker run --mount type=bind,src=/home/ai-worker/w/a,dst=/a img", "host-path-nested"),  # --mount src=
    ("docker run --mount type=bind,source=./w/a,target=/a,readonly img", "host-path-nested"),  # source=, readonly
    ("docker create -v /home/ai-worker/w/x:/x img", "host-path-nested"),  # create: started later
    ("docker run -v /home/ai-worker/w:/w img", "allowed"),  # equal: the same directory, shared
    ("docker run -v /home/ai-worker/w/:/w:ro img", "allowed"),  # equal with a trailing slash
    ("docker run -v /home/ai-worker/wx:/w img", "allowed"),  # a shared prefix is not a parent
    ("docker run -v /home/ai-worker/w-2:/w img", "allowed"),
    ("docker run -v /home/ai-worker/v/w:/w img", "allowed"),
    # -- stopped containers count: they can be started again
    ("docker run -v /home/ai-worker/stopped:/s img", "host-path-nested"),  # above old's source
    ("docker run -v /home/ai-worker/stopped/data/x:/s img", "host-path-nested"),
    ("docker run -v /home/ai-worker/stopped/other:/s img", "allowed"),  # a sibling
    # -- another profile's container: same uid, same home
    ("docker run -v /home/ai-worker/botdir/sub:/s img", "host-path-nested"),
    # -- a compose secret is a bind of a file
    ("docker run -v /home/ai-worker/s:/s img", "host-path-nested"),
    ("docker run -v /home/ai-worker/s/token.txt:/t:ro img", "allowed"),
    # -- the operator's container is not the agent's: not in E
    ("docker run -v /home/ai-worker/op/sub:/s img", "allowed"),
    # -- client outputs never on a bind path, equal included
    ("docker run -d --cidfile /home/ai-worker/w/cid img", "host-path-output"),
    ("docker run -d --cidfile /home/ai-worker/w img", "host-path-output"),
    ("docker run -d --cidfile /home/ai-worker/run/cid img", "allowed"),
    ("docker build -o type=local,dest=/home/ai-worker/w work/app", "host-path-output"),
    ("docker build -o /home/ai-worker/w/out work/app", "host-path-output"),
    ("docker build -o type=local,dest=/home/ai-worker work/app", "host-path"),
    ("docker build -o type=local,dest=/home/ai-worker/out work/app", "allowed"),
    ("docker build --iidfile /home/ai-worker/w/iid work/app", "host-path-output"),
    ("docker build --iidfile /home/ai-worker/iid work/app", "allowed"),
    ("docker build --metadata-file /home/ai-worker/stopped/data/meta.json work/app", "host-path-output"),
    ("docker build --metadata-file /home/ai-worker/stopped/meta.json work/app", "allowed"),  # beside a bind, not on it
    ("docker build --cache-to type=local,dest=/home/ai-worker/w/cache work/app", "host-path-output"),
    # -- reads are not outputs: building from a bound directory is fine
    ("docker build -t app /home/ai-worker/w", "allowed"),
    ("docker build -f /home/ai-worker/w/Dockerfile /home/ai-worker/w", "allowed"),
    ("docker run --rm --env-file /home/ai-worker/w/.env img", "allowed"),
    ("docker build --cache-from type=local,src=/home/ai-worker/w/cache work/app", "allowed"),
    # -- starting an existing container re-checks its own sources
    ("docker start legacy", "host-path-nested"),
    ("docker restart legacy", "host-path-nested"),
    ("docker container start web legacy", "host-path-nested"),
    ("docker start web", "allowed"),
    ("docker restart old", "allowed"),
    # -- --volumes-from would inherit another container's binds
    ("docker run --volumes-from web img", "flag-volumes-from"),
]


@pytest.mark.parametrize(("command", "expected"), CASES, ids=[c for c, _ in CASES])
def test_invariant(command: str, expected: str, policy) -> None:  # type: ignore[no-untyped-def]
    decision = decided(command, policy)
    assert decision.rule == expected, decision.reason


def test_the_denial_names_the_container_why_and_what_instead(policy) -> None:  # type: ignore[no-untyped-def]
    reason = decided("docker run -v /home/ai-worker/w/a/etc:/e img", policy).reason
    assert "container 'web'" in reason and "'/home/ai-worker/w'" in reason
    assert "swap the child for a symlink" in reason
    assert "bind the same directory, or sibling directories, or remove container 'web'" in reason


def test_the_start_denial_names_both_sources(policy) -> None:  # type: ignore[no-untyped-def]
    reason = decided("docker start legacy", policy).reason
    assert "'/home/ai-worker/l'" in reason and "'/home/ai-worker/l/a/etc'" in reason


def test_in_flight_sessions_count(policy) -> None:  # type: ignore[no-untyped-def]
    """Two sessions could each pass alone and together break the rule: live claims count as E."""
    world = BindsEngine([], claims=[("bind", f"{H}/q"), ("output", f"{H}/out")])
    assert decided("docker run -v /home/ai-worker/q/a:/a img", policy, world).rule == "host-path-nested"
    assert decided("docker run -v /home/ai-worker/q:/q img", policy, world).allowed
    assert decided("docker run -v /home/ai-worker/out:/o img", policy, world).rule == "host-path-output"
    assert decided("docker run -v /home/ai-worker/out/x:/o img", policy, world).rule == "host-path-output"
    assert decided("docker run -d --cidfile /home/ai-worker/q/cid img", policy, world).rule == "host-path-output"


def test_in_flight_is_read_before_the_engine(policy) -> None:  # type: ignore[no-untyped-def]
    """A session that ends between the two reads has created its container by then."""
    world = BindsEngine(ENGINE)
    decided("docker run -v /home/ai-worker/new:/n img", policy, world)
    assert world.calls[0] == ["claims"] and world.calls[1] == OWNED_CONTAINERS


def test_commands_without_host_paths_ask_nothing(policy) -> None:  # type: ignore[no-untyped-def]
    world = BindsEngine(ENGINE)
    assert decided("docker run --rm -v data:/d img true", policy, world).allowed
    assert ["claims"] not in world.calls and OWNED_CONTAINERS not in world.calls


def test_the_decision_carries_its_claims(policy) -> None:  # type: ignore[no-untyped-def]
    decision = decided("docker run -d --cidfile /home/ai-worker/run/cid -v ./new/:/n img", policy)
    assert decision.claims == [("bind", f"{H}/new"), ("output", f"{H}/run/cid")]


def test_an_engine_that_cannot_answer_denies(policy) -> None:  # type: ignore[no-untyped-def]
    class Down(BindsEngine):
        def run_docker(self, policy, args, stdin=None, timeout=60.0):  # type: ignore[no-untyped-def]
            return 1, b"", b"Cannot connect to the Docker daemon"

    decision = decided("docker run -v ./new:/n img", policy, Down([]))
    assert decision.rule == "host-path-unresolved", decision.reason


@pytest.mark.parametrize("slow", ["listing", "inspect"])
def test_an_engine_that_does_not_answer_in_time_denies(policy, slow: str) -> None:  # type: ignore[no-untyped-def]
    """Either query timing out leaves the sources unknown: a denial naming it. Control: the
    same command with an engine that answers is allowed."""
    import subprocess

    class Slow(BindsEngine):
        def run_docker(self, policy, args, stdin=None, timeout=60.0):  # type: ignore[no-untyped-def]
            if (args[:2] == ["container", "inspect"]) == (slow == "inspect"):
                raise subprocess.TimeoutExpired(["docker", *args], timeout)
            return super().run_docker(policy, args, stdin, timeout)

    assert decided("docker run -v ./new:/n img", policy).allowed
    decision = decided("docker run -v ./new:/n img", policy, Slow(ENGINE))
    assert decision.rule == "host-path-unresolved", decision.reason
    assert "the engine did not answer" in decision.reason


def test_a_source_swapped_before_the_rule_counts_where_it_points(policy, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A legacy container whose source became a link: its resolved form counts too."""
    world = BindsEngine([Box("swapped", [f"{H}/link:/l"])])
    world.links = {f"{H}/link": f"{H}/real"}
    assert decided("docker run -v /home/ai-worker/real/x:/x img", policy, world).rule == "host-path-nested"


# -- compose: start/restart/up start the project's containers as they were made


def compose_decision(subcommand: str, project: str, policy, world):  # type: ignore[no-untyped-def]
    """A compose command whose rendered model is `project` (no compose binary needed)."""
    from gatekeeper.vetting import compose

    model = {"name": project, "services": {"s": {"image": "img"}}}
    original = compose.vet_compose

    def pinned(ctx):  # type: ignore[no-untyped-def]
        ctx.vetted.compose_model = json.loads(json.dumps(model))

    compose.vet_compose = pinned
    try:
        return decide(f"docker compose -f work/c.yaml {subcommand}", policy, world)
    finally:
        compose.vet_compose = original


@pytest.mark.parametrize("subcommand", ["start", "restart", "up -d"])
def test_compose_refuses_a_project_with_nested_containers(subcommand: str, policy) -> None:  # type: ignore[no-untyped-def]
    decision = compose_decision(subcommand, "proj", policy, BindsEngine(ENGINE))
    assert decision.rule == "host-path-nested", decision.reason


@pytest.mark.parametrize("subcommand", ["start", "restart", "up -d"])
def test_compose_starts_a_clean_project(subcommand: str, policy) -> None:  # type: ignore[no-untyped-def]
    world = BindsEngine([b for b in ENGINE if b.name != "proj-b"])
    decision = compose_decision(subcommand, "proj", policy, world)
    assert decision.allowed, decision.reason


# -- the comparison itself


@pytest.mark.parametrize(
    ("a", "b", "nested", "overlap"),
    [
        ("/home/ai-worker/w", "/home/ai-worker/w/a/etc", True, True),
        ("/home/ai-worker/ab", "/home/ai-worker/a", False, False),
        ("/home/ai-worker/a", "/home/ai-worker/a", False, True),
        ("/", "/home", True, True),
        ("/home/ai-worker/a.b", "/home/ai-worker/a", False, False),
    ],
)
def test_comparison(a: str, b: str, nested: bool, overlap: bool) -> None:
    assert strictly_nested(a, b) is nested and strictly_nested(b, a) is nested
    assert overlapping(a, b) is overlap


@pytest.mark.parametrize(
    ("raw", "normalised"),
    [("/a/b/", "/a/b"), ("//a//b", "/a/b"), ("/a/./b/../c", "/a/c"), ("/", "/"), ("/..", "/")],
)
def test_normal(raw: str, normalised: str) -> None:
    assert normal(raw) == normalised


def test_the_vetting_guard_knows_every_starting_command() -> None:
    """gatekeeper.vetting loads this module only for commands with host paths or in
    STARTS_CONTAINERS: a starting command missing there would skip rule 3 unseen."""
    from gatekeeper.vetting import STARTS_CONTAINERS
    from gatekeeper.vetting.binds import COMPOSE_STARTING, STARTING

    assert STARTS_CONTAINERS == STARTING | COMPOSE_STARTING
