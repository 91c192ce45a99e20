"""`gatekeeper policy test` (expected decisions for CI) and the must-deny suite
`gatekeeper policy check` runs: a wrong expectation fails, a policy that lets an
escape through fails, and each failing test has its passing control beside it."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest

from gatekeeper.grammar import docker_flags
from gatekeeper.grammar.spec import b
from gatekeeper.operator import policy_cmd
from gatekeeper.operator.policy_test import (
    MUST_DENY,
    CasesError,
    Runner,
    compose_control,
    load_cases,
    must_deny_cases,
)
from tests.conftest import REPO

TOML_CASES = """\
[[case]]
command = "docker ps -a"
expect = "allow"

[[case]]
command = "docker run --privileged busybox"
expect = "deny"
rule = "flag-privileged"

[[case]]
command = "docker logs web"
expect = "allow"
profile = "ci-bot"
"""


@pytest.fixture(autouse=True)
def no_deployed_policy(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Cases without --policy read the deployed policy when there is one: these tests must not
    read this machine's /etc/gatekeeper/policy.toml (the e2e stack rewrites it), so there is none."""
    monkeypatch.setattr(policy_cmd, "DEPLOYED_POLICY", str(tmp_path / "no-deployed-policy.toml"))


def write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def jsonl(*cases: dict[str, object]) -> str:
    return "# comment lines and blank lines are skipped\n\n" + "".join(json.dumps(c) + "\n" for c in cases)


