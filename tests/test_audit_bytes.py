"""A command that is not UTF-8 keeps its exact bytes in the audit record, and denials name the byte.

sshd hands over bytes; Python keeps an undecodable byte 0xNN as the lone surrogate U+DCNN, which
other JSON tools turn into U+FFFD. The record therefore carries ``cmd`` with each such byte written
as the text ``\\xNN`` and ``cmd_b64``, the exact bytes.
"""

from __future__ import annotations

import base64
import json
import subprocess

import pytest

from gatekeeper import audit
from gatekeeper.errors import Denied
from gatekeeper.operator.views.records import Event
from gatekeeper.operator.views.rows import row_of
from gatekeeper.words import split_command
from tests.conftest import REPO, Deployment, gatekeeper_command

# The bytes sshd received -> cmd as recorded, and whether cmd_b64 is there.
CASES = [
    (b"docker ps", "docker ps", False, "ascii"),
    ("docker run caf\u00e9".encode(), "docker run caf\u00e9", False, "valid-utf8-stays-text"),
    (b"docker ps \xff", "docker ps \\xff", True, "one-bad-byte"),
    (b"docker ps \xc3", "docker ps \\xc3", True, "truncated-sequence"),
    (b"docker run caf\xc3\xa9 \xfe\xff", "docker run caf\u00e9 \\xfe\\xff", True, "mixed"),
]


@pytest.mark.parametrize(("sent", "cmd", "has_b64"), [pytest.param(s, c, b, id=i) for s, c, b, i in CASES])
def test_record_fields(sent: bytes, cmd: str, has_b64: bool) -> None:
    command = sent.decode("utf-8", "surrogateescape")  # as os.environ gives it
    fields = audit.command_fields(command)
    assert fields["cmd"] == cmd
    assert ("cmd_b64" in fields) is has_b64
    line = audit.encode(fields)
    assert line.isascii()
    parsed = json.loads(line)
    if has_b64:
        assert base64.b64decode(parsed["cmd_b64"]) == sent  # the exact bytes
    assert audit.command_bytes(parsed) == command


@pytest.mark.parametrize(
    ("sent", "reason"),
    [
        (b"docker ps \xff", "byte 0xFF (invalid UTF-8)"),
        (b"docker ps \xc3", "byte 0xC3 (invalid UTF-8)"),
        (b"docker ps \x01", "control character"),
    ],
)
def test_denial_names_the_byte(sent: bytes, reason: str) -> None:
    with pytest.raises(Denied) as caught:
        split_command(sent.decode("utf-8", "surrogateescape"))
    assert reason in caught.value.message
    assert caught.value.rule == "shell-syntax"


def test_views_show_the_exact_bytes_escaped() -> None:
    record = {"event": "decision", "decision": "deny", **audit.command_fields("docker ps \udcff")}
    assert row_of(Event(record, None)).command == "docker ps \\xff"


def test_forcecommand_records_the_bytes(deployment: Deployment) -> None:
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), "SSH_ORIGINAL_COMMAND": "docker ps \udcff"}
    done = subprocess.run(
        [*gatekeeper_command(), "--policy", str(deployment.policy)],
        env=env,
        cwd=REPO,
        capture_output=True,
        timeout=30,
        check=False,
    )
    assert b"byte 0xFF" in done.stderr and b"(rule shell-syntax)" in done.stderr
    (line,) = deployment.audit_lines()
    record = json.loads(line)
    assert record["cmd"] == "docker ps \\xff"
    assert base64.b64decode(record["cmd_b64"]) == b"docker ps \xff"


# Commands too long to record whole: sshd hands over up to ~256 KiB, the proxy's intake takes a
# record of at most 64 KiB; a refused command must not go unrecorded.
LONG = {
    "ascii over the limit": "docker run --privileged busybox echo " + "x" * 200_000,
    "astral characters": "docker run busybox echo '" + "\U0001d54f" * 1400 + "'",  # 12 bytes each, escaped
    "bmp characters": "docker run busybox echo '" + "\u00e9" * 2800 + "'",
    "invalid utf-8 too": "docker ps " + "x" * 20_000 + b"\xff".decode("utf-8", "surrogateescape"),
}


@pytest.mark.parametrize("command", LONG.values(), ids=LONG.keys())
def test_a_command_too_long_to_record_whole_is_refused_and_recorded_in_part(command: str) -> None:
    from gatekeeper.proxy.intake import MAX_RECORD
    from gatekeeper.words import MAX_COMMAND_LENGTH

    whole = audit.encode(audit.exact_command_fields(command))
    assert len(whole) > MAX_COMMAND_LENGTH  # the control: recorded whole, it is this large
    with pytest.raises(Denied) as caught:
        split_command(command)
    assert caught.value.rule == "shell-syntax"
    fields = audit.command_fields(command)
    line = audit.encode({"reason": caught.value.message, **fields})
    assert len(line) < MAX_RECORD // 4
    raw = command.encode("utf-8", "surrogateescape")
    assert fields["cmd_length"] == len(raw)
    assert fields["cmd_sha256"] == __import__("hashlib").sha256(raw).hexdigest()
    recorded = audit.command_bytes(json.loads(line))
    assert recorded is not None and recorded.endswith(audit.TRUNCATED)
    assert command.startswith(recorded.removesuffix(audit.TRUNCATED))
    with pytest.raises(Denied) as again:  # decided again (replay), still refused by the same rule
        split_command(recorded)
    assert again.value.rule == "shell-syntax"


def test_a_non_ascii_command_that_records_within_the_limit_is_whole() -> None:
    command = "docker run busybox echo '" + "\u00e9" * 2000 + "'"  # 12 KiB as \\u escapes
    assert split_command(command)[-1] == "\u00e9" * 2000
    assert audit.command_fields(command) == {"cmd": command}
