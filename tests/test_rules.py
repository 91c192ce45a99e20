"""`gatekeeper rules`: every rule id in the code has its one-line why (a meta-test)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from gatekeeper import rules
from gatekeeper.operator import rules_cmd

SOURCE = Path(__file__).resolve().parent.parent / "gatekeeper"

# How rule ids are spelled in the code.
LITERALS = (
    re.compile(r'\brule\s*=\s*"([a-z0-9-]*[a-z0-9])"'),  # Denied(..., rule="host-path"), class attributes
    re.compile(r'\bRULE_[A-Z0-9_]+\s*(?::[^=\n]+)?=\s*"([a-z0-9-]+)"'),  # RULE_SUBNET = "network-subnet"
    re.compile(
        r'Decision\(\s*(?:True|False),[^,]+,[^,]+,\s*"([a-z0-9-]+)"'
    ),  # Decision(True, ..., "allowed")
)
FAMILY_SPELLINGS = (
    re.compile(r'\brule\s*=\s*f"([a-z0-9-]*-)\{'),  # rule=f"flag-{use.name}"
    re.compile(r'\brule\s*=\s*"([a-z0-9-]+-)"\s*\+'),  # rule="compose-" + key
)


def spelled_in_code(patterns: tuple[re.Pattern[str], ...]) -> dict[str, str]:
    found: dict[str, str] = {}
    for path in sorted(SOURCE.rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        for pattern in patterns:
            for match in pattern.finditer(text):
                found.setdefault(match.group(1), f"{path.relative_to(SOURCE.parent)}")
    return found


def test_every_rule_id_in_the_code_is_in_the_table() -> None:
    missing = {rule: where for rule, where in spelled_in_code(LITERALS).items() if not rules.is_known(rule)}
    assert not missing, f"add these to gatekeeper/rules.py RULES: {missing}"


def test_every_rule_family_in_the_code_is_in_the_table() -> None:
    missing = {
        prefix: where
        for prefix, where in spelled_in_code(FAMILY_SPELLINGS).items()
        if prefix not in rules.FAMILIES
    }
    assert not missing, f"add these to gatekeeper/rules.py FAMILIES: {missing}"


def test_the_scan_finds_what_it_should() -> None:
    """Control: the meta-test would notice a missing id (the scan is not empty)."""
    found = spelled_in_code(LITERALS)
    assert {"allowed", "host-path", "network-subnet", "policy-invalid", "shell-syntax"} <= set(found)
    assert set(spelled_in_code(FAMILY_SPELLINGS)) >= {"flag-", "limit-", "compose-"}


def test_every_why_is_one_line() -> None:
    for rule, text in [*rules.RULES.items(), *rules.FAMILIES.items()]:
        assert text and "\n" not in text and len(text) < 110, rule


@pytest.mark.parametrize(
    ("rule", "known"),
    [
        ("host-path", True),
        ("flag-privileged", True),
        ("limit-memory", True),
        ("compose-privileged", True),
        ("flag-", False),
        ("host-paht", False),
        ("", False),
    ],
)
def test_known_rule_ids(rule: str, known: bool) -> None:
    assert rules.is_known(rule) is known


@pytest.mark.parametrize(
    ("argv", "status", "out", "err"),
    [
        (["host-path"], 0, "host-path  a host path outside", ""),
        (["host-path"], 0, "agent is told: host paths must resolve inside", ""),
        (["flag-privileged"], 0, "flag-NAME:", ""),
        ([], 0, "limit-*", ""),
        (["host-paht"], 64, "", "unknown rule 'host-paht' (did you mean 'host-path'?)"),
        (["--help"], 0, "examples:", ""),
    ],
)
def test_rules_command(
    capsys: pytest.CaptureFixture[str], argv: list[str], status: int, out: str, err: str
) -> None:
    assert rules_cmd.main(argv) == status
    captured = capsys.readouterr()
    assert out in captured.out
    assert err in captured.err


def test_rules_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert rules_cmd.main(["--json"]) == 0
    table = json.loads(capsys.readouterr().out)
    assert table["allowed"] and table["flag-*"]
