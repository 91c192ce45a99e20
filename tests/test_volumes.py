# One case per line keeps each command beside its expectation; such lines run long.
# ruff: noqa: E501

"""Named volumes (gatekeeper.vetting.volumes): only the agent's own, only plain ones.

* An existing volume with driver options is a bind in disguise: refused.
* An existing volume without the agent's owner label is someone else's data: refused
  in every spelling, unless [shared] volumes names it.
* A volume that does not exist yet is allowed, and the decision asks execution to
  create it first, labelled as the agent's ("volume-create" prepared step).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from gatekeeper.decision import decide
from gatekeeper.policy import load_policy
from gatekeeper.vetting.volumes import VOLUME_FORMAT
from tests.fakes import StaticWorld

MINE = '{"gatekeeper.owner":"default"}'


class VolumeEngine(StaticWorld):
    """An engine that knows some volumes; everything else as StaticWorld assumes.
    Like docker, it prints an empty line when it found none of the names."""

    def __init__(self, volumes: dict[str, tuple[str, str, str]]) -> None:
        super().__init__()
        self.volumes = volumes
        self.queries: list[list[str]] = []

    def run_docker(self, policy: object, args: list[str], stdin: bytes | None = None,
                   timeout: float = 60.0) -> tuple[int, bytes, bytes]:
        if args[:4] == ["volume", "inspect", "--format", VOLUME_FORMAT]:
            self.queries.append(args)
            names = args[args.index("--") + 1 :]
            found = [f"{n}\t{d}\t{o}\t{lab}\n" for n, (d, o, lab) in self.volumes.items() if n in names]
            missing = len(found) < len(names)
            out = "".join(found) or "\n"
            return (1 if missing else 0), out.encode(), b"Error: No such volume" if missing else b""
        return super().run_docker(policy, args, stdin, timeout)


ENGINE = {
    "plain": ("local", "null", MINE),
    "empty-opts": ("local", "{}", MINE),
    "operator-bind": ("local", '{"device":"/srv/secrets","o":"bind","type":"none"}', "null"),
    "nfs": ("local", '{"device":":/export","o":"addr=10.0.0.1","type":"nfs"}', MINE),
    "plugin": ("rexray", "null", MINE),
    "pgdata": ("local", "null", "null"),  # the operator's database
    "botdata": ("local", "null", '{"gatekeeper.owner":"bot"}'),
    "cache-shared": ("local", "null", "{}"),
}

CASES = [
    ("new volume", "docker run --rm -v fresh:/x alpine true", ""),
    ("plain existing volume of its own", "docker run --rm -v plain:/x alpine true", ""),
    ("empty options", "docker run --rm -v empty-opts:/x alpine true", ""),
    ("anonymous volume", "docker run --rm -v /x alpine true", ""),
    ("new volume via --mount", "docker create --mount type=volume,src=fresh2,dst=/x alpine", ""),
    ("bind in volume form", "docker run --rm -v operator-bind:/x alpine cat /x/key", "volume-backed"),
    ("bind via --mount", "docker run --rm --mount source=operator-bind,target=/x alpine true", "volume-backed"),
    ("bind via --mount type=volume", "docker run --rm --mount type=volume,src=operator-bind,dst=/x alpine", "volume-backed"),
    ("nfs mount", "docker run --rm -v nfs:/x alpine true", "volume-backed"),
    ("plugin driver", "docker create -v plugin:/x alpine", "volume-backed"),
    ("one bad among good", "docker run --rm -v plain:/a -v operator-bind:/b alpine true", "volume-backed"),
]

# Someone else's plain volume, in every spelling docker reads a volume name from.
TRYING_TO_CHEAT = [
    ("-v", "docker run --rm -v pgdata:/d alpine cat /d/PG_VERSION"),
    ("-v read-only", "docker run --rm -v pgdata:/d:ro alpine true"),
    ("--volume=", "docker create --volume=pgdata:/d alpine"),
    ("--mount src=", "docker run --rm --mount src=pgdata,dst=/d alpine"),
    ("--mount source= type=volume", "docker run --rm --mount type=volume,source=pgdata,target=/d alpine"),
    ("--mount type in capitals", "docker run --rm --mount TYPE=volume,Source=pgdata,dst=/d alpine"),
    ("among own volumes", "docker run --rm -v plain:/a -v fresh:/b -v pgdata:/c alpine"),
    ("another profile's", "docker run --rm -v botdata:/d alpine"),
    ("gatekeeper's own names", "docker run --rm -v gatekeeper-pull-x:/d alpine"),
]


@pytest.mark.parametrize(("why", "command", "rule"), CASES, ids=[c[0] for c in CASES])
def test_existing_volume_options(why: str, command: str, rule: str) -> None:
    decision = decide(command, load_policy(None), VolumeEngine(ENGINE))
    assert decision.allowed is (not rule), decision.reason
    if rule:
        assert decision.rule == rule


@pytest.mark.parametrize(("why", "command"), TRYING_TO_CHEAT, ids=[c[0] for c in TRYING_TO_CHEAT])
def test_someone_elses_volume_is_refused(why: str, command: str) -> None:
    decision = decide(command, load_policy(None), VolumeEngine(ENGINE))
    assert not decision.allowed and decision.rule == "foreign-volume", decision.reason


def test_shared_volumes_widen_it_by_name(tmp_path: Path) -> None:
    path = tmp_path / "p.toml"
    path.write_text('[shared]\nvolumes = ["cache-*"]\n')
    policy = load_policy(str(path))
    assert decide("docker run --rm -v cache-shared:/c alpine", policy, VolumeEngine(ENGINE)).allowed
    assert decide("docker run --rm -v pgdata:/c alpine", policy, VolumeEngine(ENGINE)).rule == "foreign-volume"


def test_a_new_volume_is_created_labelled_before_the_run() -> None:
    decision = decide("docker run -d -v pgdata2:/var/lib/postgresql/data -v plain:/p alpine", load_policy(None), VolumeEngine(ENGINE))
    assert decision.allowed, decision.reason
    assert decision.prepare == [("volume-create", "pgdata2")]  # not the existing one
    assert decision.as_dict()["steps"] == [["volume-create", "pgdata2"]]


def test_none_found_is_an_empty_line_not_an_error() -> None:
    """docker prints an empty line when none of the names exists (issue 11 item 2)."""
    decision = decide("docker run -v a1:/a -v b2:/b alpine", load_policy(None), VolumeEngine({}))
    assert decision.allowed, decision.reason
    assert decision.prepare == [("volume-create", "a1"), ("volume-create", "b2")]


def test_all_names_in_one_query_after_double_dash() -> None:
    world = VolumeEngine(ENGINE)
    decide("docker run --rm -v plain:/a -v fresh:/b alpine true", load_policy(None), world)
    assert world.queries == [["volume", "inspect", "--format", VOLUME_FORMAT, "--", "fresh", "plain"]]


def test_compose_creates_its_own_volumes_but_not_those_of_run_v() -> None:
    """A project's volumes get the owner label in the model; `compose run -v NEW:/d`
    is created labelled first, like docker run's."""
    import json
    from types import SimpleNamespace

    from gatekeeper.vetting.volumes import check_existing_volumes

    model = {"name": "p", "volumes": {"data": {"name": "p_data"}}}
    ctx = SimpleNamespace(
        located=SimpleNamespace(canonical="compose run"), policy=load_policy(None), world=VolumeEngine({}),
        vetted=SimpleNamespace(named_volumes=["p_data", "scratch"], compose_model=json.loads(json.dumps(model)), prepare=[]),
    )
    check_existing_volumes(ctx)
    assert ctx.vetted.prepare == [("volume-create", "scratch")]


class DeadEngine(VolumeEngine):
    """The engine does not answer: docker exits 1 with a connection error, no lines."""

    def run_docker(self, policy: object, args: list[str], stdin: bytes | None = None,
                   timeout: float = 60.0) -> tuple[int, bytes, bytes]:
        if args[:2] == ["volume", "inspect"]:
            return 1, b"", b"Cannot connect to the Docker daemon at unix:///var/run/docker.sock."
        return super().run_docker(policy, args, stdin, timeout)


@pytest.mark.parametrize("command", [
    "docker run --rm -v pgdata:/x alpine true",
    "docker run --rm --mount source=pgdata,target=/x alpine true",
])
def test_an_engine_that_does_not_answer_is_not_no_such_volume(command: str) -> None:
    """Trying to cheat: a failed query must not read as "none exist" (pgdata would pass)."""
    decision = decide(command, load_policy(None), DeadEngine({}))
    assert (decision.allowed, decision.rule) == (False, "volume-backed")
    assert "cannot ask the engine about volumes" in decision.reason
