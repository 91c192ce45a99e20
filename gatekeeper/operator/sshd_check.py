"""`gatekeeper sshd-check`: the settings sshd really applies to the agent, checked.

The drop-in says what we mean; what counts is what sshd makes of it together
with every other file it reads (Debian's main file, other drop-ins, Match
blocks for addresses). So this asks sshd itself, `sshd -T -C user=...,addr=...`,
for the effective settings of the agent's account, from several client
addresses (neighbour files like to `Match Address 10.0.0.0/8`), and compares
them with the table below. Any difference is printed and the exit status is 1:
the install step (sshd_snippets/install.sh sshd) stops there.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from collections.abc import Mapping, Sequence
from typing import Final

from gatekeeper.errors import GatekeeperError

EX_MISMATCH: Final = 1
EX_SSHD: Final = 2
SSHD: Final = "/usr/sbin/sshd"
DEFAULT_CONFIG: Final = "/etc/ssh/sshd_config"
DEFAULT_USER: Final = "ai-worker"
# Loopback, the private and shared ranges, documentation ranges, IPv6.
DEFAULT_ADDRESSES: Final = (
    "127.0.0.1", "::1", "10.1.2.3", "172.16.1.2", "192.168.1.2", "100.64.1.2", "192.0.2.10", "2001:db8::10",
)  # fmt: skip

# sshd -T keyword -> the values it must print for the agent (in order).
EXPECTED: Final[Mapping[str, tuple[str, ...]]] = {
    # keys only from the root-owned file, nowhere else
    "authorizedkeysfile": ("/etc/ssh/authorized_keys/%u",),
    "authorizedkeyscommand": ("none",),
    "trustedusercakeys": ("none",),
    "authorizedprincipalsfile": ("none",),
    "authorizedprincipalscommand": ("none",),
    "authenticationmethods": ("publickey",),
    "pubkeyauthentication": ("yes",),
    "passwordauthentication": ("no",),
    "kbdinteractiveauthentication": ("no",),
    "hostbasedauthentication": ("no",),
    "gssapiauthentication": ("no",),
    "strictmodes": ("yes",),
    # no tunnel of any kind
    "disableforwarding": ("yes",),
    "allowtcpforwarding": ("no",),
    "allowstreamlocalforwarding": ("no",),
    "allowagentforwarding": ("no",),
    "x11forwarding": ("no",),
    "permittunnel": ("no",),
    "gatewayports": ("no",),
    "permitopen": ("none",),
    "permitlisten": ("none",),
    # nothing from the home or the client on the login path
    "permittty": ("no",),
    "permituserrc": ("no",),
    "permituserenvironment": ("no",),
    "acceptenv": ("GATEKEEPER_NO_CLIENT_ENV",),
    "setenv": ("LANG=C.UTF-8", "LC_ALL=C.UTF-8", "GATEKEEPER_NO_CLIENT_ENV=none"),
    "chrootdirectory": ("none",),
    "exposeauthinfo": ("yes",),
    "maxsessions": ("4",),
    "clientaliveinterval": ("30",),
    "clientalivecountmax": ("3",),
    # idle streams end (OpenSSH 9.2+)
    "channeltimeout": ("session=30m",),
    "unusedconnectiontimeout": ("300",),
}
# The one setting with a variable part: the entry (`python3 -I -m gatekeeper`,
# the `gatekeeper install-entry` script or its resident client), the policy path and profile name, with
# `exec ` before it (the drop-in's: the login shell becomes gatekeeper) or without
# (drop-ins written before `exec` was added there).
FORCECOMMAND: Final = re.compile(
    r"(?:exec )?/opt/gatekeeper/bin/(?:python3 -I -m gatekeeper|gatekeeper-ssh|gatekeeper-ssh-resident)"
    r" --policy /[A-Za-z0-9._+/-]+(?: --name [A-Za-z0-9_.:/@-]+)?"
)


class SshdError(GatekeeperError):
    """sshd could not print its settings (syntax error, missing host keys, ...)."""


def main(argv: list[str]) -> int:
    options = parse_args(argv)
    addresses = options.addr or DEFAULT_ADDRESSES
    try:
        problems = [
            f"user={options.user} addr={address}: {problem}"
            for address in addresses
            for problem in differences(effective_settings(options, address))
        ]
    except SshdError as error:
        sys.stderr.write(f"gatekeeper sshd-check: {error}\n")
        return EX_SSHD
    for problem in problems:
        sys.stderr.write(f"gatekeeper sshd-check: {problem}\n")
    if problems:
        sys.stderr.write(
            "gatekeeper sshd-check: FAILED: another sshd_config file weakens the agent's settings; "
            "fix or remove it (sshd -T -C user=...,addr=... shows what applies)\n"
        )
        return EX_MISMATCH
    checked = f"{len(EXPECTED) + 1} settings for {options.user} from {len(addresses)} addresses"
    sys.stdout.write(f"sshd-check: ok: {checked}\n")
    return 0


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="gatekeeper sshd-check",
        description="Fail unless sshd -T gives the agent account exactly the drop-in's settings.",
        epilog="examples:\n  gatekeeper sshd-check\n  gatekeeper sshd-check --config /etc/ssh/sshd_config "
        "--addr 10.0.0.5\n",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", default=DEFAULT_CONFIG, help=f"main sshd_config ({DEFAULT_CONFIG})")
    parser.add_argument("--user", default=DEFAULT_USER, help=f"the agent account ({DEFAULT_USER})")
    parser.add_argument("--addr", action="append", help="client address to check (repeatable; a sample)")
    parser.add_argument("--sshd", default=SSHD, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def effective_settings(options: argparse.Namespace, address: str) -> dict[str, list[str]]:
    """`sshd -T` for one connection: keyword -> every value it printed, in order."""
    sshd, config = options.sshd, options.config
    host = "localhost" if address == "127.0.0.1" else address
    spec = f"user={options.user},addr={address},host={host},laddr=127.0.0.1,lport=22"
    try:
        result = subprocess.run([sshd, "-T", "-f", config, "-C", spec], capture_output=True, text=True,
                                timeout=30, check=False)  # fmt: skip
    except OSError as error:
        raise SshdError(f"cannot run {sshd}: {error.strerror}") from error
    if result.returncode != 0:
        raise SshdError(f"{sshd} -T -f {config} -C {spec} failed: {result.stderr.strip()}")
    settings: dict[str, list[str]] = {}
    for line in result.stdout.splitlines():
        keyword, _, value = line.partition(" ")
        settings.setdefault(keyword, []).append(value)
    return settings


def differences(settings: Mapping[str, Sequence[str]]) -> list[str]:
    """One line per setting that is not what the drop-in means."""
    problems = [
        f"{keyword} is {' '.join(settings.get(keyword, ['(unset)']))!r}, expected {' '.join(expected)!r}"
        for keyword, expected in EXPECTED.items()
        if tuple(settings.get(keyword, ())) != expected
    ]
    forced = settings.get("forcecommand", [])
    if len(forced) != 1 or not FORCECOMMAND.fullmatch(forced[0]):
        problems.append(f"forcecommand is {' '.join(forced) or '(unset)'!r}, expected gatekeeper's")
    return problems
