"""`gatekeeper authorized-key`: print the authorized_keys line that pins one key to gatekeeper.

The printed line is

    restrict[,from="CIDR,..."],command="/opt/gatekeeper/bin/gatekeeper-ssh
    --policy FILE [--name NAME]" TYPE BASE64 [COMMENT]

for /etc/ssh/authorized_keys/ai-worker (root-owned). `restrict` turns off every
forwarding, the pty and ~/.ssh/rc; `command=` runs gatekeeper whatever the
client asked for (sshd_config's ForceCommand, when present, wins over it).

Every input goes through a strict grammar first, so a crafted key file,
comment, policy path, name or address can never close a quote or start a new
line, and so can never smuggle in options of its own (a second `command=`,
`environment=`, `permitopen=`) or a key of its own. Addresses are dotted quads,
or hex-and-colon IPv6 without a scope id (Python's `ipaddress` accepts any
character but `%/,` in a scope id and prints it back: a quote there once put
another key into the printed line). A key file that already carries options,
holds several keys or a private key is refused rather than "cleaned".

Then the printed line itself is verified before it is printed: parsed back the
way sshd splits it (options, type, key, comment), it must carry exactly the
intended options and exactly the input key, and `ssh-keygen -l` must read one
key from it with the input key's fingerprint.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import hashlib
import ipaddress
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Final

from gatekeeper.errors import GatekeeperError
from gatekeeper.policy import PROFILE_NAME_HINT, is_profile_name

# The entry script `gatekeeper install-entry` writes (#!/opt/gatekeeper/bin/python3 -IS).
FORCECOMMAND_ENTRY: Final = "/opt/gatekeeper/bin/gatekeeper-ssh"
DEFAULT_POLICY: Final = "/etc/gatekeeper/policy.toml"
EX_USAGE: Final = 64
EX_DATAERR: Final = 65
EX_NOINPUT: Final = 66
EX_SOFTWARE: Final = 70
MAX_KEY_FILE_BYTES: Final = 64 * 1024
MAX_SOURCES: Final = 64

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
# The comment is printed after the key, where sshd reads no options, but a
# quote, backslash or control character there only invites mistakes.
SAFE_COMMENT: Final = re.compile(r"[A-Za-z0-9 @._:+=,/()-]{0,200}")
BASE64_BLOB: Final = re.compile(r"[A-Za-z0-9+/]+={0,2}")
# from="...": a dotted quad (no leading zeros, which some parsers read as
# octal) or hex-and-colon IPv6, each with an optional prefix length. No scope
# id (`%eth0`), no embedded dotted quad, no host names or wildcards.
OCTET: Final = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
IPV4_SOURCE: Final = re.compile(rf"{OCTET}(?:\.{OCTET}){{3}}(?:/(?:3[0-2]|[12]?[0-9]))?")
IPV6_SOURCE: Final = re.compile(r"[0-9A-Fa-f:]{2,39}(?:/(?:12[0-8]|1[01][0-9]|[1-9]?[0-9]))?")
IPV4_MAPPED: Final = ipaddress.IPv6Network("::ffff:0:0/96")
PRIVATE_KEY_MARKERS: Final = ("PRIVATE KEY", "BEGIN OPENSSH", "BEGIN SSH2")
SSH_KEYGEN: Final = "ssh-keygen"


class KeyLineError(GatekeeperError):
    """A refusal: the message is shown to the operator, the exit code returned."""

    def __init__(self, message: str, exit_code: int = EX_DATAERR) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class PublicKey:
    """The input key as printed: `TYPE BASE64 [COMMENT]`."""

    __slots__ = ("blob", "comment", "key_type")

    def __init__(self, key_type: str, blob: str, comment: str) -> None:
        self.key_type = key_type
        self.blob = blob
        self.comment = comment

    def text(self) -> str:
        return " ".join(field for field in (self.key_type, self.blob, self.comment) if field)

    def fingerprint(self) -> str:
        """SHA256:... as ssh-keygen -l prints it (unpadded base64 of the blob's digest)."""
        digest = hashlib.sha256(base64.b64decode(self.blob)).digest()
        return "SHA256:" + base64.b64encode(digest).decode("ascii").rstrip("=")


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
        epilog="examples:\n  gatekeeper authorized-key /tmp/agent.pub --from 192.0.2.10\n"
        "  gatekeeper authorized-key ci.pub --from 192.0.2.0/24 >> /etc/ssh/authorized_keys/ai-worker",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("pubkey_file", metavar="PUBKEY_FILE", help="the agent's public key (*.pub)")
    parser.add_argument("--policy", default=DEFAULT_POLICY, help=f"policy file (default {DEFAULT_POLICY})")
    parser.add_argument(
        "--from", dest="source", help="comma-separated addresses or CIDR networks the key may log in from"
    )
    parser.add_argument(
        "--name",
        help="profile name recorded in the audit log (only in key-option mode: "
        "a ForceCommand in sshd_config replaces the whole command= and its --name)",
    )
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
    if any(marker in text for marker in PRIVATE_KEY_MARKERS):
        raise KeyLineError(f"{path} is a private key or not in OpenSSH's one-line format; give the .pub file")
    lines = [line for line in text.split("\n") if line.strip()]
    if len(lines) != 1:
        raise KeyLineError(f"{path} must hold exactly one public key line, found {len(lines)}")
    return lines[0]


def authorized_key_line(key_line: str, *, policy: str, cidrs: str | None, name: str | None) -> str:
    """The complete authorized_keys line, verified; raises KeyLineError on anything unsafe."""
    key = validated_key(key_line)
    options = ["restrict"]
    if cidrs is not None:
        options.append(f'from="{validated_sources(cidrs)}"')
    options.append(f'command="{forced_command(policy, name)}"')
    line = ",".join(options) + " " + key.text()
    verify_line(line, options, key)
    return line


def validated_key(key_line: str) -> PublicKey:
    """`TYPE BASE64 [COMMENT]` after every check."""
    if any(ord(char) < 0x20 or ord(char) == 0x7F for char in key_line):
        raise KeyLineError("the key line contains control characters")
    fields = key_line.strip(" ").split(" ", 2)
    if fields[0] not in KEY_TYPES:
        raise KeyLineError(
            "the file must hold a bare public key (TYPE BASE64 [COMMENT]); "
            f"{fields[0][:40]!r} is not a key type, and key options are never copied"
        )
    if len(fields) < 2:
        raise KeyLineError("the key line has no key data")
    check_key_blob(fields[0], fields[1])
    comment = fields[2].strip(" ") if len(fields) == 3 else ""
    if not SAFE_COMMENT.fullmatch(comment):
        raise KeyLineError("the key comment may only use letters, digits, spaces and @._:+=,/()-")
    if any(word in KEY_TYPES for word in comment.split()):
        raise KeyLineError("the key comment holds another key type: one key per file")
    return PublicKey(fields[0], fields[1], comment)


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


def validated_sources(cidrs: str) -> str:
    """Canonical, comma-separated networks for from="..."; host bits must be zero."""
    items = [item.strip(" ") for item in cidrs.split(",")]
    if len(items) > MAX_SOURCES:
        raise KeyLineError(f"--from: at most {MAX_SOURCES} addresses or networks", EX_USAGE)
    return ",".join(validated_source(item) for item in items)


def validated_source(item: str) -> str:
    """One address or network: grammar first, then ipaddress for the value."""
    if not (IPV4_SOURCE.fullmatch(item) or IPV6_SOURCE.fullmatch(item)):
        raise KeyLineError(
            f"--from: {item[:60]!r} is not an address or CIDR network "
            "(dotted quad or hex IPv6, optional /prefix; no scope id, host name or wildcard)",
            EX_USAGE,
        )
    try:
        network = ipaddress.ip_network(item, strict=True)
    except ValueError as error:
        raise KeyLineError(f"--from: {item!r}: {error}", EX_USAGE) from error
    if isinstance(network, ipaddress.IPv6Network) and network.overlaps(IPV4_MAPPED):
        raise KeyLineError(
            f"--from: {item!r} is an IPv4-mapped IPv6 address, which never matches: sshd compares "
            "an IPv4 client as IPv4; give the dotted quad (e.g. 192.0.2.10) instead",
            EX_USAGE,
        )
    text = str(network)
    if not re.fullmatch(r"[0-9a-f.:/]+", text):  # what ipaddress printed back
        raise KeyLineError(f"--from: {item!r} does not print back as a plain network", EX_USAGE)
    return text


def forced_command(policy: str, name: str | None) -> str:
    """The command="..." value; both inputs are checked so nothing needs quoting."""
    if not SAFE_POLICY_PATH.fullmatch(policy) or "/../" in policy + "/" or "/./" in policy + "/":
        raise KeyLineError(
            f"--policy must be a normalised absolute path of [A-Za-z0-9._+-/], not {policy!r}", EX_USAGE
        )
    command = f"{FORCECOMMAND_ENTRY} --policy {policy}"
    if name is not None:
        if not is_profile_name(name):
            raise KeyLineError(f"--name must be {PROFILE_NAME_HINT}, not {name!r}", EX_USAGE)
        command += f" --name {name}"
    return command


# ---------------------------------------------------------------- verification


def verify_line(line: str, options: list[str], key: PublicKey) -> None:
    """Parse the printed line back; refuse to print it unless it is exactly what we meant."""
    verify_parsed(line, options, key)
    verify_keygen(line, key)


def verify_parsed(line: str, options: list[str], key: PublicKey) -> None:
    """Our own reading, split the way sshd splits: the options, then the key."""
    parsed_options, rest = split_options(line)
    fields = rest.split(" ", 2)
    comment = fields[2] if len(fields) == 3 else ""
    if "\n" in line or "\r" in line or "\0" in line:
        raise KeyLineError("internal check failed: the line spans several lines", EX_SOFTWARE)
    if parsed_options != options:
        raise KeyLineError(f"internal check failed: the line's options are {parsed_options}", EX_SOFTWARE)
    if fields[:2] != [key.key_type, key.blob] or comment != key.comment:
        raise KeyLineError("internal check failed: the line holds another key", EX_SOFTWARE)


def verify_keygen(line: str, key: PublicKey) -> None:
    """OpenSSH's own reading: exactly one key, with the input key's fingerprint."""
    fingerprints = keygen_fingerprints(line)
    if fingerprints is not None and fingerprints != [key.fingerprint()]:
        raise KeyLineError(
            f"internal check failed: ssh-keygen reads {fingerprints}, not {key.fingerprint()}", EX_SOFTWARE
        )


def split_options(line: str) -> tuple[list[str], str]:
    """sshd's reading of a line with options: comma-separated up to the first
    space or tab outside double quotes; `\\"` inside quotes is a literal quote."""
    options: list[str] = []
    current: list[str] = []
    quoted = False
    index = 0
    while index < len(line):
        char = line[index]
        if char == "\\" and quoted and line[index + 1 : index + 2] == '"':
            current.append('\\"')
            index += 2
            continue
        if char == '"':
            quoted = not quoted
        elif not quoted and char in " \t":
            break
        if not quoted and char == ",":
            options.append("".join(current))
            current = []
        else:
            current.append(char)
        index += 1
    options.append("".join(current))
    return options, line[index:].lstrip(" \t")


def keygen_fingerprints(line: str) -> list[str] | None:
    """The SHA256 fingerprints `ssh-keygen -l` reads from the line; None without ssh-keygen."""
    keygen = shutil.which(SSH_KEYGEN, path="/usr/bin:/bin:/usr/local/bin")
    if keygen is None:
        return None
    with tempfile.NamedTemporaryFile("w", suffix=".keys") as keys:
        keys.write(line + "\n")
        keys.flush()
        result = subprocess.run(
            [keygen, "-l", "-E", "sha256", "-f", keys.name],
            capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
    if result.returncode != 0:
        raise KeyLineError(f"internal check failed: ssh-keygen cannot read the line: {result.stderr.strip()}",
                           EX_SOFTWARE)
    return [fields[1] for fields in (out.split() for out in result.stdout.splitlines()) if len(fields) > 1]


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
