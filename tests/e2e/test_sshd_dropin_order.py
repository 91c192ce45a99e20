"""The drop-in sorts first and `gatekeeper sshd-check` fails loudly when a neighbour still wins.

Attack: another file in sshd_config.d (cloud images and config management ship
them) read before ours. sshd keeps the first value it reads, so the old name
`gatekeeper.conf`, sorting after every `NN-*.conf`, lost to a `10-site.conf`
with a `Match Address 127.0.0.0/8` block (pty, keys from ~/.ssh, passwords,
any client variable) and to its global `PermitUserEnvironment yes`,
`AuthorizedKeysCommand`, `TrustedUserCAKeys`. Now `00-gatekeeper.conf` wins
where sshd lets it, and for what it cannot win (AcceptEnv, which every
matching block adds to; a file named to sort even earlier) `sshd-check`
exits 1 naming the setting. Judged by `sshd -T -C user=ai-worker,addr=...`,
the real sshd's own answer; the main file is Debian's stock one.

Not three ways (tests/e2e/conftest.py THREE_WAY): sshd's configuration is tested, the same
in every layout.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from gatekeeper.operator import sshd_check

from .stack import DEBIAN_MAIN_CONFIG, SNIPPET, make_keypair

# sshd -t/-T run here without the stack: they need sshd's runtime directory.
pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("sshd_runtime_dir")]

CONNECTION = "user=ai-worker,addr=127.0.0.1,host=localhost,laddr=127.0.0.1,lport=22"
# The lines issue 19 added to the drop-in: without them it is the old snippet.
NEW_LINES = ("AuthorizedKeysCommand none", "TrustedUserCAKeys none", "AuthorizedPrincipalsFile none",
             "AuthorizedPrincipalsCommand none", "AcceptEnv GATEKEEPER_NO_CLIENT_ENV")  # fmt: skip

SITE_MATCH = """\
Match Address 127.0.0.0/8
\tPermitTTY yes
\tAuthorizedKeysFile .ssh/authorized_keys
\tPasswordAuthentication yes
"""
SITE_GLOBALS = """\
PermitUserEnvironment yes
AuthorizedKeysCommand /usr/bin/true
AuthorizedKeysCommandUser nobody
TrustedUserCAKeys /etc/ssh/ca.pub
"""
WEAKER = {
    "permittty": "yes",
    "authorizedkeysfile": ".ssh/authorized_keys",
    "passwordauthentication": "yes",
    "permituserenvironment": "yes",
    "authorizedkeyscommand": "/usr/bin/true",
    "trustedusercakeys": "/etc/ssh/ca.pub",
}


def old_snippet() -> str:
    return "".join(line for line in SNIPPET.read_text().splitlines(keepends=True)
                   if line.strip() not in NEW_LINES)  # fmt: skip


def debian_host(tmp_path: Path, files: dict[str, str]) -> Path:
    """A main sshd_config as Debian ships it (Include of the drop-in glob first)."""
    drop_ins = tmp_path / "sshd_config.d"
    drop_ins.mkdir(parents=True)
    for name, text in files.items():
        (drop_ins / name).write_text(text)
    host_key = make_keypair(tmp_path / "host_ed25519", "drop-in order")
    config = tmp_path / "sshd_config"
    config.write_text(f"HostKey {host_key}\nInclude {drop_ins}/*.conf\n{DEBIAN_MAIN_CONFIG}")
    return config


def agent_settings(config: Path) -> dict[str, str]:
    out = subprocess.run(["/usr/sbin/sshd", "-T", "-f", str(config), "-C", CONNECTION],
                         capture_output=True, text=True, check=True).stdout  # fmt: skip
    settings: dict[str, str] = {}
    for line in out.splitlines():
        keyword, _, value = line.partition(" ")
        settings[keyword] = f"{settings[keyword]} {value}" if keyword in settings else value
    return settings


def check(config: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = sshd_check.main(["--config", str(config)])
    return code, capsys.readouterr().err


def test_stock_debian_with_our_drop_in_passes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = debian_host(tmp_path, {"00-gatekeeper.conf": SNIPPET.read_text()})
    assert check(config, capsys) == (0, "")


def test_neighbour_before_the_old_name_wins(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Control: the old file name and content lose every setting to 10-site.conf."""
    files = {"10-site.conf": SITE_GLOBALS + SITE_MATCH, "gatekeeper.conf": old_snippet()}
    config = debian_host(tmp_path, files)
    settings = agent_settings(config)
    assert {keyword: settings[keyword] for keyword in WEAKER} == WEAKER
    code, err = check(config, capsys)
    assert code == 1
    assert all(f"{keyword} is" in err for keyword in WEAKER)


