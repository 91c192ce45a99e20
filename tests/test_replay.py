"""``gatekeeper replay``: past commands re-decided under a candidate policy; what flips is shown."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from gatekeeper.operator.views import render, replay
from gatekeeper.operator.views.replay import Decider, Verdict
from tests.test_audit_view_render import HOSTILE, assert_terminal_safe

FIXTURES = Path(__file__).parent / "fixtures" / "audit"
AUDIT = str(FIXTURES / "audit.jsonl")

# A candidate policy for the real core: 'logs' becomes blocked, little else allowed.
CANDIDATE = """\
[commands]
allowed = ["ps", "images", "restart", "volume ls"]
blocked = ["logs"]
"""


def decision(cmd: str, verdict: str, ts: str = "2026-11-25T08:00:00.000000Z") -> dict[str, object]:
    return {"event": "decision", "ts": ts, "cmd": cmd, "decision": verdict, "rule": f"old-{verdict}"}


def fake(allowed: set[str]) -> Decider:
    """A candidate policy that allows exactly the listed command strings."""
    return replay.cached(lambda command: Verdict(command in allowed, "canon", "new-rule", "because"))


# ---------------------------------------------------------------- the diff itself

REPLAY_TABLE = [
    # past decisions, what the candidate allows, expected (label, cmd, count), still allowed, still denied
    ([("docker ps", "allow")], {"docker ps"}, [], 1, 0, "unchanged-allow"),
    ([("docker exec x", "deny")], set(), [], 0, 1, "unchanged-deny"),
    ([("docker logs web", "allow")], set(), [("allow→deny", "docker logs web", 1)], 0, 0, "tightened"),
    (
        [("docker volume ls", "deny")],
        {"docker volume ls"},
        [("deny→allow", "docker volume ls", 1)],
        0,
        0,
        "loosened",
    ),
    (
        [
            ("docker logs a", "allow"),
            ("docker logs a", "allow"),
            ("docker ps", "allow"),
            ("docker v", "deny"),
        ],
        {"docker ps", "docker v"},
        [("allow→deny", "docker logs a", 2), ("deny→allow", "docker v", 1)],
        1,
        0,
        "grouped-by-command-tightening-first",
    ),
]


@pytest.mark.parametrize(
    ("past", "allows", "changes", "still_allowed", "still_denied"),
    [pytest.param(*row[:5], id=row[5]) for row in REPLAY_TABLE],
)
def test_replay_reports_what_flips(
    past: list[tuple[str, str]],
    allows: set[str],
    changes: list[tuple[str, str, int]],
    still_allowed: int,
    still_denied: int,
) -> None:
    report = replay.replay([decision(cmd, verdict) for cmd, verdict in past], fake(allows))
    assert [(c.label, c.cmd, c.count) for c in report.changes] == changes
    assert (report.still_allowed, report.still_denied, report.decisions) == (
        still_allowed,
        still_denied,
        len(past),
    )


def test_first_and_last_seen_and_old_rule() -> None:
    past = [
        decision("docker logs a", "allow", "2026-11-20T08:00:00.000000Z"),
        decision("docker logs a", "allow", "2026-11-25T08:00:00.000000Z"),
    ]
    (change,) = replay.replay(past, fake(set())).changes
    assert (change.first_seen, change.last_seen, change.old_rule) == (
        "2026-11-20T08:00:00.000000Z",
        "2026-11-25T08:00:00.000000Z",
        "old-allow",
    )


def test_only_decision_records_with_a_command_are_replayed() -> None:
    stream = [
        {"event": "exit", "session": "x", "exit": 0},
        {"event": "decision", "decision": "allow"},  # no cmd
        {"event": "decision", "decision": "maybe", "cmd": "docker ps"},  # not allow/deny
        {"event": "decision", "decision": "allow", "cmd": ["docker", "ps"]},  # not a string
        decision("docker ps", "allow"),
    ]
    assert replay.replay(stream, fake({"docker ps"})).decisions == 1


def test_each_distinct_command_is_decided_once() -> None:
    calls: list[str] = []

    def decide(command: str) -> Verdict:
        calls.append(command)
        return Verdict(True, None, "r", "")

    replay.replay([decision("docker ps", "allow")] * 50, replay.cached(decide))
    assert calls == ["docker ps"]


def test_a_crash_in_decide_is_a_denial_and_counted() -> None:
    def explode(command: str) -> Verdict:
        raise RuntimeError(command)

    report = replay.replay([decision("docker ps", "allow")], replay.cached(explode))
    assert report.errors == 1
    assert report.changes[0].new.rule == replay.REPLAY_ERROR_RULE
    assert report.changes[0].now_denied


# ---------------------------------------------------------------- with the real core


@pytest.fixture
def candidate(tmp_path: Path) -> str:
    path = tmp_path / "candidate.toml"
    path.write_text(CANDIDATE)
    return str(path)


def test_real_core_on_the_fixture_log(capsys: pytest.CaptureFixture[str], candidate: str) -> None:
    status = replay.replay_main(["--policy", candidate, "--json", AUDIT])
    out, err = capsys.readouterr()
    changes = [json.loads(line) for line in out.splitlines()]
    assert status == 1, "like diff: 1 when something changes"
    assert [(c["cmd"], c["from"], c["to"], c["new"]["rule"]) for c in changes] == [
        ("docker logs web", "allow", "deny", "blocked-subcommand")
    ]
    assert "12 decisions replayed: 1 allow→deny, 0 deny→allow, 5 still allowed, 6 still denied" in err


def test_real_core_loosening(capsys: pytest.CaptureFixture[str], candidate: str, tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    log.write_text(json.dumps(decision("docker volume ls", "deny")) + "\n")
    status = replay.replay_main(["--policy", candidate, str(log)])
    out, _ = capsys.readouterr()
    assert status == 1
    assert "deny→allow\t1\tdocker volume ls\tallowed: " in out


def test_real_core_no_change_exits_0(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    log = tmp_path / "audit.jsonl"
    log.write_text(json.dumps(decision("docker ps", "allow")) + "\n")
    policy = tmp_path / "same.toml"
    policy.write_text("")
    assert replay.replay_main(["--policy", str(policy), str(log)]) == 0
    assert "0 allow→deny, 0 deny→allow, 1 still allowed" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("policy_text", "log", "status", "message"),
    [
        pytest.param("[commands\n", AUDIT, 78, "policy", id="invalid-policy"),
        pytest.param('[nonsense]\nkey = "x"\n', AUDIT, 78, "policy", id="unknown-key"),
        pytest.param(
            "", "/nonexistent/audit.jsonl", 66, "cannot read /nonexistent/audit.jsonl", id="missing-log"
        ),
    ],
)
def test_errors(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, policy_text: str, log: str, status: int, message: str
) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text(policy_text)
    assert replay.replay_main(["--policy", str(policy), log]) == status
    err = capsys.readouterr().err
    assert message in err
    assert err.startswith("gatekeeper replay: ")


# ---------------------------------------------------------------- hostile commands


@pytest.mark.parametrize("text", HOSTILE.values(), ids=HOSTILE.keys())
def test_replay_table_is_terminal_safe(text: str) -> None:
    report = replay.replay([decision(text, "allow")], replay.cached(lambda c: Verdict(False, c, c, c)))
    out = io.StringIO()
    render.print_replay(report, render.make_console(out, force_terminal=True, color_system="truecolor"))
    assert_terminal_safe(out.getvalue().replace("\x1b[1;31m", ""))  # our own red: "allow→deny"


@pytest.mark.parametrize("text", HOSTILE.values(), ids=HOSTILE.keys())
def test_replay_json_is_printable_ascii(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, text: str
) -> None:
    log = tmp_path / "audit.jsonl"
    log.write_text(json.dumps(decision(text, "allow")) + "\n")
    status = replay.replay_main(["--policy", "unused", "--json", str(log)], decider=lambda _path: fake(set()))
    out = capsys.readouterr().out
    assert status == 1
    assert all(" " <= c <= "~" for c in out.rstrip("\n"))
    assert json.loads(out)["cmd"] == text


def canonical_fake(allowed: set[str]) -> Decider:
    """A decider that knows two spellings of container ls."""
    spellings = {
        "docker ps": "container ls",
        "docker container ls": "container ls",
        "docker ps -a": "container ls",
    }
    return lambda cmd: Verdict(
        cmd in allowed, spellings.get(cmd, cmd), "allowed" if cmd in allowed else "r", ""
    )


def test_flips_are_grouped_by_canonical_command() -> None:
    past = [
        decision(cmd, "allow") for cmd in ("docker ps", "docker container ls", "docker ps -a", "docker ps")
    ]
    past.append(decision("docker images", "allow"))
    (first, second) = replay.replay(past, canonical_fake(set())).changes
    assert (first.canonical, first.count, first.spellings, first.cmd) == ("container ls", 4, 3, "docker ps")
    assert "(+2 other spellings)" in first.shown_command
    assert (second.canonical, second.count, second.spellings) == ("docker images", 1, 1)
    assert first.as_json()["spellings"] == 3
