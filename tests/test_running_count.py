"""[limits] max_running counts every container that will run (issue 18 item 2).

The attack: `max_running = 3` ended with 10 of the agent's containers running,
because compose scale/replicas counted as one, `compose run -d`, `restart` of a
stopped container and compose start/restart were not counted, and concurrent
sessions each saw room. Every case below is decided twice: without the cap (the
control, allowed) and with it (the count is exact: allowed at the cap, refused
past it). In-flight claims of other live sessions count until the engine shows
their containers.
"""

# One case per line keeps each input beside its expectation; such lines run long.
# ruff: noqa: E501

from __future__ import annotations

from pathlib import Path

import pytest

from gatekeeper.decision import decide
from gatekeeper.errors import Denied
from gatekeeper.grammar.spec import v
from gatekeeper.policy import load_policy
from gatekeeper.vetting import running
from gatekeeper.vetting.context import Vetted
from tests.fakes import StaticWorld


class Engine(StaticWorld):
    """The owner's running containers as (start token, project), container states by
    name, a project's containers, and the claims of other live sessions."""

    def __init__(self, containers: list[tuple[str, str]] = (), states: dict[str, bool] | None = None,  # type: ignore[assignment]
                 project: int = 0, claims: list[tuple[str, str]] = ()) -> None:  # type: ignore[assignment]
        super().__init__()
        self.containers, self.states, self.project, self.claims = list(containers), states or {}, project, list(claims)

    def claims_in_flight(self, policy: object) -> list[tuple[str, str]]:
        return self.claims

    def run_docker(self, policy: object, args: list[str], stdin: bytes | None = None, timeout: float = 60.0):  # type: ignore[no-untyped-def]
        if args[:2] == ["container", "ls"] and "-a" in args:
            return 0, b"".join(b"%064x\n" % i for i in range(self.project)), b""
        if args[:2] == ["container", "ls"] and "--format" in args:
            return 0, "".join(f"{token}\t{project}\n" for token, project in self.containers).encode(), b""
        if args[:3] == ["container", "inspect", "--format"] and args[3] == "{{.State.Running}}":
            return 0, "".join(f"{str(self.states.get(n, False)).lower()}\n" for n in args[5:]).encode(), b""
        return super().run_docker(policy, args, stdin, timeout)


def policy(tmp_path: Path, cap: int):  # type: ignore[no-untyped-def]
    path = tmp_path / f"policy-{cap}.toml"
    path.write_text(f"[limits]\nmax_running = {cap}\n" if cap else "")
    return load_policy(str(path))


# (command, engine, cap): allowed at cap, refused at cap - 1, allowed with no cap (control)
CLI_CASES = {
    "run with 2 running": ("docker run -d img", Engine([("a", ""), ("b", "")]), 3),
    "run with another session starting 2": ("docker run -d img", Engine(claims=[("start", "label:x\t2")]), 3),
    "run, the other session's container already up": ("docker run -d img", Engine([("x", "")], claims=[("start", "label:x\t1")]), 2),
    "start of two stopped": ("docker start a b", Engine([("r", "")], {"a": False, "b": False}), 3),
    "start of a running one starts nothing": ("docker start a b", Engine([("r", ""), ("a", "")], {"a": True, "b": False}), 3),
    "restart of a stopped one": ("docker restart a", Engine([("r", "")], {"a": False}), 2),
    "a compose project starting 3 in flight": ("docker run -d img", Engine(claims=[("start", "project:p\t3")]), 4),
    # running without a start token or a project (run before the cap was set, docker create + start):
    # docker prints "\t" for each; they were dropped as blank lines and never counted
    "run with 2 running, unlabelled": ("docker run -d img", Engine([("", ""), ("", "")]), 3),
    "start with 2 running, unlabelled": ("docker start a", Engine([("", ""), ("", "")], {"a": False}), 3),
}


@pytest.mark.parametrize(("command", "engine", "cap"), CLI_CASES.values(), ids=CLI_CASES.keys())
def test_cli_counts(tmp_path: Path, command: str, engine: Engine, cap: int) -> None:
    assert decide(command, policy(tmp_path, 0), engine).allowed  # control: no cap
    assert decide(command, policy(tmp_path, cap), engine).allowed
    refused = decide(command, policy(tmp_path, cap - 1), engine)
    assert (refused.allowed, refused.rule) == (False, "limit-running"), refused.reason