def test_toml_cases_all_as_expected(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cases = write(tmp_path, "cases.toml", TOML_CASES)
    assert policy_cmd.main(["test", cases, "--policy", str(REPO / "examples/default.toml")]) == 0
    assert "ok: 3 of 3 cases" in capsys.readouterr().out


def test_a_wrong_expectation_fails_with_a_diff(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Control and attack in one: the same file passes, then one flipped verdict fails it."""
    right = {"command": "docker run --privileged busybox", "expect": "deny"}
    assert policy_cmd.main(["test", write(tmp_path, "ok.jsonl", jsonl(right))]) == 0
    wrong = {**right, "expect": "allow"}
    assert policy_cmd.main(["test", write(tmp_path, "bad.jsonl", jsonl(right, wrong))]) == 1
    out = capsys.readouterr().out
    assert "bad.jsonl:4: docker run --privileged busybox" in out
    assert "  - expected: allow\n  + got:      deny (rule flag-privileged)" in out
    assert "FAIL: 1 of 2 cases as expected" in out


def test_a_wrong_rule_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    case = {"command": "docker run --privileged busybox", "expect": "deny", "rule": "flag-privileged"}
    assert policy_cmd.main(["test", write(tmp_path, "a.jsonl", jsonl(case))]) == 0
    case["rule"] = "host-path"
    assert policy_cmd.main(["test", write(tmp_path, "b.jsonl", jsonl(case))]) == 1
    assert "expected: deny (rule host-path)" in capsys.readouterr().out


def test_profile_is_the_owner(tmp_path: Path) -> None:
    runner = Runner(str(REPO / "examples/readonly.toml"))
    [case] = load_cases(write(tmp_path, "c.jsonl", jsonl({"command": "docker ps", "expect": "allow",
                                                            "profile": "ci-bot"})))
    assert runner.decide(case).allowed
    assert runner.policy("ci-bot").profile == "ci-bot"


def test_files_are_staged_under_moved_roots(tmp_path: Path) -> None:
    case = {"command": "docker run --env-file @DIR@/app.env busybox", "expect": "allow",
            "files": {"app.env": "A=1\n"}}
    [staged] = load_cases(write(tmp_path, "f.jsonl", jsonl(case)))
    assert Runner(None).decide(staged).allowed
    [missing_mark] = load_cases(write(tmp_path, "g.jsonl", jsonl({**case, "files": {}})))
    assert not Runner(None).decide(missing_mark).allowed  # @DIR@ literally: a relative path that is no file


@pytest.mark.parametrize(("text", "message"), [
    ("", "no cases"),
    ("{not json\n", "not JSON"),
    ('["docker ps"]\n', "a case is an object"),
    ('{"command": "docker ps", "expect": "maybe"}\n', "'expect' one of"),
    ('{"command": "docker ps", "expect": "allow", "extra": 1}\n', "unknown field"),
    ('{"command": "docker ps", "expect": "allow", "files": {"../x": ""}}\n', "plain relative path"),
    ('{"command": "docker ps", "expect": "allow", "files": {"/etc/x": ""}}\n', "plain relative path"),
    ('{"command": "docker ps", "expect": "allow", "rule": 3}\n', "'rule' must be a string"),
])
def test_malformed_cases_are_refused(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(CasesError, match=message):
        load_cases(write(tmp_path, "x.jsonl", text))


def test_malformed_toml_exits_65(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert policy_cmd.main(["test", write(tmp_path, "x.toml", "[[case]]\ncommand = 1\n")]) == 65
    assert "'command' must be a string" in capsys.readouterr().err


# ---- the must-deny suite -------------------------------------------------------------------

SUITE_CLASSES = {
    "privileged", "host-namespaces", "devices", "capabilities", "roots-outside-home", "sockets", "raw-api",
    "global-flags-with-values", "copy-out-and-in", "management-aliases", "shell-and-other-programs",
    "compose-escapes",
}


def test_the_suite_covers_every_class_and_only_denials() -> None:
    cases = must_deny_cases()
    assert {case.label for case in cases} == SUITE_CLASSES
    assert {case.expect for case in cases} == {"deny"}
    assert len(cases) >= 100
    assert MUST_DENY.read_text().endswith("\n")


@pytest.mark.parametrize("example", sorted(p.name for p in (REPO / "examples").glob("*.toml")))
def test_shipped_examples_pass_the_suite(example: str) -> None:
    runner = Runner(str(REPO / "examples" / example))
    failed = [o.diff() for o in runner.run(must_deny_cases()) if not o.passed]
    assert failed == []


def test_check_fails_a_policy_that_allows_privileged(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """No policy key can allow --privileged, so the defence is switched off in the grammar
    table (as a regression or a future key would): first check passes, then it fails."""
    policy = write(tmp_path, "p.toml", '[commands]\nallowed = ["run"]\n')
    assert policy_cmd.main(["check", policy]) == 0
    for command in ("container run", "container create"):
        flags = docker_flags.FLAGS[command]
        monkeypatch.setitem(flags, "--privileged", b("privileged"))  # the defence off: a plain bool
    assert policy_cmd.main(["check", policy]) == 78
    err = capsys.readouterr().err
    assert "must-deny case allowed: must-deny:" in err
    assert "[privileged]" in err and "docker run --privileged busybox" in err


def test_check_fails_a_policy_with_the_host_as_a_root(tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    home = write(tmp_path, "home.toml", '[paths]\nallowed_roots = ["/home/ai-worker"]\n')
    assert policy_cmd.main(["check", home]) == 0
    wide = write(tmp_path, "wide.toml", '[paths]\nallowed_roots = ["/"]\nstate_dir = "/.gatekeeper"\n')
    assert policy_cmd.main(["check", wide]) == 78
    assert "[roots-outside-home]" in capsys.readouterr().err


def test_compose_control_is_conclusive_or_not_allowed() -> None:
    assert compose_control(Runner(str(REPO / "examples/readonly.toml"))) is None  # compose not allowed


@pytest.mark.names_default
def test_compose_cases_run_in_a_directory_inside_the_names_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    """compose names the project after the scratch directory: under the default [names] prefix
    a directory outside it made the benign control (and every compose case) a name-prefix denial."""
    runner = Runner(str(REPO / "examples/default.toml"))
    assert runner.policy(None).name_prefix == "ai-"
    assert compose_control(runner) is None

    asked: list[str] = []
    make = tempfile.mkdtemp

    def named_as_before(prefix: str = "tmp", **where: str) -> str:
        asked.append(prefix)
        return make(prefix="gk-cases-" if prefix == "ai-cases-" else prefix, **where)

    monkeypatch.setattr(tempfile, "mkdtemp", named_as_before)  # control: the directory's old name
    reason = compose_control(Runner(str(REPO / "examples/default.toml")))
    assert [prefix for prefix in asked if prefix != "gatekeeper-render-"] == ["ai-cases-"]  # not the stage
    assert reason is not None and "rule name-prefix" in reason, reason


@pytest.mark.parametrize("name", ["default", "locked-down"])
def test_the_shipped_example_cases_pass(name: str) -> None:
    cases = str(REPO / f"examples/cases/{name}.toml")
    assert policy_cmd.main(["test", cases, "--policy", str(REPO / f"examples/{name}.toml")]) == 0
