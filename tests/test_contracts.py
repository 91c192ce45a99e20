"""docs/CONTRACTS.md says what the code does: the names it promises exist, and
what the code offers at those seams is named there."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from gatekeeper import decision, redaction, worlds
from gatekeeper.errors import EX_CONFIG, EX_NOPERM, EX_SOFTWARE, EX_TEMPFAIL
from gatekeeper.operator import COMMANDS, check
from gatekeeper.policy import load_policy
from gatekeeper.world import PathResolver, World
from tests.conftest import REPO
from tests.fakes import StaticWorld

CONTRACTS = (REPO / "docs" / "CONTRACTS.md").read_text()
WORLD_METHODS = ("realpath", "inert_mount", "read_file", "read_pinned", "read_stdin", "run_docker",
                 "addresses", "new_stage", "stage_files", "drop_stage",
                 "disk_usage", "claims_in_flight")
WORLDS = {"RealWorld": worlds.RealWorld, "OfflineEngineWorld": worlds.OfflineEngineWorld,
          "StaticWorld": StaticWorld}


def test_the_world_protocol_is_the_methods_listed() -> None:
    promised = {name for cls in (World, PathResolver) for name in vars(cls) if not name.startswith("_")}
    assert promised == set(WORLD_METHODS)
    assert all(f"`{method}(" in CONTRACTS for method in WORLD_METHODS)
    assert "world: World" in CONTRACTS


@pytest.mark.parametrize("world", WORLDS)
def test_every_world_it_names_exists_with_the_questions(world: str) -> None:
    assert f"`{world}`" in CONTRACTS
    assert all(callable(getattr(WORLDS[world], method, None)) for method in WORLD_METHODS)


def test_the_decision_imports_no_world_and_no_io() -> None:
    source = (Path(decision.__file__)).read_text()
    imported = {node.module for node in ast.walk(ast.parse(source)) if isinstance(node, ast.ImportFrom)}
    imported |= {alias.name for node in ast.walk(ast.parse(source)) if isinstance(node, ast.Import)
                 for alias in node.names}
    assert not imported & {"subprocess", "gatekeeper.execution", "gatekeeper.worlds", "os", "socket"}


def test_decision_attributes_are_the_ones_listed() -> None:
    for name in decision.Decision.__slots__:
        assert f"`{name}" in CONTRACTS, name
    keys = decision.Decision(True, ["docker"], "x", "r", "why").as_dict()
    assert all(f"`{key}`" in CONTRACTS for key in keys)


def test_output_filter_names() -> None:
    promised = set(re.findall(r"`(redact-[a-z-]+)`", CONTRACTS))
    assert promised == {"redact-inspect", "redact-compose-config", "redact-at-source"}
    for name in promised - {"redact-at-source"}:
        assert callable(redaction.output_filter(name, load_policy(None)))
    with pytest.raises(ValueError):
        redaction.output_filter("redact-nothing", load_policy(None))


def test_operator_commands_and_exit_codes() -> None:
    for name in COMMANDS:
        assert f"`gatekeeper {name}" in CONTRACTS, name
    for code in (EX_NOPERM, EX_CONFIG, EX_TEMPFAIL, EX_SOFTWARE, check.EX_DATAERR, check.EX_UNAVAILABLE):
        assert f"{code} (" in CONTRACTS or f" {code} " in CONTRACTS, code
