"""``-o short`` (one line per command fitted to the terminal), ``-o verbose``, the pager, broken pipes."""

from __future__ import annotations

import io
import json
import os
import pty
import subprocess
import sys
from pathlib import Path

import pytest

from gatekeeper.operator.views import pager, short
from gatekeeper.operator.views.records import Event
from gatekeeper.operator.views.rows import row_of

FIXTURES = Path(__file__).parent / "fixtures" / "audit"
AUDIT = str(FIXTURES / "audit.jsonl")
REPO = Path(__file__).resolve().parent.parent


def decision(**fields: object) -> dict[str, object]:
    record: dict[str, object] = {
        "v": 1,
        "ts": "2026-11-25T08:11:00.000000Z",
        "event": "decision",
        "session": "s1",
        "profile": "default",
        "client": "10.0.0.2 50002 10.0.0.9 22",
        "key": "SHA256:AbCdEfGhIjKlMnOpQrStUvWxYz0123456789abcdefg",
        "cmd": "docker ps",
        "canonical": "container ls",
        "decision": "allow",
        "rule": "allowed",
        "reason": "container ls is allowed",
    }
    record.update(fields)
    return record


LONG = "docker run --rm -v /srv/agent/work/a-very-long-directory-name:/work " + "x" * 300
ROWS = [
    pytest.param(
        decision(), {"decision": None}, ["allow", "docker ps", "exit 0 200ms"], id="allowed-with-exit"
    ),
    pytest.param(decision(), None, ["allow", "docker ps"], id="allowed-no-exit-yet"),
    pytest.param(
        decision(decision="deny", rule="host-path", reason="host path '/etc' is outside the allowed roots"),
        None,
        ["deny", "host-path: host path"],
        id="denied-shows-rule-then-reason",
    ),
    pytest.param(decision(cmd=LONG), None, ["docker run --rm", "…"], id="long-command-cut"),
    pytest.param(
        decision(cmd="docker ps \x1b[2J\u202e"), None, ["\\x1b[2J\\u202e"], id="escapes-stay-escaped"
    ),
    pytest.param(decision(cmd="docker run 漢字漢字漢字" * 10), None, ["漢字", "…"], id="wide-characters"),
    pytest.param(decision(profile="a-very-long-profile"), None, ["a-very-…"], id="long-profile-cut"),
]


@pytest.mark.parametrize("width", [80, 120, 200])
@pytest.mark.parametrize(("record", "exit_fields", "shown"), ROWS)
def test_short_line_fits_the_terminal(
    width: int, record: dict[str, object], exit_fields: dict[str, object] | None, shown: list[str]
) -> None:
    exit_record = None if exit_fields is None else {"event": "exit", "exit": 0, "duration_ms": 200}
    line = short.short_line(row_of(Event(record, exit_record)), short.Layout(width))
    assert "\n" not in line
    assert short.display_width(line) <= width
    for text in shown:
        assert text in line
    assert "is allowed" not in line  # allowed rows do not repeat "allowed: ... is allowed"


def test_key_prefix_only_on_wide_terminals() -> None:
    row = row_of(Event(decision(), None))
    assert "AbCdEfGh" not in short.short_line(row, short.Layout(80))
    assert "AbCdEfGh" in short.short_line(row, short.Layout(120))


def test_uncut_in_a_pipe() -> None:
    line = short.short_line(row_of(Event(decision(cmd=LONG), None)), short.Layout(None))
    assert LONG[:200] in line  # cut only where every view cuts a command (rows.COMMAND_LIMIT)


def test_colour_only_when_asked() -> None:
    row = row_of(Event(decision(decision="deny", rule="shell-syntax"), None))
    assert "\x1b" not in short.short_line(row, short.Layout(80))
    coloured = short.short_line(row, short.Layout(80, colour=True))
    assert "\x1b[1;31mdeny" in coloured
    assert (
        short.display_width(coloured.replace("\x1b[1;31m", "").replace("\x1b[0m", "").replace("\x1b[2m", ""))
        <= 80
    )


def test_verbose_is_every_field_escaped() -> None:
    out = io.StringIO()
    short.write_verbose([Event(decision(cmd="docker ps\nfake line"), {"exit": 3, "duration_ms": 5})], out)
    text = out.getvalue()
    assert "    cmd=docker ps\\nfake line\n" in text
    assert "    exit=3\n" in text


@pytest.mark.parametrize(
    ("environ", "command"),
    [
        ({}, ["less"]),
        ({"PAGER": "more"}, ["more"]),
        ({"PAGER": "less -R", "GATEKEEPER_PAGER": "most"}, ["most"]),
        ({"PAGER": ""}, None),
        ({"PAGER": "cat"}, None),
        ({"GATEKEEPER_PAGER": "", "PAGER": "less"}, None),
    ],
)
def test_pager_choice(environ: dict[str, str], command: list[str] | None) -> None:
    assert pager.pager_command(environ) == command


def big_log(path: Path, count: int) -> str:
    with path.open("w") as out:
        for number in range(count):
            out.write(json.dumps(decision(session=f"s{number}", decision="deny", rule="shell-syntax")) + "\n")
    return str(path)


@pytest.mark.parametrize("output", ["short", "tsv", "json", "verbose"])
def test_broken_pipe_ends_quietly_with_status_0(tmp_path: Path, output: str) -> None:
    log = big_log(tmp_path / "audit.jsonl", 20_000)
    command = (
        f"{sys.executable} -m gatekeeper audit --log {log} -o {output} | head -1; echo ${{PIPESTATUS[0]}}"
    )
    result = subprocess.run(["bash", "-c", command], capture_output=True, text=True, check=False, cwd=REPO)
    assert result.stderr == ""
    assert result.stdout.splitlines()[-1] == "0"


def run_on_a_terminal(argv: list[str], environ: dict[str, str], columns: int = 80) -> bytes:
    """Run ``gatekeeper ARGV`` on a pseudo-terminal of ``columns`` columns; all it printed."""
    pid, fd = pty.fork()
    if pid == 0:  # pragma: no cover - the child
        os.environ.update(environ)
        os.execv(  # noqa: S606
            sys.executable,
            [
                sys.executable,
                "-c",
                f"import fcntl, struct, termios, sys; "
                f"fcntl.ioctl(1, termios.TIOCSWINSZ, struct.pack('HHHH', 50, {columns}, 0, 0)); "
                f"from gatekeeper.cli import main; sys.exit(main({argv!r}))",
            ],
        )
    return everything_from(pid, fd)


def everything_from(pid: int, fd: int) -> bytes:
    """All a pty.fork child printed, until it closed the terminal (EIO on Linux), then reaped."""
    output = b""
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:
            break
        if not chunk:
            break
        output += chunk
    os.waitpid(pid, 0)
    return output


def test_terminal_listing_is_one_line_per_record_at_80_columns() -> None:
    out = run_on_a_terminal(["audit", "--log", AUDIT, "--no-pager"], {"NO_COLOR": "1"})
    lines = out.decode().replace("\r", "").splitlines()
    assert len(lines) == 1 + 12  # a header, then one line per decision
    assert all(short.display_width(line) <= 80 for line in lines)


def test_terminal_listing_goes_through_the_pager(tmp_path: Path) -> None:
    seen = tmp_path / "paged"
    fake_pager = f"sh -c 'cat > {seen}'"
    run_on_a_terminal(["audit", "--log", AUDIT], {"GATEKEEPER_PAGER": fake_pager, "NO_COLOR": "1"})
    assert len(seen.read_text().splitlines()) == 13