def test_restart_of_running_containers_needs_no_room(tmp_path: Path) -> None:
    engine = Engine([("a", ""), ("b", "")], {"a": True})
    assert decide("docker restart a", policy(tmp_path, 2), engine).allowed
    assert decide("docker restart a", policy(tmp_path, 1), engine).allowed  # even over a lowered cap


def test_run_claims_and_labels_what_it_starts(tmp_path: Path) -> None:
    decision = decide("docker run -d img", policy(tmp_path, 3), Engine())
    assert decision.argv is not None
    labels = [word for word in decision.argv if word.startswith("gatekeeper.start=")]
    assert len(labels) == 1
    token = labels[0].split("=", 1)[1]
    assert ("start", f"label:{token}\t1") in decision.claims


class Parsed:
    def __init__(self, positionals: list[str], scale: list[str] = ()) -> None:  # type: ignore[assignment]
        self.positionals = positionals
        self.uses = [Use(value) for value in scale]


class Use:
    def __init__(self, value: str) -> None:
        self.flag = v("scale")
        self.value = value


class Located:
    def __init__(self, canonical: str) -> None:
        self.canonical = canonical


class Ctx:
    def __init__(self, canonical: str, engine: Engine, positionals: list[str] = (), scale: list[str] = ()) -> None:  # type: ignore[assignment]
        self.located = Located(canonical)
        self.parsed = Parsed(list(positionals), scale)
        self.policy = load_policy(None)
        self.world = engine
        self.vetted = Vetted()


MODEL = {
    "name": "p",
    "services": {
        "web": {"image": "x", "scale": 3, "depends_on": {"db": {"condition": "service_started"}}},
        "db": {"image": "x", "deploy": {"replicas": 2}},
        "job": {"image": "x"},
    },
}

# (subcommand, positionals, --scale, engine, containers the command will have running)
COMPOSE_CASES = {
    "up: scale and replicas add up": ("compose up", [], [], Engine(), 6),
    "up web: web and what it depends on": ("compose up", ["web"], [], Engine(), 5),
    "up --scale overrides": ("compose up", ["job"], ["job=4"], Engine(), 4),
    "up again: the project's own are not counted twice": ("compose up", [], [], Engine([("", "p")] * 6), 6),
    "up beside another project": ("compose up", ["job"], [], Engine([("", "other")] * 2), 3),
    "run job: one": ("compose run", ["job"], [], Engine(), 1),
    "run web: one plus its dependencies": ("compose run", ["web"], [], Engine(), 3),
    "start: every container of the project": ("compose start", [], [], Engine(project=4), 4),
    "restart beside others": ("compose restart", [], [], Engine([("a", "")], project=2), 3),
}


@pytest.mark.parametrize(("canonical", "names", "scale", "engine", "total"), COMPOSE_CASES.values(), ids=COMPOSE_CASES.keys())
def test_compose_counts(canonical: str, names: list[str], scale: list[str], engine: Engine, total: int) -> None:
    running.check_compose(Ctx(canonical, engine, names, scale), total, MODEL)  # exactly at the cap
    with pytest.raises(Denied) as denied:
        running.check_compose(Ctx(canonical, engine, names, scale), total - 1, MODEL)
    assert denied.value.rule == "limit-running"


def test_compose_claims_by_project() -> None:
    ctx = Ctx("compose up", Engine(), [])
    running.check_compose(ctx, 10, MODEL)
    assert ctx.vetted.claims() == [("start", "project:p\t6")]


@pytest.mark.parametrize(("value", "containers", "expected"), [
    ("label:t\t2", [], 2), ("label:t\t2", [("t", "")], 1), ("label:t\t1", [("t", ""), ("t", "")], 0),
    ("project:p\t3", [("", "p")], 2), ("garbage", [], 0), ("label:t\tx", [], 0),
])
def test_unaccounted(value: str, containers: list[tuple[str, str]], expected: int) -> None:
    assert running.unaccounted(value, containers) == expected
