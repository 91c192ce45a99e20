"""``gatekeeper audit`` end to end through its argv: outputs, exit statuses, warnings."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from gatekeeper.operator.views.audit import audit_main

FIXTURES = Path(__file__).parent / "fixtures" / "audit"
AUDIT = str(FIXTURES / "audit.jsonl")
REPO = Path(__file__).resolve().parent.parent


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    status = audit_main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def test_json_lines_carry_the_records_with_their_exit(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(capsys, "--log", AUDIT, "--json", "--allowed", "--limit", "2")
    assert status == 0
    lines = [json.loads(line) for line in out.splitlines()]
    assert [(r["session"], r["exit"], r["duration_ms"]) for r in lines] == [
        ("s11", 0, 90000.0),
        ("s12", 0, 200.0),
    ]


def test_denied_json_has_no_exit_fields(capsys: pytest.CaptureFixture[str]) -> None:
    _, out, _ = run(capsys, "--log", AUDIT, "--json", "--denied")
    lines = [json.loads(line) for line in out.splitlines()]
    assert len(lines) == 6
    assert all("exit" not in r for r in lines)


def test_plain_text_when_not_a_terminal(capsys: pytest.CaptureFixture[str]) -> None:
    _, out, _ = run(capsys, "--log", AUDIT, "--limit", "1")
    assert out == (
        "2026-11-25 08:11:00\tALLOW\tSHA256:bravo 10.0.0.2\tcontainer ls\tdocker ps\t"
        "allowed: container ls is allowed\texit 0 200ms\n"
    )


def test_summary_plain_and_json(capsys: pytest.CaptureFixture[str]) -> None:
    _, out, _ = run(capsys, "--log", AUDIT, "--summary")
    assert "decisions: 12" in out
    assert "          3  docker exec -it web sh" in out
    _, out, _ = run(capsys, "--log", AUDIT, "--summary", "--json", "--denied")
    assert json.loads(out)["decisions"] == 6


def test_corrupt_lines_are_reported_on_stderr_not_fatal(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = run(capsys, "--log", str(FIXTURES / "corrupt.jsonl"), "--json")
    assert status == 0
    assert len(out.splitlines()) == 2
    assert "6 corrupted line(s) skipped" in err
    assert "corrupt.jsonl:2, " in err


@pytest.mark.parametrize(
    ("argv", "status", "message"),
    [
        pytest.param(
            ["--log", "/nonexistent/audit.jsonl"], 66, "cannot read /nonexistent/audit.jsonl", id="missing"
        ),
        pytest.param(["--log", AUDIT, "--since", "tomorrow"], 2, "not a time", id="bad-since"),
        pytest.param(
            ["--log", AUDIT, "--since", "today", "--until", "yesterday"],
            2,
            "empty time range",
            id="empty-range",
        ),
        pytest.param(["--log", AUDIT, "--since", "2999-01-01"], 2, "in the future", id="future-since"),
        pytest.param(
            ["--log", AUDIT, "--rule", "host-paht"],
            2,
            "unknown rule id 'host-paht' (did you mean 'host-path'?)",
            id="unknown-rule",
        ),
        pytest.param(
            ["--log", AUDIT, "--not-rule", "shell-syntx"],
            2,
            "(did you mean 'shell-syntax'?)",
            id="unknown-not-rule",
        ),
        pytest.param(["--log", AUDIT, "--log", AUDIT, "--follow"], 2, "exactly one --log", id="follow-two"),
    ],
)
def test_errors_are_one_line_and_an_exit_status(
    capsys: pytest.CaptureFixture[str], argv: list[str], status: int, message: str
) -> None:
    code, _, err = run(capsys, *argv)
    assert code == status
    assert message in err
    assert err.count("\n") == 1
    assert "Traceback" not in err


@pytest.mark.parametrize(
    "argv",
    [
        pytest.param(["--denied", "--allowed"], id="denied-and-allowed"),
        pytest.param(["--summary", "--follow"], id="summary-and-follow"),
        pytest.param(["--limit", "0"], id="limit-zero"),
    ],
)
def test_usage_errors_exit_2(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        audit_main(argv)
    assert exited.value.code == 2


def test_console_script_route_and_broken_pipe(tmp_path: Path) -> None:
    """``python -m gatekeeper audit ... | head -1``: one line, no traceback."""
    big = tmp_path / "big.jsonl"
    big.write_bytes(Path(AUDIT).read_bytes() * 2000)  # far more than a pipe buffer
    command = [sys.executable, "-m", "gatekeeper", "audit", "--log", str(big), "--json"]
    with subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as child:
        assert child.stdout is not None and child.stderr is not None
        first = child.stdout.readline()
        child.stdout.close()
        err = child.stderr.read()
    assert json.loads(first)["session"] == "s01"
    assert b"Traceback" not in err
    assert child.returncode == 0


def test_rich_is_not_imported_for_pipes() -> None:
    code = (
        "import sys\n"
        "from gatekeeper.operator.views.audit import audit_main\n"
        f"audit_main(['--log', {AUDIT!r}, '--summary'])\n"
        "audit_main(['--log', " + repr(AUDIT) + ", '--json'])\n"
        "assert 'rich' not in sys.modules, 'rich imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, capture_output=True)
