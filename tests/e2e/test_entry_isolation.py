"""The ForceCommand's entry script runs isolated through the real sshd.

Attack: sshd hands the forced command an environment and a cwd (the agent's
home); if Python honoured PYTHONPATH, PYTHONSTARTUP or the user site there, a
`sitecustomize.py` or a `gatekeeper/` package the agent wrote through a
container would run instead of gatekeeper, as the agent, outside every check.
sshd already refuses the client's variables (AcceptEnv): here that layer is
switched off on purpose (`AcceptEnv PYTHON*` in a second sshd on the same
drop-in) so the interpreter's own isolation is what is tested.

Control: the same entry script with `-IS` taken off its interpreter line runs the
planted code; /opt/gatekeeper/bin/gatekeeper-ssh, the installed ForceCommand,
runs none of it and answers the command.

Not three ways (tests/e2e/conftest.py THREE_WAY): the attack is on the start of the CLI
layer's ForceCommand, the same program in layouts (a) and (c); layout (b) replaces it with
one that vets nothing and assumes a shell as the agent, for which running the agent's code
is no escalation.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from .stack import (
    AGENT,
    RESIDENT_CLIENT,
    SNIPPET,
    VENV,
    Stack,
    force,
    free_port,
    start_sshd,
    write_file,
)

pytestmark = pytest.mark.e2e

ENTRY = VENV / "bin" / "gatekeeper-ssh"
# The shipped drop-in forces the resident client; the entry script is its fallback.
FORCECOMMAND = f"ForceCommand exec {RESIDENT_CLIENT} --policy /etc/gatekeeper/policy.toml"
PAYLOAD = "open({marker!r}, 'a').write({where!r} + '\\n')\n"
SITE = f"python{sys.version_info[0]}.{sys.version_info[1]}"
# where (relative to the home) -> what an unisolated python would run from there
PLANTED = {
    "pp/sitecustomize.py": "pythonpath-site",
    "pp/gatekeeper/__init__.py": "pythonpath-package",
    "startup.py": "startup",
    f".local/lib/{SITE}/site-packages/usercustomize.py": "user-site",
    "gatekeeper/__init__.py": "cwd-package",
    "sitecustomize.py": "cwd-site",
}
CLIENT_ENV = {
    "PYTHONPATH": "/home/ai-worker/pp",
    "PYTHONSTARTUP": "/home/ai-worker/startup.py",
    "PYTHONINSPECT": "1",
    "PYTHONUSERBASE": "/home/ai-worker/.local",
}


def test_the_shipped_drop_in_runs_the_resident_client_and_the_entry_script_is_isolated(stack: Stack) -> None:
    assert FORCECOMMAND in SNIPPET.read_text()
    assert ENTRY.read_text().startswith(f"#!{VENV}/bin/python3 -IS\n")


def plant(home: Path, marker: Path) -> None:
    for relative, where in PLANTED.items():
        path = home / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(PAYLOAD.format(marker=str(marker), where=where))
        for part in [path, *path.parents]:
            if part == home:
                break
            shutil.chown(part, AGENT, AGENT)


def leaky_snippet(target: Path, entry: Path) -> Path:
    """The shipped drop-in with the client's PYTHON* variables let through and `entry` forced."""
    text = SNIPPET.read_text()
    old = "AcceptEnv GATEKEEPER_NO_CLIENT_ENV"
    assert old in text, old
    target.write_text(text.replace(old, "AcceptEnv PYTHON*"))
    force(target, entry)
    return target


@pytest.fixture
def leaky_sshd(stack: Stack) -> Iterator[tuple[Path, int]]:
    """An sshd on the drop-in minus AcceptEnv's protection, forcing a replaceable entry script."""
    control = stack.workdir / "gatekeeper-ssh-without-I"
    first, rest = ENTRY.read_text().split("\n", 1)
    write_file(control, first.removesuffix(" -IS") + "\n" + rest, mode=0o755)
    entry = stack.workdir / "entry"  # a link the test points at the control, then at the real script
    port = free_port()
    snippet = leaky_snippet(stack.workdir / "leaky.conf", entry)
    entry.symlink_to(control)
    daemon = start_sshd("sshd-leaky", stack.workdir, port, snippet, stack.workdir / "host_ed25519")
    try:
        yield entry, port
    finally:
        daemon.stop()
        entry.unlink(missing_ok=True)


def ssh_with_python_env(stack: Stack, port: int) -> tuple[int, bytes]:
    options = [option for name, value in CLIENT_ENV.items() for option in ("-o", f"SetEnv={name}={value}")]
    done = stack.ssh("docker ps", options=options, port=port)
    return done.returncode, done.stdout + done.stderr


def test_entry_script_ignores_planted_code_and_python_variables(
    stack: Stack, restored_home: Path, markers: Path, leaky_sshd: tuple[Path, int]
) -> None:
    entry, port = leaky_sshd
    marker = markers / "entry-isolation"
    plant(restored_home, marker)
    # control: the same script without -I, the client's PYTHONPATH reaches it
    ssh_with_python_env(stack, port)
    ran = set(marker.read_text().split()) if marker.exists() else set()
    assert {"pythonpath-site", "pythonpath-package"} <= ran, f"control: planted code should run, ran {ran}"
    marker.unlink()
    # the defence: the installed entry script
    entry.unlink()
    entry.symlink_to(ENTRY)
    status, output = ssh_with_python_env(stack, port)
    assert not marker.exists(), marker.read_text()
    assert status == 0, output[-400:]
    # the stack's own sshd (the shipped drop-in, AcceptEnv closed) with the same plants
    status, output = ssh_with_python_env(stack, stack.forcecommand_port)
    assert not marker.exists(), marker.read_text()
    assert status == 0, output[-400:]
