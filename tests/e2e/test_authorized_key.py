"""`gatekeeper authorized-key` prints a safe line or refuses: the trying-to-cheat list.

No stack needed (not marked e2e): these run the pure line builder. The attack
is option injection: a key file, comment, policy path, profile name or CIDR
that closes the command="..." quote or starts a new line, and so adds
`environment=`, `permitopen=` or a second key without restrictions.
"""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from gatekeeper.authorized_key import KeyLineError, authorized_key_line, main, read_key_file

ED25519 = (
    "ssh-ed25519 " + base64.b64encode(b"\x00\x00\x00\x0bssh-ed25519\x00\x00\x00\x20" + b"k" * 32).decode()
)
COMMAND = '"/opt/gatekeeper/bin/python3 -I -m gatekeeper --policy /etc/gatekeeper/policy.toml"'


def line(key: str = ED25519, *, policy: str = "/etc/gatekeeper/policy.toml", **kwargs: str | None) -> str:
    return authorized_key_line(key, policy=policy, cidrs=kwargs.get("cidrs"), name=kwargs.get("name"))


def test_plain_key() -> None:
    assert line(f"{ED25519} agent@laptop") == f"restrict,command={COMMAND} {ED25519} agent@laptop"


def test_from_and_name() -> None:
    printed = line(cidrs="192.0.2.0/24, 2001:db8::/32", name="build-agent")
    assert printed.startswith('restrict,from="192.0.2.0/24,2001:db8::/32",command="')
    assert '--policy /etc/gatekeeper/policy.toml --name build-agent" ssh-ed25519 ' in printed


CHEATS = {
    "options before the key": f'command="/bin/sh" {ED25519}',
    "environment option": f'environment="LD_PRELOAD=/tmp/x.so" {ED25519}',
    "no-restrict style prefix": f"no-pty {ED25519}",
    "quote in comment": f'{ED25519} a",permitopen="*:*',
    "newline in comment": f"{ED25519} a\nssh-ed25519 AAAA evil",
    "carriage return": f"{ED25519} a\rb",
    "tab separated": ED25519.replace(" ", "\t"),
    "unknown key type": "ssh-dss AAAAB3NzaC1kc3MAAACBAP",
    "type mismatch": "ssh-rsa " + ED25519.split()[1],
    "not base64": "ssh-ed25519 AAAA$$$$",
    "truncated blob": "ssh-ed25519 AAAA",
    "missing blob": "ssh-ed25519",
    "backslash in comment": f"{ED25519} a\\b",
    "non-ascii comment": f"{ED25519} agent\u202e@laptop",
}


@pytest.mark.parametrize("key", CHEATS.values(), ids=CHEATS.keys())
def test_cheating_key_line_is_refused(key: str) -> None:
    with pytest.raises(KeyLineError):
        line(key)


BAD_ARGUMENTS = {
    "policy with quote": {"policy": '/etc/x",environment="A=B'},
    "policy with space": {"policy": "/etc/gk policy.toml"},
    "relative policy": {"policy": "policy.toml"},
    "policy with dotdot": {"policy": "/etc/gatekeeper/../shadow"},
    "name with quote": {"name": 'a"b'},
    "name with space": {"name": "a --policy /tmp/p"},
    "name leading dash": {"name": "-x"},
    "cidr with host bits": {"cidrs": "192.0.2.1/24"},
    "cidr with quote": {"cidrs": '127.0.0.1",command="sh'},
    "hostname pattern": {"cidrs": "*.example.com"},
}


@pytest.mark.parametrize("arguments", BAD_ARGUMENTS.values(), ids=BAD_ARGUMENTS.keys())
def test_unsafe_argument_is_refused(arguments: dict[str, str]) -> None:
    with pytest.raises(KeyLineError):
        line(**arguments)


def test_file_with_two_keys_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "two.pub"
    path.write_text(f"{ED25519} a\n{ED25519} b\n")
    with pytest.raises(KeyLineError):
        read_key_file(path)


def test_main_prints_one_line_and_exits_0(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "agent.pub"
    path.write_text(f"{ED25519} agent@laptop\n")
    assert main([str(path), "--name", "agent"]) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and out.startswith("restrict,command=")


def test_main_refuses_with_one_line_on_stderr(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "agent.pub"
    path.write_text(f'command="sh" {ED25519}\n')
    assert main([str(path)]) == 65
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1
