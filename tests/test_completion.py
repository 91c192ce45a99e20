"""`gatekeeper completion bash`: the generated script, run by a real bash.

Each row: the words typed (the last one is being completed) and what bash must
offer. The script comes from the commands' own --help, so a row fails when a
command loses an option its operators rely on.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from gatekeeper.operator import COMMANDS, completion

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")

CASES = [
    # (typed, must offer, must not offer)
    ("gatekeeper au", {"audit"}, set()),
    ("gatekeeper ", set(COMMANDS) | {"--help", "--version"}, set()),
    ("gatekeeper policy c", {"check", "compile"}, {"show"}),
    ("gatekeeper policy show --p", {"--policy"}, set()),
    ("gatekeeper audit --not-r", {"--not-rule"}, {"--rule"}),
    ("gatekeeper audit --rule host-path-n", {"host-path-nested"}, set()),
    ("gatekeeper audit --since -1h --not-rule flag", {"flag-driver"}, {"flag-*"}),
    ("gatekeeper audit -o j", {"json"}, set()),
    ("gatekeeper rules scope-", {"scope-owned", "scope-unresolved"}, set()),
    ("gatekeeper rules --j", {"--json"}, set()),
    ("gatekeeper doctor --s", {"--sshd-config"}, set()),
    ("gatekeeper check --o", {"--offline"}, set()),
    ("gatekeeper completion ", {"bash"}, set()),
]


@pytest.fixture(scope="module")
def script() -> str:
    return completion.bash_script()


def offered(script: str, typed: str) -> set[str]:
    words = shlex.split(typed) + ([""] if typed.endswith(" ") else [])
    program = "\n".join(
        [
            script,
            f"COMP_WORDS=({' '.join(shlex.quote(word) for word in words)})",
            f"COMP_CWORD={len(words) - 1}",
            "_gatekeeper",
            'printf "%s\\n" "${COMPREPLY[@]}"',
        ]
    )
    bash = ["bash", "--norc", "--noprofile", "-c", program]
    result = subprocess.run(bash, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    return set(result.stdout.split())


@pytest.mark.parametrize(("typed", "wanted", "unwanted"), CASES, ids=[case[0] for case in CASES])
def test_bash_offers(script: str, typed: str, wanted: set[str], unwanted: set[str]) -> None:
    got = offered(script, typed)
    assert wanted <= got, wanted - got
    assert not unwanted & got


def test_a_file_argument_completes_files(script: str, tmp_path: Path) -> None:
    (tmp_path / "new.toml").write_text("")
    assert offered(script, f"gatekeeper policy check {tmp_path}/n") == {f"{tmp_path}/new.toml"}
    assert offered(script, f"gatekeeper audit --log {tmp_path}/") == {f"{tmp_path}/new.toml"}


def test_every_command_has_a_case_arm(script: str) -> None:
    for name in COMMANDS:
        assert f"        {name})" in script


def test_the_command_line() -> None:
    run = [sys.executable, "-m", "gatekeeper", "completion"]
    ok = subprocess.run([*run, "bash"], capture_output=True, text=True, check=False)
    assert ok.returncode == 0 and "complete -o filenames -F _gatekeeper gatekeeper" in ok.stdout
    zsh = subprocess.run([*run, "zsh"], capture_output=True, text=True, check=False)
    assert zsh.returncode == 64 and "only bash" in zsh.stderr
    bare = subprocess.run(run, capture_output=True, text=True, check=False)
    assert bare.returncode == 64 and "usage: gatekeeper completion bash" in bare.stderr
