"""Every file in sshd_snippets/ is accepted by the real tools and says what we think it says.

A snippet that fails `sshd -t` takes sshd down on reload; one that parses but
sits outside the Match block, or is overridden by Debian's main file (which
turns X11Forwarding on and accepts LANG/LC_*), silently opens what it meant to
close. The NixOS module must carry the same settings as the drop-in.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from .stack import REPO_ROOT, SNIPPET, keyoption_snippet, make_keypair, sshd_config_text

# sshd -t/-T run here without the stack: they need sshd's runtime directory.
pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("sshd_runtime_dir")]

SNIPPETS = REPO_ROOT / "sshd_snippets"
# The entry script: what authorized_keys' command= names (the ForceCommand's fallback).
FORCECOMMAND = "/opt/gatekeeper/bin/gatekeeper-ssh --policy /etc/gatekeeper/policy.toml"
# sshd runs ForceCommand through the login shell: `exec` lets it become gatekeeper (no fork, no
# wait). The drop-in's default is the resident client (install.sh's resident step).
FORCED = "exec /opt/gatekeeper/bin/gatekeeper-ssh-resident --policy /etc/gatekeeper/policy.toml"

# sshd -T keyword (lower case) -> value it must have for the agent account.
AGENT_SETTINGS = {
    "forcecommand": FORCED,
    "authorizedkeysfile": "/etc/ssh/authorized_keys/%u",
    "authenticationmethods": "publickey",
    "passwordauthentication": "no",
    "kbdinteractiveauthentication": "no",
    "hostbasedauthentication": "no",
    "disableforwarding": "yes",
    "allowtcpforwarding": "no",
    "allowstreamlocalforwarding": "no",
    "allowagentforwarding": "no",
    "x11forwarding": "no",
    "permittunnel": "no",
    "gatewayports": "no",
    "permitopen": "none",
    "permitlisten": "none",
    "permittty": "no",
    "permituserrc": "no",
    "permituserenvironment": "no",
    "exposeauthinfo": "yes",
    "maxsessions": "4",
    "clientaliveinterval": "30",
    "clientalivecountmax": "3",
    "channeltimeout": "session=30m",
    "unusedconnectiontimeout": "300",
}


@pytest.fixture(scope="module")
def host_key(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_keypair(tmp_path_factory.mktemp("hostkey") / "host", "snippet check")


def main_config(tmp_path: Path, host_key: Path, snippet: Path) -> Path:
    """Debian's stock main file with our drop-in included first, as on a real host."""
    config = tmp_path / "sshd_config"
    config.write_text(sshd_config_text(2222, host_key, tmp_path / "sshd.pid", snippet))
    return config


def effective(config: Path, user: str) -> dict[str, list[str]]:
    """`sshd -T` for a connection by `user`: keyword -> values."""
    spec = f"user={user},host=client.example,addr=127.0.0.1,laddr=127.0.0.1,lport=2222"
    out = subprocess.run(
        ["/usr/sbin/sshd", "-T", "-f", str(config), "-C", spec], capture_output=True, text=True, check=True
    ).stdout
    settings: dict[str, list[str]] = {}
    for line in out.splitlines():
        keyword, _, value = line.partition(" ")
        settings.setdefault(keyword, []).append(value)
    return settings


@pytest.mark.parametrize("variant", ["forcecommand", "keyoption"])
def test_snippet_passes_sshd_t(tmp_path: Path, host_key: Path, variant: str) -> None:
    snippet = (
        SNIPPET
        if variant == "forcecommand"
        else keyoption_snippet(tmp_path / "variant.conf", tmp_path / "keys")
    )
    config = main_config(tmp_path, host_key, snippet)
    result = subprocess.run(
        ["/usr/sbin/sshd", "-t", "-f", str(config)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(("keyword", "value"), AGENT_SETTINGS.items(), ids=AGENT_SETTINGS.keys())
def test_agent_gets_the_setting(tmp_path: Path, host_key: Path, keyword: str, value: str) -> None:
    settings = effective(main_config(tmp_path, host_key, SNIPPET), "ai-worker")
    assert settings.get(keyword) == [value]


def test_client_locale_is_overridden(tmp_path: Path, host_key: Path) -> None:
    """The Match block's AcceptEnv replaces Debian's LANG LC_*; SetEnv fixes the locale."""
    settings = effective(main_config(tmp_path, host_key, SNIPPET), "ai-worker")
    assert {"LANG=C.UTF-8", "LC_ALL=C.UTF-8"} <= set(settings.get("setenv", []))
    assert settings["acceptenv"] == ["GATEKEEPER_NO_CLIENT_ENV"]


def test_other_users_keep_the_main_files_settings(tmp_path: Path, host_key: Path) -> None:
    """The Match block ends with the included file: operators' own logins are unchanged."""
    settings = effective(main_config(tmp_path, host_key, SNIPPET), "operator")
    assert settings["forcecommand"] == ["none"]
    assert settings["x11forwarding"] == ["yes"]


def test_authorized_keys_example_parses() -> None:
    """ssh-keygen reads authorized_keys syntax, options included."""
    example = SNIPPETS / "authorized_keys.example"
    listing = subprocess.run(
        ["ssh-keygen", "-l", "-f", str(example)], capture_output=True, text=True, check=True
    )
    key_lines = [line for line in example.read_text().splitlines() if line and not line.startswith("#")]
    assert len(listing.stdout.splitlines()) == len(key_lines) >= 1
    for line in key_lines:
        assert line.startswith("restrict,")
        assert f'command="{FORCECOMMAND}' in line


def test_nixos_module_parses() -> None:
    module = SNIPPETS / "nixos" / "gatekeeper.nix"
    result = subprocess.run(
        ["nix-instantiate", "--parse", str(module)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr


def match_keywords(text: str) -> set[str]:
    """Keywords set inside the `Match User ...` block of an sshd_config text."""
    block = text.split("Match User", 1)[1]
    lines = [line.strip() for line in block.splitlines()[1:]]
    return {line.split()[0].lower() for line in lines if re.match(r"[A-Z][A-Za-z0-9]+ ", line)}


def test_nixos_module_sets_what_the_drop_in_sets() -> None:
    drop_in = match_keywords(SNIPPET.read_text())
    nixos = match_keywords((SNIPPETS / "nixos" / "gatekeeper.nix").read_text())
    assert drop_in == nixos, drop_in ^ nixos
