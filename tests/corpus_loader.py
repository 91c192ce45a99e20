"""Load allow/deny corpora: one case per line, the expectation written beside it.

    # comment: the attack the next cases try
    deny   blocked-subcommand   docker container exec web sh
    allow  *                    docker ps -a

Fields are separated by whitespace (spaces or a tab); the third field is the
rest of the line, verbatim. The rule may be '*' (any rule) for allow lines.
"""

from __future__ import annotations

from pathlib import Path

import pytest

CORPUS_DIR = Path(__file__).parent / "corpus"


class Case:
    __slots__ = ("command", "expected", "file", "line", "rule")

    def __init__(self, expected: str, rule: str, command: str, file: str, line: int) -> None:
        self.expected = expected
        self.rule = rule
        self.command = command
        self.file = file
        self.line = line


def load_corpus(name: str) -> list[Case]:
    path = CORPUS_DIR / name
    cases = []
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not raw.strip() or raw.lstrip().startswith("#"):
            continue
        expected, rule, command = raw.split(None, 2)
        if expected not in ("allow", "deny"):
            raise ValueError(f"{path}:{number}: expected allow or deny, got {expected!r}")
        cases.append(Case(expected, rule, command, name, number))
    return cases


def corpus_params(*names: str) -> list[object]:
    return [
        pytest.param(case, id=f"{case.file}:{case.line}:{case.expected}:{case.command[:60]}")
        for name in names
        for case in load_corpus(name)
    ]
