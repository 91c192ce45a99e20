"""The proxy's systemd unit says what the deployment needs, and the test-only
ForceCommand of layout (b) never ships.

The unit: the same interpreter and policy as the ForceCommand line, the socket's
directory made by systemd (root-owned, so nothing else can take its place), a
read-only system but for the audit log, and no capability beyond the two it needs
(a root that keeps CAP_DAC_OVERRIDE could open any file an attacker names).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.e2e.stack import INSTALL_SCRIPT, PROXY_UNIT_SOURCE, REPO_ROOT, UNVETTED_SOURCE


def unit_settings() -> dict[str, list[str]]:
    settings: dict[str, list[str]] = {}
    for line in PROXY_UNIT_SOURCE.read_text().splitlines():
        if line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            settings.setdefault(key, []).append(value)
    return settings


def test_the_unit_runs_the_installed_gatekeeper_on_the_policy() -> None:
    assert unit_settings()["ExecStart"] == [
        "/opt/gatekeeper/bin/python3 -I -m gatekeeper proxy --policy /etc/gatekeeper/policy.toml"
    ]


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("RuntimeDirectory", "gatekeeper"),
        ("RuntimeDirectoryMode", "0755"),
        ("ProtectSystem", "strict"),
        ("ReadWritePaths", "/var/log/gatekeeper"),
        ("ProtectHome", "read-only"),
        ("NoNewPrivileges", "yes"),
        ("PrivateNetwork", "yes"),
        ("RestrictAddressFamilies", "AF_UNIX"),
        ("CapabilityBoundingSet", "CAP_CHOWN CAP_DAC_READ_SEARCH"),
        ("Restart", "on-failure"),
    ],
)
def test_the_unit_is_confined(key: str, value: str) -> None:
    assert unit_settings()[key] == [value]


def test_no_capability_that_opens_any_file() -> None:
    text = PROXY_UNIT_SOURCE.read_text()
    for capability in ("CAP_DAC_OVERRIDE", "CAP_SYS_ADMIN", "CAP_FOWNER", "CAP_LINUX_IMMUTABLE"):
        assert f"{capability}" not in unit_settings()["CapabilityBoundingSet"][0]
    assert "AmbientCapabilities=\n" in text


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_systemd_accepts_the_unit(tmp_path: Path) -> None:
    unit = tmp_path / PROXY_UNIT_SOURCE.name
    unit.write_text(PROXY_UNIT_SOURCE.read_text().replace("/opt/gatekeeper/bin/python3", "/bin/true"))
    result = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True,
                            check=False)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "Unknown key" not in result.stderr and "Unknown lvalue" not in result.stderr, result.stderr


def test_the_unvetted_forcecommand_is_never_installed() -> None:
    """Layout (b)'s ForceCommand vets nothing: it lives in tests/ and nothing that
    deploys gatekeeper names it."""
    assert UNVETTED_SOURCE.parent == REPO_ROOT / "tests" / "e2e"
    deployers = [INSTALL_SCRIPT, *(REPO_ROOT / "sshd_snippets").rglob("*"), REPO_ROOT / "pyproject.toml"]
    for path in deployers:
        if path.is_file():
            assert UNVETTED_SOURCE.stem not in path.read_text(errors="replace"), path
    assert not list((REPO_ROOT / "gatekeeper").rglob(UNVETTED_SOURCE.name))


def test_the_proxy_shares_the_engines_tmp_and_spools_to_its_own_cache() -> None:
    """Bind sources are resolved where the engine mounts them from: no private /tmp (a root
    under /tmp would be judged in another tree); build contexts go to root's 0700 cache."""
    settings = unit_settings()
    assert "PrivateTmp" not in settings
    assert settings["CacheDirectory"] == ["gatekeeper-proxy"]
    assert settings["CacheDirectoryMode"] == ["0700"]
    assert settings["Environment"] == ["TMPDIR=/var/cache/gatekeeper-proxy"]