def test_our_drop_in_wins_over_the_same_neighbour(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = debian_host(tmp_path, {"10-site.conf": SITE_GLOBALS + SITE_MATCH,
                                    "00-gatekeeper.conf": SNIPPET.read_text()})  # fmt: skip
    settings = agent_settings(config)
    assert {keyword: settings[keyword] for keyword in WEAKER} == {
        "permittty": "no", "authorizedkeysfile": "/etc/ssh/authorized_keys/%u",
        "passwordauthentication": "no", "permituserenvironment": "no",
        "authorizedkeyscommand": "none", "trustedusercakeys": "none",
    }  # fmt: skip
    assert check(config, capsys) == (0, "")


def test_a_later_acceptenv_still_adds_and_the_check_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """AcceptEnv appends across matching blocks: `*` would pass LD_PRELOAD to the agent's shell."""
    config = debian_host(tmp_path, {"10-site.conf": SITE_MATCH + "\tAcceptEnv *\n",
                                    "00-gatekeeper.conf": SNIPPET.read_text()})  # fmt: skip
    assert agent_settings(config)["acceptenv"] == "GATEKEEPER_NO_CLIENT_ENV *"
    code, err = check(config, capsys)
    assert code == 1 and "acceptenv is 'GATEKEEPER_NO_CLIENT_ENV *'" in err


def test_our_acceptenv_replaces_debians(tmp_path: Path) -> None:
    """The old comment said a Match block cannot clear AcceptEnv; it replaces the global list."""
    old = agent_settings(debian_host(tmp_path / "old", {"gatekeeper.conf": old_snippet()}))
    assert old["acceptenv"] == "LANG LC_*"
    new = agent_settings(debian_host(tmp_path / "new", {"00-gatekeeper.conf": SNIPPET.read_text()}))
    assert new["acceptenv"] == "GATEKEEPER_NO_CLIENT_ENV"


@pytest.mark.parametrize("name", ["0-site.conf", "-site.conf", "000-site.conf"])
def test_a_file_sorting_before_ours_is_caught(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str
) -> None:
    files = {name: "PermitUserEnvironment yes\n", "00-gatekeeper.conf": SNIPPET.read_text()}
    config = debian_host(tmp_path, files)
    settings = agent_settings(config)
    if name == "000-site.conf":  # "00-" < "000": ours is read first and wins
        assert settings["permituserenvironment"] == "no"
        assert check(config, capsys) == (0, "")
    else:
        assert settings["permituserenvironment"] == "yes"
        code, err = check(config, capsys)
        assert code == 1 and "permituserenvironment is 'yes'" in err


def test_a_match_for_another_address_is_checked(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A neighbour's block for the office network, read before ours, is caught from 10.1.2.3."""
    config = debian_host(tmp_path, {"0-office.conf": "Match Address 10.0.0.0/8\n\tPermitTTY yes\n",
                                    "00-gatekeeper.conf": SNIPPET.read_text()})  # fmt: skip
    code, err = check(config, capsys)
    assert code == 1 and "addr=10.1.2.3: permittty is 'yes'" in err and "addr=127.0.0.1" not in err


def test_a_broken_config_is_an_error_not_a_pass(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = debian_host(tmp_path, {"00-gatekeeper.conf": SNIPPET.read_text() + "NoSuchKeyword yes\n"})
    code, err = check(config, capsys)
    assert code == 2 and "failed" in err


@pytest.mark.parametrize(
    ("forcecommand", "accepted"),
    [
        ("/opt/gatekeeper/bin/python3 -I -m gatekeeper --policy /etc/gatekeeper/policy.toml", True),
        ("/opt/gatekeeper/bin/gatekeeper-ssh --policy /etc/gatekeeper/policy.toml --name ci", True),
        ("exec /opt/gatekeeper/bin/gatekeeper-ssh --policy /etc/gatekeeper/policy.toml", True),
        ("exec /opt/gatekeeper/bin/python3 -I -m gatekeeper --policy /etc/gatekeeper/policy.toml", True),
        ("exec  /opt/gatekeeper/bin/gatekeeper-ssh --policy /etc/gatekeeper/policy.toml", False),
        ("exec /opt/gatekeeper/bin/gatekeeper-ssh --policy /etc/gatekeeper/policy.toml; /bin/sh", False),
        ("exec exec /opt/gatekeeper/bin/gatekeeper-ssh --policy /etc/gatekeeper/policy.toml", False),
        ("/usr/bin/env exec /opt/gatekeeper/bin/gatekeeper-ssh --policy /etc/gatekeeper/policy.toml", False),
        ("/opt/gatekeeper/bin/python3 -m gatekeeper --policy /etc/gatekeeper/policy.toml", False),
        ("/bin/sh -c 'exec /opt/gatekeeper/bin/gatekeeper-ssh --policy /etc/gatekeeper/policy.toml'", False),
        ("internal-sftp", False),
    ],
)
def test_forcecommand_must_be_gatekeepers(forcecommand: str, accepted: bool) -> None:
    settings = {keyword: list(values) for keyword, values in sshd_check.EXPECTED.items()}
    settings["forcecommand"] = [forcecommand]
    assert (sshd_check.differences(settings) == []) == accepted
