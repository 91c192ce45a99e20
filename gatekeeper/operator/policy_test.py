"""`gatekeeper policy test CASES [--policy F]` and the must-deny suite `policy check` runs.

A cases file holds commands with the decision the operator expects under a policy:

    JSON Lines (any name but *.toml), one object per line; '#' lines are comments:
      {"command": "docker ps", "expect": "allow"}
      {"command": "docker run --privileged busybox", "expect": "deny", "rule": "flag-privileged"}
    TOML (*.toml), an array of tables:
      [[case]]
      command = "docker logs web"
      expect = "allow"
      profile = "ci-bot"      # optional: the --name of the key (default: default)

Optional fields: `profile`, `rule` (the rule id the decision must carry), `files`
({"name": "text"}: written to a scratch directory that `@DIR@` in the command names;
such cases run with the policy's allowed roots and workdir moved there, everything
else unchanged), `class` (a label shown on a mismatch).

Decisions are the offline ones `gatekeeper check --offline` makes: no engine is asked,
every named object is assumed to exist and be the agent's; compose files are rendered
by the policy's docker binary as the ForceCommand would.

The must-deny suite (must_deny.jsonl beside this module) is every class of escape the
project knows, as data: any policy, the operator's included, must deny each one.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from gatekeeper.decision import Decision
from gatekeeper.errors import GatekeeperError
from gatekeeper.policy import Policy, load_policy
from gatekeeper.worlds import OfflineEngineWorld

MUST_DENY: Final = Path(__file__).with_name("must_deny.jsonl")
DIR_MARK: Final = "@DIR@"
VERDICTS: Final = ("allow", "deny", "ask")  # ask: [approval] puts it to the operator
CASE_KEYS: Final = frozenset({"command", "expect", "profile", "rule", "files", "class", "note"})
# A benign compose project: if the policy allows compose up but this is denied, compose
# cannot render here, and a denied compose escape proves nothing about the policy.
COMPOSE_CONTROL: Final = {"command": "docker compose -f @DIR@/compose.yaml up -d",
                          "files": {"compose.yaml": "services:\n  x:\n    image: busybox\n"}}
NOT_ALLOWED_RULES: Final = frozenset({"not-allowed-subcommand", "blocked-subcommand"})


class CasesError(GatekeeperError):
    """The cases file cannot be read or a case is malformed."""

    exit_code = 65  # EX_DATAERR
    rule = "denied"


@dataclass(frozen=True)
class Case:
    command: str
    expect: str
    where: str  # "FILE:LINE" or "FILE case N"
    profile: str | None = None
    rule: str | None = None
    files: dict[str, str] = field(default_factory=dict)
    label: str = ""


@dataclass(frozen=True)
class Outcome:
    case: Case
    verdict: str
    decision: Decision

    @property
    def passed(self) -> bool:
        if self.verdict != self.case.expect:
            return False
        return self.case.rule is None or self.case.rule == self.decision.rule

    def diff(self) -> str:
        """A unified-diff-like block: what was expected, what the policy decided."""
        label = f" [{self.case.label}]" if self.case.label else ""
        profile = f" (profile {self.case.profile})" if self.case.profile else ""
        wanted = self.case.expect + (f" (rule {self.case.rule})" if self.case.rule else "")
        return (f"{self.case.where}{label}{profile}: {self.case.command}\n"
                f"  - expected: {wanted}\n"
                f"  + got:      {self.verdict} (rule {self.decision.rule}): {self.decision.reason}\n")


def load_cases(path: str, shown: str | None = None) -> list[Case]:
    """The cases in `path` (named `shown` in messages)."""
    try:
        data = Path(path).read_bytes()
    except OSError as error:
        raise CasesError(f"cannot read cases {path}: {error.strerror}") from None
    shown = shown or path
    records = toml_records(data, shown) if path.endswith(".toml") else jsonl_records(data, shown)
    cases = [case_from(record, where) for record, where in records]
    if not cases:
        raise CasesError(f"{shown}: no cases (an empty suite proves nothing)")
    return cases


def toml_records(data: bytes, path: str) -> list[tuple[object, str]]:
    import tomllib

    try:
        parsed = tomllib.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as error:
        raise CasesError(f"{path}: not TOML: {error}") from None
    extra = set(parsed) - {"case"}
    if extra or not isinstance(parsed.get("case", []), list):
        raise CasesError(f"{path}: expected only [[case]] tables, found {sorted(extra) or 'case = ...'}")
    return [(record, f"{path} case {number}") for number, record in enumerate(parsed.get("case", []), 1)]


def jsonl_records(data: bytes, path: str) -> list[tuple[object, str]]:
    records: list[tuple[object, str]] = []
    for number, line in enumerate(data.decode("utf-8", errors="replace").splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            records.append((json.loads(line), f"{path}:{number}"))
        except ValueError as error:
            raise CasesError(f"{path}:{number}: not JSON: {error}") from None
    return records


def case_from(record: object, where: str) -> Case:
    if not isinstance(record, dict):
        raise CasesError(f"{where}: a case is an object with 'command' and 'expect'")
    unknown = set(record) - CASE_KEYS
    if unknown:
        raise CasesError(f"{where}: unknown field(s) {sorted(unknown)}; known: {sorted(CASE_KEYS)}")
    command, expect = record.get("command"), record.get("expect")
    if not isinstance(command, str) or expect not in VERDICTS:
        raise CasesError(f"{where}: 'command' must be a string and 'expect' one of {list(VERDICTS)}")
    for key in ("profile", "rule", "class"):
        if not isinstance(record.get(key, ""), str):
            raise CasesError(f"{where}: {key!r} must be a string")
    return Case(command, str(expect), where, record.get("profile"), record.get("rule"),
                checked_files(record.get("files", {}), where), record.get("class", ""))


def checked_files(files: object, where: str) -> dict[str, str]:
    """Names are plain relative paths inside the scratch directory; contents are text."""
    if not isinstance(files, dict) or not all(isinstance(v, str) for v in files.values()):
        raise CasesError(f"{where}: 'files' must map names to text")
    for name in files:
        parts = name.split("/")
        if name.startswith("/") or any(part in ("", ".", "..") for part in parts):
            raise CasesError(f"{where}: file name {name!r} must be a plain relative path")
    return dict(files)


class Runner:
    """Decides cases under one policy file; a policy per profile, loaded once."""

    def __init__(self, policy_path: str | None) -> None:
        self.policy_path = policy_path
        self.policies: dict[str | None, Policy] = {}
        self.world = OfflineEngineWorld()

    def policy(self, profile: str | None) -> Policy:
        if profile not in self.policies:
            self.policies[profile] = load_policy(self.policy_path, profile)
        return self.policies[profile]

    def decide(self, case: Case) -> Decision:
        return self.verdict(case)[1]

    def verdict(self, case: Case) -> tuple[str, Decision]:
        """("allow" | "deny" | "ask", decision): nothing is charged, requested or run."""
        from gatekeeper.approval import offline_verdict

        policy = self.policy(case.profile)
        if not case.files:
            return offline_verdict(case.command, policy, self.world)
        with scratch_directory(case.files, policy.name_prefix) as directory:
            moved = with_roots(policy, directory)
            return offline_verdict(case.command.replace(DIR_MARK, directory), moved, self.world)

    def run(self, cases: list[Case]) -> list[Outcome]:
        return [Outcome(case, *self.verdict(case)) for case in cases]


@contextmanager
def scratch_directory(files: dict[str, str], names_prefix: str) -> Iterator[str]:
    """The cases' files in a fresh directory named inside the policy's [names] prefix: compose
    names a project after its directory, and a project named outside the prefix is refused
    (rule name-prefix), which would decide every compose case before the rule it tests."""
    directory = os.path.realpath(tempfile.mkdtemp(prefix=f"{names_prefix}cases-"))
    try:
        for name, text in files.items():
            target = Path(directory, name)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")
        os.chmod(directory, 0o755)  # noqa: S103 - compose (and docker) read it; nothing secret
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def with_roots(policy: Policy, root: str) -> Policy:
    """The same policy with its allowed roots and workdir moved to `root` (a scratch
    directory), so file-backed cases run without writing into the agent's home."""
    settings = {section: dict(values) for section, values in policy.settings.items()}
    settings["paths"]["allowed_roots"] = [root]
    settings["docker"]["workdir"] = root
    moved = Policy(settings, policy.source, policy.sha256)
    moved.profile = policy.profile
    return moved


def must_deny_cases() -> list[Case]:
    return load_cases(str(MUST_DENY), "must-deny")


def compose_control(runner: Runner) -> str | None:
    """None if compose cases are conclusive under this policy; else why they are not."""
    control = case_from({**COMPOSE_CONTROL, "expect": "allow"}, "compose control")
    decision = runner.decide(control)
    if decision.allowed or decision.rule in NOT_ALLOWED_RULES:
        return None
    return f"a benign compose project was denied too (rule {decision.rule}: {decision.reason})"


def report(outcomes: list[Outcome], write: Callable[[str], object]) -> int:
    """Write a diff block per mismatch; return how many failed."""
    failed = [outcome for outcome in outcomes if not outcome.passed]
    for outcome in failed:
        write(outcome.diff())
    return len(failed)
