"""install.sh's unit steps where systemd runs the machine (`proxy`, `resident`): the unit is
installed and checked, then daemon-reload, enable and restart, then the daemon's socket is
waited for and its owner and mode checked; a socket the wrong account can use fails the
step. This machine runs no systemd: each case runs the real script in a private mount
namespace whose /run says systemd runs (/run/systemd/system) and whose `systemctl` is a
stand-in that records its calls and, on restart, makes the socket the case gives it. The
agent's account and the venv's `gatekeeper` are stand-ins in the same namespace, so the case
needs neither the e2e stack's account nor an installed venv.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e.stack import INSTALL_SCRIPT

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None,
                                reason="needs root and unshare (CI runs as root)")

AGENT_UID, AGENT_GID = 4711, 4712
PROXY_SOCKET = "/run/gatekeeper/docker.sock"
RESIDENT_SOCKET = f"/run/gatekeeper-resident/{AGENT_UID}.sock"

FAKE_SYSTEMCTL = f"""#!/bin/sh
echo "$*" >> "$GK_CALLS"
[ "$1" = restart ] && [ -n "$GK_SOCKET" ] || exit 0
exec {sys.executable} -I -c '
import os, socket, sys
path, uid, gid, mode = sys.argv[1], *map(int, sys.argv[2:4]), int(sys.argv[4], 8)
os.makedirs(os.path.dirname(path), 0o755, exist_ok=True)
socket.socket(socket.AF_UNIX).bind(path)
os.chown(path, uid, gid)
os.chmod(path, mode)
' "$GK_SOCKET" $GK_OWNER "$GK_MODE"
"""

# `gatekeeper install-entry --resident` as the venv's: the client it compiles, a stand-in.
FAKE_GATEKEEPER = """#!/bin/sh
printf '#!/bin/sh\\nexit 75\\n' > /opt/gatekeeper/bin/gatekeeper-ssh-resident
chmod 0755 /opt/gatekeeper/bin/gatekeeper-ssh-resident
"""

NAMESPACE = """set -e
mount -t tmpfs none /run
[ -z "$GK_SYSTEMD" ] || mkdir -p /run/systemd/system
mount -t tmpfs none /opt
mkdir -p /opt/gatekeeper/bin
cp "$GK_FAKES/gatekeeper" /opt/gatekeeper/bin/gatekeeper
mount --bind "$GK_FAKES/passwd" /etc/passwd
mount --bind "$GK_FAKES/group" /etc/group
exec sh "$GK_SCRIPT" "$GK_STEP"
"""


@dataclass(frozen=True)
class Case:
    step: str
    socket: str = ""  # made by the stand-in systemctl's restart ("": none)
    owner: tuple[int, int] = (0, AGENT_GID)
    mode: str = "660"
    systemd: bool = True


@dataclass(frozen=True)
class Outcome:
    code: int
    stderr: str
    calls: list[str]
    units: list[str]


def run_step(tmp: Path, case: Case) -> Outcome:
    fakes, bin_dir, units = tmp / "fakes", tmp / "bin", tmp / "units"
    for directory in (fakes, bin_dir):
        directory.mkdir()
    write(bin_dir / "systemctl", FAKE_SYSTEMCTL, 0o755)
    write(bin_dir / "systemd-analyze", "#!/bin/sh\nexit 0\n", 0o755)
    write(fakes / "gatekeeper", FAKE_GATEKEEPER, 0o755)
    write(fakes / "passwd", "root:x:0:0:root:/root:/bin/sh\n"
          f"ai-worker:x:{AGENT_UID}:{AGENT_GID}::/home/ai-worker:/bin/sh\n", 0o644)
    write(fakes / "group", f"root:x:0:\nai-worker:x:{AGENT_GID}:\n", 0o644)
    calls = tmp / "calls"
    calls.touch()
    env = {
        "PATH": f"{bin_dir}:/usr/sbin:/usr/bin:/sbin:/bin", "GK_CALLS": str(calls), "GK_FAKES": str(fakes),
        "GK_SCRIPT": str(INSTALL_SCRIPT), "GK_STEP": case.step, "GK_SOCKET": case.socket,
        "GK_OWNER": f"{case.owner[0]} {case.owner[1]}", "GK_MODE": case.mode,
        "GK_SYSTEMD": "1" if case.systemd else "", "GATEKEEPER_UNIT_DIR": str(units),
    }
    done = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", NAMESPACE],
                          env=env, capture_output=True, text=True, timeout=60, check=False)
    return Outcome(done.returncode, done.stderr, calls.read_text().splitlines(),
                   sorted(path.name for path in units.iterdir()) if units.exists() else [])


def write(path: Path, text: str, mode: int) -> None:
    path.write_text(text)
    path.chmod(mode)


SERVED = ["daemon-reload", "enable --quiet {unit}", "restart {unit}"]


@pytest.mark.parametrize(("case", "unit"), [
    (Case("proxy", PROXY_SOCKET), "gatekeeper-proxy.service"),
    (Case("resident", RESIDENT_SOCKET), "gatekeeper-resident.service"),
])
def test_where_systemd_runs_the_unit_is_enabled_restarted_and_its_socket_checked(
        tmp_path: Path, case: Case, unit: str) -> None:
    outcome = run_step(tmp_path, case)
    assert outcome.code == 0, outcome.stderr
    assert outcome.calls == [call.format(unit=unit) for call in SERVED]
    assert outcome.units == [unit]


@pytest.mark.parametrize(("case", "message"), [
    # Stops: the engine's proxy (or the pool that runs the ForceCommand as root) reachable by
    # accounts other than the agent's, or by none, after an install that said it was done.
    (Case("proxy", PROXY_SOCKET, owner=(0, 0)), "must be root:ai-worker 0660"),
    (Case("proxy", PROXY_SOCKET, mode="666"), "must be root:ai-worker 0660"),
    (Case("proxy", PROXY_SOCKET, owner=(AGENT_UID, AGENT_GID)), "must be root:ai-worker 0660"),
    (Case("resident", RESIDENT_SOCKET, owner=(0, 0)), "must be root:<ai-worker's group> 0660"),
    (Case("resident", RESIDENT_SOCKET, mode="666"), "must be root:<ai-worker's group> 0660"),
])
def test_a_socket_others_could_use_fails_the_step(tmp_path: Path, case: Case, message: str) -> None:
    outcome = run_step(tmp_path, case)
    assert outcome.code != 0 and message in outcome.stderr, outcome


def test_a_socket_that_never_appears_fails_the_step(tmp_path: Path) -> None:
    outcome = run_step(tmp_path, Case("proxy"))
    assert outcome.code != 0 and f"{PROXY_SOCKET} did not appear" in outcome.stderr, outcome


@pytest.mark.parametrize("step", ["proxy", "resident"])
def test_without_systemd_the_unit_is_installed_and_nothing_started(tmp_path: Path, step: str) -> None:
    """Control: the same namespace without /run/systemd/system (a container, the test stack)."""
    outcome = run_step(tmp_path, Case(step, systemd=False))
    assert outcome.code == 0, outcome.stderr
    assert outcome.calls == [] and outcome.units == [f"gatekeeper-{step}.service"]
