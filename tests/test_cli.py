"""The top-level command line as an operator meets it at a terminal.

Outside sshd (no SSH_CONNECTION) a bare `gatekeeper`, `--help` or a typo gets the
list of subcommands and writes nothing to the audit log; under sshd the same
words stay a ForceCommand configuration error (exit 78), as before.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from gatekeeper import __version__
from gatekeeper.operator import COMMANDS

REPO = Path(__file__).resolve().parents[1]
SSHD_ENV = {"PATH": "/usr/bin:/bin", "SSH_CONNECTION": "127.0.0.1 5555 127.0.0.1 22"}
TERMINAL_ENV = {"PATH": "/usr/bin:/bin"}


def gatekeeper(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-I", "-m", "gatekeeper", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_every_operator_command_has_a_summary_and_lives_in_the_operator_package() -> None:
    for name, command in COMMANDS.items():
        assert command.summary, name
        assert command.target.startswith("gatekeeper.operator."), name


@pytest.mark.parametrize("word", ["--help", "-h", "help"])
def test_help_lists_every_subcommand(word: str) -> None:
    result = gatekeeper(word, env=TERMINAL_ENV)
    assert result.returncode == 0
    for name in COMMANDS:
        assert f"  {name} " in result.stdout


def test_version() -> None:
    result = gatekeeper("--version", env=TERMINAL_ENV)
    assert (result.returncode, result.stdout) == (0, f"gatekeeper {__version__}\n")


@pytest.mark.parametrize(
    ("args", "hint"),
    [
        ([], ""),
        (["audti"], "did you mean 'audit'?"),
        (["polcy", "show"], "did you mean 'policy'?"),
        (["--frobnicate"], "unknown command '--frobnicate'"),
        (["--policy"], "unknown command '--policy'"),
    ],
)
def test_outside_sshd_unknown_words_get_usage_and_exit_64(args: list[str], hint: str, tmp_path: Path) -> None:
    audit = tmp_path / "audit.jsonl"
    result = gatekeeper(*args, env=TERMINAL_ENV)
    assert result.returncode == 64
    assert "commands:" in result.stderr
    assert hint in result.stderr
    assert "gatekeeper: denied" not in result.stderr
    assert not audit.exists()


@pytest.mark.parametrize("args", [["audti"], ["--policy"], ["--policy", "a", "--policy", "b"]])
def test_under_sshd_bad_arguments_stay_a_configuration_error(args: list[str]) -> None:
    result = gatekeeper(*args, env={**SSHD_ENV, "SSH_ORIGINAL_COMMAND": "docker ps"})
    assert result.returncode == 78
    assert result.stderr.startswith("gatekeeper: denied: bad ForceCommand arguments")


HELP_CASES = [[name, "--help"] for name in COMMANDS] + [
    ["policy", "check", "--help"],
    ["policy", "show", "-h"],
]


@pytest.mark.parametrize("args", HELP_CASES, ids=[" ".join(args) for args in HELP_CASES])
def test_every_operator_command_has_help_with_examples(args: list[str]) -> None:
    result = gatekeeper(*args, env=TERMINAL_ENV)
    assert result.returncode == 0, result.stderr
    assert "examples:" in result.stdout
    assert f"gatekeeper {args[0]}" in result.stdout.split("examples:", 1)[1]
