"""`gatekeeper authorized-key`: print the authorized_keys line that pins one key to gatekeeper.

The printed line is

    restrict[,from="CIDR,..."],command="/opt/gatekeeper/bin/python3 -I -m gatekeeper
    --policy FILE [--name NAME]" TYPE BASE64 [COMMENT]

for /etc/ssh/authorized_keys/ai-worker (root-owned). `restrict` turns off every
forwarding, the pty and ~/.ssh/rc; `command=` runs gatekeeper whatever the
client asked for (sshd_config's ForceCommand, when present, wins over it).

Everything we print is checked against a narrow character set first, so a
crafted key file, comment, policy path, name or CIDR can never close a quote or
start a new line, and so can never smuggle in options of its own (a second
`command=`, `environment=`, `permitopen=`, `no-restrict`-style relaxations).
A key file that already carries options is refused rather than "cleaned".
"""

from __future__ import annotations

import argparse
import base64
import binascii
import ipaddress
import re
import sys
from pathlib import Path
from typing import Final

FORCECOMMAND_PYTHON: Final = "/opt/gatekeeper/bin/python3"
DEFAULT_POLICY: Final = "/etc/gatekeeper/policy.toml"
EX_USAGE: Final = 64
EX_DATAERR: Final = 65
EX_NOINPUT: Final = 66
MAX_KEY_FILE_BYTES: Final = 64 * 1024

# Key types OpenSSH 9 accepts for user authentication (ssh-dss is disabled there).
KEY_TYPES: Final = frozenset(
    {
        "ssh-ed25519",
        "ssh-rsa",
        "ecdsa-sha2-nistp256",
        "ecdsa-sha2-nistp384",
        "ecdsa-sha2-nistp521",
        "sk-ssh-ed25519@openssh.com",
        "sk-ecdsa-sha2-nistp256@openssh.com",
    }
)
# Inside command="..." sshd ends the value at the first unescaped quote: allow
# no quote, backslash, space or shell metacharacter in anything we put there.
SAFE_POLICY_PATH: Final = re.compile(r"/[A-Za-z0-9._+-]+(?:/[A-Za-z0-9._+-]+)*")
SAFE_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
# The comment is printed after the key, where sshd reads no options, but a
# quote, backslash or control character there only invites mistakes.
SAFE_COMMENT: Final = re.compile(r"[A-Za-z0-9 @._:+=,/()-]{0,200}")
BASE64_BLOB: Final = re.compile(r"[A-Za-z0-9+/]+={0,2}")


class KeyLineError(Exception):
    """A refusal: the message is shown to the operator, the exit code returned."""

    def __init__(self, message: str, exit_code: int = EX_DATAERR) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code


def main(argv: list[str]) -> int:
    """Entry point for `gatekeeper authorized-key`; returns the exit status."""
    args = parse_arguments(argv)
    try:
        line = authorized_key_line(
            read_key_file(Path(args.pubkey_file)),
            policy=args.policy,
            cidrs=args.source,
            name=args.name,
        )
    except KeyLineError as error:
        sys.stderr.write(f"gatekeeper authorized-key: {error.message}\n")
        return error.exit_code
    sys.stdout.write(line + "\n")
    return 0


def parse_arguments(argv: list[str]) -> argparse.Namespace:
    """The operator's options; argparse exits 2 on a usage error, as usual."""
    parser = argparse.ArgumentParser(
        prog="gatekeeper authorized-key",
        description="Print an authorized_keys line that runs gatekeeper for this key.",
    )
    parser.add_argument("pubkey_file", metavar="PUBKEY_FILE", help="the agent's public key (*.pub)")
    parser.add_argument("--policy", default=DEFAULT_POLICY, help=f"policy file (default {DEFAULT_POLICY})")
    parser.add_argument(
        "--from", dest="source", help="comma-separated addresses or CIDR networks the key may log in from"
    )
    parser.add_argument("--name", help="profile name recorded in the audit log")
    return parser.parse_args(argv)


