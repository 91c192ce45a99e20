"""No per-user service manager, cron or at for the agent; a login reads nothing in the home.

Attack: on Debian 12 `pam_systemd` starts `user@UID.service` at every login,
and that reads ~/.config/systemd/user/ and ~/.config/environment.d/: a file
the agent wrote there (through a container's bind mount) becomes code running
as the agent, outside gatekeeper. install.sh (step no-user-manager, run by the
stack) masks the unit with a link to /dev/null and turns lingering off; step
no-cron-at puts the agent in /etc/cron.deny and /etc/at.deny. This machine has
no systemd as PID 1, so the test checks the mask link, and watches (inotify)
the home's hidden entries while the agent logs in through the real sshd: the
control opens one of them as the agent and sees the watcher fire.

Not three ways (tests/e2e/conftest.py THREE_WAY): the login side (PAM, systemd, cron, at) is
tested, the same in every layout; layout (b) assumes a shell as the agent, so the agent's
own code is no escalation there.
"""

from __future__ import annotations

import ctypes
import os
import pwd
import struct
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from .stack import AGENT, AS_AGENT, Stack

pytestmark = pytest.mark.e2e

IN_OPEN = 0x20
PLANTED = {
    ".config/systemd/user/default.target.wants/evil.service": "[Service]\nExecStart=/bin/touch /tmp/evil\n",
    ".config/environment.d/50-evil.conf": "LD_PRELOAD=/home/ai-worker/evil.so\n",
    ".profile": "touch /tmp/evil\n",
}


@contextmanager
def opened_entries(directories: list[Path]) -> Iterator[list[str]]:
    """Names opened (IN_OPEN) in `directories` while the block runs."""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
    assert fd >= 0
    watches = {libc.inotify_add_watch(fd, str(path).encode(), IN_OPEN): path for path in directories}
    opened: list[str] = []
    try:
        yield opened
        opened += read_events(fd, watches)
    finally:
        os.close(fd)


def read_events(fd: int, watches: dict[int, Path]) -> list[str]:
    names = []
    try:
        data = os.read(fd, 65536)
    except BlockingIOError:
        return names
    offset = 0
    while offset < len(data):
        wd, _mask, _cookie, length = struct.unpack_from("iIII", data, offset)
        name = data[offset + 16 : offset + 16 + length].rstrip(b"\0").decode()
        names.append(str(watches[wd] / name) if name else str(watches[wd]))
        offset += 16 + length
    return names


def test_user_manager_is_masked_and_lingering_off(stack: Stack) -> None:
    unit = Path(f"/etc/systemd/system/user@{pwd.getpwnam(AGENT).pw_uid}.service")
    assert unit.is_symlink() and os.readlink(unit) == "/dev/null"
    assert not Path(f"/var/lib/systemd/linger/{AGENT}").exists()


def test_cron_and_at_refuse_the_agent(stack: Stack) -> None:
    for deny in ("/etc/cron.deny", "/etc/at.deny"):
        assert AGENT in Path(deny).read_text().split()


@pytest.fixture
def planted(restored_home: Path) -> list[Path]:
    for relative, text in PLANTED.items():
        path = restored_home / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    for path in [restored_home / ".config", *restored_home.joinpath(".config").rglob("*")]:
        os.chown(path, pwd.getpwnam(AGENT).pw_uid, pwd.getpwnam(AGENT).pw_gid)
    return sorted({(restored_home / relative).parent for relative in PLANTED})


def test_login_opens_nothing_hidden_in_the_home(stack: Stack, planted: list[Path]) -> None:
    # Control: the watcher sees the agent open a planted file.
    home = planted[0]
    target = home / ".config/environment.d/50-evil.conf"
    with opened_entries(planted) as seen:
        subprocess.run([*AS_AGENT, "cat", str(target)], capture_output=True, check=True)
    assert str(target) in seen
    # Now: a login and an allowed command through the real sshd open none of them.
    with opened_entries(planted) as seen:
        result = stack.ssh("docker ps")
    assert result.returncode == 0, result.stderr
    assert [name for name in seen if name.startswith(f"{home}/.")] == []
