# One case per line keeps each command beside its expectation; such lines run long.
# ruff: noqa: E501

"""Existing named volumes with driver options are binds in disguise: refused."""

from __future__ import annotations

import pytest

from gatekeeper.decision import StaticWorld, decide
from gatekeeper.policy import load_policy
from gatekeeper.vetting.volumes import VOLUME_FORMAT


class VolumeEngine(StaticWorld):
    """An engine that knows some volumes; everything else as StaticWorld assumes."""

    def __init__(self, volumes: dict[str, tuple[str, str]]) -> None:
        super().__init__()
        self.volumes = volumes
        self.queries: list[list[str]] = []

    def run_docker(self, policy: object, args: list[str], stdin: bytes | None = None,
                   timeout: float = 60.0) -> tuple[int, bytes, bytes]:
        if args[:4] == ["volume", "inspect", "--format", VOLUME_FORMAT]:
            self.queries.append(args)
            names = args[args.index("--") + 1 :]
            found = [f"{n}\t{d}\t{o}\n" for n, (d, o) in self.volumes.items() if n in names]
            missing = len(found) < len(names)
            return (1 if missing else 0), "".join(found).encode(), b"Error: No such volume" if missing else b""
        return super().run_docker(policy, args, stdin, timeout)


ENGINE = {
    "plain": ("local", "null"),
    "empty-opts": ("local", "{}"),
    "operator-bind": ("local", '{"device":"/srv/secrets","o":"bind","type":"none"}'),
    "nfs": ("local", '{"device":":/export","o":"addr=10.0.0.1","type":"nfs"}'),
    "plugin": ("rexray", "null"),
}

CASES = [
    ("new volume", "docker run --rm -v fresh:/x alpine true", True),
    ("plain existing volume", "docker run --rm -v plain:/x alpine true", True),
    ("empty options", "docker run --rm -v empty-opts:/x alpine true", True),
    ("anonymous volume", "docker run --rm -v /x alpine true", True),
    ("bind in volume form", "docker run --rm -v operator-bind:/x alpine cat /x/key", False),
    ("bind via --mount", "docker run --rm --mount source=operator-bind,target=/x alpine true", False),
    ("bind via --mount type=volume", "docker run --rm --mount type=volume,src=operator-bind,dst=/x alpine", False),
    ("nfs mount", "docker run --rm -v nfs:/x alpine true", False),
    ("plugin driver", "docker create -v plugin:/x alpine", False),
    ("one bad among good", "docker run --rm -v plain:/a -v operator-bind:/b alpine true", False),
]


@pytest.mark.parametrize(("why", "command", "allowed"), CASES, ids=[c[0] for c in CASES])
def test_existing_volume_options(why: str, command: str, allowed: bool) -> None:
    decision = decide(command, load_policy(None), VolumeEngine(ENGINE))
    assert decision.allowed is allowed, decision.reason
    if not allowed:
        assert decision.rule == "volume-backed"


def test_all_names_in_one_query_after_double_dash() -> None:
    world = VolumeEngine(ENGINE)
    decide("docker run --rm -v plain:/a -v fresh:/b alpine true", load_policy(None), world)
    assert world.queries == [["volume", "inspect", "--format", VOLUME_FORMAT, "--", "fresh", "plain"]]