def read_key_file(path: Path) -> str:
    """The file's single key line, as ASCII text without its line ending."""
    try:
        data = path.read_bytes()[: MAX_KEY_FILE_BYTES + 1]
    except OSError as error:
        raise KeyLineError(f"cannot read {path}: {error.strerror}", EX_NOINPUT) from error
    if len(data) > MAX_KEY_FILE_BYTES:
        raise KeyLineError(f"{path} is too large for a public key file")
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError as error:
        raise KeyLineError(f"{path} is not ASCII text") from error
    lines = [line for line in text.splitlines() if line.strip()]
    if len(lines) != 1:
        raise KeyLineError(f"{path} must hold exactly one public key line, found {len(lines)}")
    return lines[0]


def authorized_key_line(key_line: str, *, policy: str, cidrs: str | None, name: str | None) -> str:
    """The complete authorized_keys line; raises KeyLineError on anything unsafe."""
    key = validated_key(key_line)
    options = ["restrict"]
    if cidrs is not None:
        options.append(f'from="{validated_cidrs(cidrs)}"')
    options.append(f'command="{forced_command(policy, name)}"')
    return ",".join(options) + " " + key


def validated_key(key_line: str) -> str:
    """`TYPE BASE64 [COMMENT]` re-joined with single spaces, after every check."""
    if any(ord(char) < 0x20 or ord(char) == 0x7F for char in key_line):
        raise KeyLineError("the key line contains control characters")
    fields = key_line.split(None, 2)
    if fields[0] not in KEY_TYPES:
        raise KeyLineError(
            "the file must hold a bare public key (TYPE BASE64 [COMMENT]); "
            f"{fields[0][:40]!r} is not a key type, and key options are never copied"
        )
    if len(fields) < 2:
        raise KeyLineError("the key line has no key data")
    check_key_blob(fields[0], fields[1])
    comment = fields[2].strip() if len(fields) == 3 else ""
    if not SAFE_COMMENT.fullmatch(comment):
        raise KeyLineError("the key comment may only use letters, digits, spaces and @._:+=,/()-")
    return " ".join(field for field in (fields[0], fields[1], comment) if field)


def check_key_blob(key_type: str, blob: str) -> None:
    """The base64 data decodes and names the same key type as the line does."""
    if not BASE64_BLOB.fullmatch(blob):
        raise KeyLineError("the key data is not base64")
    try:
        raw = base64.b64decode(blob, validate=True)
    except (binascii.Error, ValueError) as error:
        raise KeyLineError("the key data is not valid base64") from error
    if len(raw) < 4:
        raise KeyLineError("the key data is truncated")
    length = int.from_bytes(raw[:4], "big")
    if raw[4 : 4 + length] != key_type.encode("ascii"):
        raise KeyLineError(f"the key data is not a {key_type} key")


def validated_cidrs(cidrs: str) -> str:
    """Canonical, comma-separated networks for from="..."; host bits must be zero."""
    networks = []
    for item in cidrs.split(","):
        try:
            networks.append(str(ipaddress.ip_network(item.strip(), strict=True)))
        except ValueError as error:
            message = f"--from: {item.strip()!r} is not an address or CIDR network"
            raise KeyLineError(message, EX_USAGE) from error
    return ",".join(networks)


def forced_command(policy: str, name: str | None) -> str:
    """The command="..." value; both inputs are checked so nothing needs quoting."""
    if not SAFE_POLICY_PATH.fullmatch(policy) or "/../" in policy + "/" or "/./" in policy + "/":
        raise KeyLineError(
            f"--policy must be a normalised absolute path of [A-Za-z0-9._+-/], not {policy!r}", EX_USAGE
        )
    command = f"{FORCECOMMAND_PYTHON} -I -m gatekeeper --policy {policy}"
    if name is not None:
        if not SAFE_NAME.fullmatch(name):
            raise KeyLineError(f"--name must match {SAFE_NAME.pattern}, not {name!r}", EX_USAGE)
        command += f" --name {name}"
    return command


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
