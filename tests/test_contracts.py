"""docs/CONTRACTS.md says what the code does: the names it promises exist, and
what the code offers at those seams is named there."""

from __future__ import annotations

import re

import pytest

from gatekeeper import cli, decision, redaction
from gatekeeper.errors import EX_CONFIG, EX_NOPERM, EX_SOFTWARE, EX_TEMPFAIL
from gatekeeper.operator import check
from tests.conftest import REPO

CONTRACTS = (REPO / "docs" / "CONTRACTS.md").read_text()
WORLD_METHODS = ("realpath", "read_file", "run_docker", "claims_in_flight")


@pytest.mark.parametrize("world", ["RealWorld", "OfflineEngineWorld", "StaticWorld"])
def test_every_world_it_names_exists_with_the_three_questions(world: str) -> None:
    assert f"`{world}`" in CONTRACTS
    assert all(callable(getattr(getattr(decision, world), method, None)) for method in WORLD_METHODS)


def test_no_world_type_is_promised() -> None:
    assert not hasattr(decision, "World")
    assert "There is no `World` class" in CONTRACTS
    assert "world: World" not in CONTRACTS


def test_decision_attributes_are_the_ones_listed() -> None:
    for name in decision.Decision.__slots__:
        assert f"`{name}" in CONTRACTS, name
    keys = decision.Decision(True, ["docker"], "x", "r", "why").as_dict()
    assert all(f"`{key}`" in CONTRACTS for key in keys)


def test_output_filter_names() -> None:
    promised = set(re.findall(r"`(redact-[a-z-]+)`", CONTRACTS))
    assert promised == {"redact-inspect", "redact-compose-config", "redact-at-source"}
    for name in promised - {"redact-at-source"}:
        assert callable(redaction.output_filter(name, object()))
    with pytest.raises(ValueError):
        redaction.output_filter("redact-nothing", object())


def test_operator_commands_and_exit_codes() -> None:
    for name in cli.OPERATOR_COMMANDS:
        assert f"`gatekeeper {name}" in CONTRACTS, name
    for code in (EX_NOPERM, EX_CONFIG, EX_TEMPFAIL, EX_SOFTWARE, check.EX_DATAERR, check.EX_UNAVAILABLE):
        assert f"{code} (" in CONTRACTS or f" {code} " in CONTRACTS, code
