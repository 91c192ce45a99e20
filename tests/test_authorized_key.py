"""`gatekeeper authorized-key` prints a safe line or refuses: the trying-to-cheat list.

No stack needed: these run the line builder and the system's ssh-keygen. The
attack is option injection: a key file, comment, policy path, profile name or
address that closes a quote or starts a new line, and so adds `environment=`,
`permitopen=` or a second key without restrictions. The headline case: an
IPv6 scope id carrying a quote, which the old code printed back verbatim, so
that sshd (and ssh-keygen) read *another* key from the line, with no command=.
tests/e2e/test_authorized_key.py shows the same through the real sshd.
"""

from __future__ import annotations

import base64
import ipaddress
import subprocess
from pathlib import Path

import pytest

from gatekeeper.operator import authorized_key
from gatekeeper.operator.authorized_key import KeyLineError, authorized_key_line, main, read_key_file
from gatekeeper.policy import PolicyError, load_policy


def ed25519(fill: bytes) -> str:
    blob = b"\x00\x00\x00\x0bssh-ed25519\x00\x00\x00\x20" + fill * 32
    return "ssh-ed25519 " + base64.b64encode(blob).decode()


ED25519 = ed25519(b"k")
OTHER = ed25519(b"o")  # the attacker's key
COMMAND = '"/opt/gatekeeper/bin/gatekeeper-ssh --policy /etc/gatekeeper/policy.toml"'


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
    "name with equals": {"name": "a=b"},
    "name with newline": {"name": "a\nb"},
    "name with NUL": {"name": "a\0b"},
    "name empty": {"name": ""},
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


# ---------------------------------------------------------------- hostile --from and key files
#
# Each case: what the code before the grammar did with it (the control, replayed
# below with a copy of the old --from handling and the real ssh-keygen), and the
# refusal now. "swaps the key": ssh-keygen -l reads the attacker's key from the
# printed line. "accepted": printed, but never matches or is not what was meant.

SCOPE_QUOTE = f'192.0.2.10,fe80::%x" {OTHER} c'


def old_validated_cidrs(cidrs: str) -> str:
    """The --from handling before issue 19 (verbatim, minus the error path)."""
    return ",".join(str(ipaddress.ip_network(item.strip(), strict=True)) for item in cidrs.split(","))


def old_line(key: str, cidrs: str) -> str:
    command = '"/opt/gatekeeper/bin/python3 -I -m gatekeeper --policy /etc/gatekeeper/policy.toml"'
    return f'restrict,from="{old_validated_cidrs(cidrs)}",command={command} {key}'


def keygen_fingerprints(line: str, tmp_path: Path) -> list[str]:
    path = tmp_path / "line.keys"
    path.write_text(line + "\n")
    out = subprocess.run(["ssh-keygen", "-l", "-E", "sha256", "-f", str(path)],
                         capture_output=True, text=True, check=True).stdout  # fmt: skip
    return [fields.split()[1] for fields in out.splitlines()]


def fingerprint(key: str) -> str:
    return authorized_key.validated_key(key).fingerprint()


HOSTILE_SOURCES = {
    "scope id with quote and key": (SCOPE_QUOTE, "swaps the key"),
    "scope id plain": ("fe80::1%eth0", "accepted"),
    "scope id with space": ("fe80::1%a b", "accepted"),
    "scope id on network": ("fe80::%x/64", "accepted"),
    "ipv4-mapped": ("::ffff:192.0.2.10", "accepted"),
    "ipv4-mapped hex": ("::ffff:c000:20a", "accepted"),
    "ipv4-mapped network": ("::ffff:192.0.2.0/120", "accepted"),
    "ipv6 covering the mapped range": ("::/0", "accepted"),
    "newline after address": ("192.0.2.10\n", "accepted"),
    "tab before address": ("\t192.0.2.10", "accepted"),
    "leading zero octet": ("192.0.2.010", "refused"),
    "quote in address": ('127.0.0.1",command="sh', "refused"),
    "host name": ("agent.example.com", "refused"),
    "negation": ("!192.0.2.10", "refused"),
    "empty item": ("192.0.2.10,", "refused"),
    "NUL": ("192.0.2.10\0", "refused"),
}


@pytest.mark.parametrize(("source", "before"), HOSTILE_SOURCES.values(), ids=HOSTILE_SOURCES.keys())
def test_hostile_from_is_refused(source: str, before: str, tmp_path: Path) -> None:
    # Control: what the old code did with the same input.
    try:
        printed = old_line(ED25519, source)
    except ValueError:
        assert before == "refused"
    else:
        assert before != "refused"
        expected = [fingerprint(OTHER)] if before == "swaps the key" else [fingerprint(ED25519)]
        if "\n" not in printed:
            assert keygen_fingerprints(printed, tmp_path) == expected
    # Now: refused with a usage error, nothing printed.
    with pytest.raises(KeyLineError) as refused:
        line(cidrs=source)
    assert refused.value.exit_code == 64


def test_ipv4_mapped_refusal_names_the_dotted_quad() -> None:
    with pytest.raises(KeyLineError, match="dotted quad"):
        line(cidrs="::ffff:192.0.2.10")


GOOD_SOURCES = {
    "ipv4 host": ("192.0.2.10", "192.0.2.10/32"),
    "ipv4 network": ("192.0.2.0/24", "192.0.2.0/24"),
    "ipv6 host": ("2001:DB8::1", "2001:db8::1/128"),
    "ipv6 network": ("2001:db8::/32", "2001:db8::/32"),
    "loopback both": ("127.0.0.1, ::1", "127.0.0.1/32,::1/128"),
}


@pytest.mark.parametrize(("source", "printed"), GOOD_SOURCES.values(), ids=GOOD_SOURCES.keys())
def test_plain_from_is_printed_canonically(source: str, printed: str) -> None:
    assert line(cidrs=source).startswith(f'restrict,from="{printed}",command=')


def test_verification_alone_catches_the_key_swap(monkeypatch: pytest.MonkeyPatch) -> None:
    """Second layer: with the grammar switched off (old --from handling), the
    parse-back check refuses the line instead of printing the other key."""
    monkeypatch.setattr(authorized_key, "validated_sources", old_validated_cidrs)
    with pytest.raises(KeyLineError, match="internal check failed") as refused:
        line(cidrs=SCOPE_QUOTE)
    assert refused.value.exit_code == 70


def test_keygen_check_alone_catches_a_swap() -> None:
    """Third layer: even if the own parser agreed, ssh-keygen's reading must match."""
    authorized_key.verify_keygen(line(ED25519), authorized_key.validated_key(ED25519))
    with pytest.raises(KeyLineError, match="ssh-keygen reads"):
        authorized_key.verify_keygen(old_line(ED25519, SCOPE_QUOTE), authorized_key.validated_key(ED25519))


def test_printed_line_round_trips_through_ssh_keygen(tmp_path: Path) -> None:
    printed = line(f"{ED25519} agent@laptop", cidrs="192.0.2.0/24", name="build")
    assert keygen_fingerprints(printed, tmp_path) == [fingerprint(ED25519)]
    options, rest = authorized_key.split_options(printed)
    assert options == ["restrict", 'from="192.0.2.0/24"', f"command={COMMAND[:-1]} --name build\""]
    assert rest == f"{ED25519} agent@laptop"


PRIVATE = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END OPENSSH PRIVATE KEY-----\n"
HOSTILE_KEY_FILES = {
    "openssh private key": PRIVATE,
    "pem private key": "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA\n-----END RSA PRIVATE KEY-----\n",
    "one-line private key": "-----BEGIN OPENSSH PRIVATE KEY----- b3BlbnNzaC1rZXktdjEAAAAA\n",
    "rfc4716 public key": "---- BEGIN SSH2 PUBLIC KEY ----\nAAAAC3Nz\n---- END SSH2 PUBLIC KEY ----\n",
    "two keys on two lines": f"{ED25519} a\n{OTHER} b\n",
    "second key in the comment": f"{ED25519} a {OTHER}\n",
    "key after a carriage return": f"{ED25519} a\r{OTHER}\n",
    "NUL in the comment": f"{ED25519} a\0b\n",
    "quote in the comment": f'{ED25519} a"b\n',
    "comma and quote in the comment": f'{ED25519} a",command="sh\n',
    "options before the key": f'from="*" {ED25519}\n',
}


@pytest.mark.parametrize("content", HOSTILE_KEY_FILES.values(), ids=HOSTILE_KEY_FILES.keys())
def test_hostile_key_file_is_refused(content: str, tmp_path: Path) -> None:
    path = tmp_path / "agent.pub"
    path.write_text(content)
    with pytest.raises(KeyLineError):
        line(read_key_file(path))


def test_second_key_in_the_comment_was_printed_before(tmp_path: Path) -> None:
    """Control for the comment rule: the old comment grammar let a whole second key
    through (sshd ignores it, but the file then shows two keys to a reader)."""
    old_comment = authorized_key.SAFE_COMMENT
    assert old_comment.fullmatch(f"a {OTHER}")
    with pytest.raises(KeyLineError, match="another key type"):
        line(f"{ED25519} a {OTHER}")


NAMES = ["agent", "build-agent.v2", "team/agent:1@host", "-x", "a" * 255, "", "a b", 'a"b', "a=b", "a" * 256]


@pytest.mark.parametrize("name", NAMES)
def test_name_grammar_is_the_forcecommands(name: str) -> None:
    """One definition: authorized-key accepts a --name exactly when the runtime does."""
    try:
        load_policy(None, name)
        runtime_accepts = True
    except PolicyError:
        runtime_accepts = False
    try:
        line(name=name)
        printer_accepts = True
    except KeyLineError:
        printer_accepts = False
    assert printer_accepts == runtime_accepts
