"""Nothing the agent's account can write weakens the audit log, through rotations.

Attack: code running as the agent's uid rewrites history or adds to it. With the
oldest set-up (root:ai-worker 0620, no attribute) it could truncate the log and
overwrite a recorded `--privileged` in place (`dd conv=notrunc`), and every rotated
copy kept the agent's group write; with the append-only one before the proxy
(root:ai-worker 0620, `chattr +a`) it could still append lines of its choosing, or
fill the disk. Now the proxy writes the log ([audit] via_proxy; the ForceCommand hands
its records over, stamped as the agent's, tests/e2e/test_audit_writer.py): install.sh's
audit-log step makes it root:root 0600 and `chattr +a` (with the directory closed
meanwhile), so the agent's account cannot open it at all, and logrotate's scripts keep
the live log as it was: rotated copies root:root 0600, the newest still +a. Each test
first shows an old set-up losing (the control). The operations run as the agent's uid
through setpriv.

Not three ways (tests/e2e/conftest.py THREE_WAY): the proxy writes the log in every layout
(the stack's policy has [audit] via_proxy in all three), so the layout changes nothing about
who may write it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from .stack import AGENT, AS_AGENT, REPO_ROOT, Stack

pytestmark = pytest.mark.e2e

INSTALL = REPO_ROOT / "sshd_snippets" / "install.sh"
LOGROTATE = REPO_ROOT / "sshd_snippets" / "logrotate-gatekeeper"
SCRATCH = Path("/var/log/gk-e2e-append")  # same file system as /var/log/gatekeeper
RECORD = b'{"event":"decision","cmd":"docker run --privileged x"}\n'

# What the agent's uid tries; each must fail on an append-only log.
TAMPERING = {
    "truncate": ["truncate", "-s", "0", "{log}"],
    "overwrite in place": ["dd", "if=/dev/zero", "of={log}", "bs=1", "count=8", "conv=notrunc"],
    "ftruncate an O_APPEND descriptor": [
        "/usr/bin/python3", "-c", "import os; os.ftruncate(os.open('{log}', os.O_WRONLY | os.O_APPEND), 0)",
    ],
    "clear O_APPEND, then pwrite": [
        "/usr/bin/python3", "-c",
        "import os, fcntl; fd = os.open('{log}', os.O_WRONLY | os.O_APPEND); "
        "fcntl.fcntl(fd, fcntl.F_SETFL, 0); os.pwrite(fd, b'X', 0)",
    ],
    "rename": ["mv", "{log}", "{log}.gone"],
    "unlink": ["rm", "-f", "{log}"],
}  # fmt: skip
APPEND = ["sh", "-c", "printf 'appended\\n' >> {log}"]


def as_agent(argv: list[str], log: Path) -> subprocess.CompletedProcess[bytes]:
    command = [part.replace("{log}", str(log)) for part in argv]
    return subprocess.run([*AS_AGENT, *command], capture_output=True, timeout=30, check=False)


def install_step(step: str, log_dir: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "GATEKEEPER_LOG_DIR": str(log_dir), **env}
    return subprocess.run(["sh", str(INSTALL), step], capture_output=True, text=True, env=environment,
                          timeout=60, check=False)  # fmt: skip


def unlock(directory: Path) -> None:
    if directory.exists():
        subprocess.run(["chattr", "-R", "-a", str(directory)], capture_output=True, check=False)
        shutil.rmtree(directory)


@pytest.fixture
def scratch(stack: Stack) -> Iterator[Path]:
    """An empty root-owned 0755 directory on /var/log's file system, removed afterwards."""
    unlock(SCRATCH)
    SCRATCH.mkdir(mode=0o755)
    yield SCRATCH
    unlock(SCRATCH)


def old_style_log(directory: Path) -> Path:
    """The set-up before issue 19: root:ai-worker 0620, no attribute."""
    log = directory / "old.jsonl"
    log.write_bytes(RECORD)
    shutil.chown(log, "root", AGENT)
    log.chmod(0o620)
    return log


def append(path: Path, data: bytes) -> None:
    with path.open("ab") as log:
        log.write(data)


def lsattr(path: Path) -> str:
    out = subprocess.run(["lsattr", "-d", str(path)], capture_output=True, text=True, check=True).stdout
    return out.split()[0]


def status(path: Path) -> str:
    return subprocess.run(["stat", "-c", "%U:%G %a", str(path)], capture_output=True, text=True,
                          check=True).stdout.strip()  # fmt: skip


@pytest.mark.parametrize("attempt", TAMPERING.values(), ids=TAMPERING.keys())
def test_agent_cannot_rewrite_the_log(scratch: Path, attempt: list[str]) -> None:
    old = old_style_log(scratch)
    installed = install_step("audit-log", scratch)
    assert installed.returncode == 0, installed.stderr
    live = scratch / "audit.jsonl"
    append(live, RECORD)  # O_APPEND, like the proxy (even root may not truncate now)
    # Control: the old set-up loses the bytes to the same attempt (rename and
    # unlink already failed there: the directory is root's).
    before_old = as_agent(attempt, old)
    if attempt[0] not in ("mv", "rm"):
        assert before_old.returncode == 0, before_old.stderr
        assert old.read_bytes() != RECORD
    # Now: refused, the record intact; the writer (root, the proxy) still appends.
    assert as_agent(attempt, live).returncode != 0
    assert live.read_bytes() == RECORD
    append(live, b"appended\n")
    assert live.read_bytes() == RECORD + b"appended\n"
    assert "a" in lsattr(live) and status(live) == "root:root 600"


# What the agent's uid adds; the append-only log before the proxy took every one.
ADDITIONS = {
    "append": APPEND,
    "forge a record": ["sh", "-c", """printf '{"event":"decision","cmd":"docker ps"}\\n' >> {log}"""],
    "fill": ["sh", "-c", "head -c 1048576 /dev/zero >> {log}"],
}


@pytest.mark.parametrize("attempt", ADDITIONS.values(), ids=ADDITIONS.keys())
def test_agent_cannot_add_to_the_log(scratch: Path, attempt: list[str]) -> None:
    """Control: the append-only log before the proxy (root:ai-worker 0620, +a) takes what
    the agent's account appends; the proxy's (root:root 0600, +a) takes nothing from it."""
    old = old_style_log(scratch)
    subprocess.run(["chattr", "+a", str(old)], check=True)
    assert as_agent(attempt, old).returncode == 0
    assert old.stat().st_size > len(RECORD)
    installed = install_step("audit-log", scratch)
    assert installed.returncode == 0, installed.stderr
    live = scratch / "audit.jsonl"
    append(live, RECORD)
    refused = as_agent(attempt, live)
    assert refused.returncode != 0 and b"Permission denied" in refused.stderr
    assert live.read_bytes() == RECORD


def test_install_step_fails_loudly_without_append_only_support(scratch: Path, tmp_path: Path) -> None:
    """A file system (or kernel) that refuses chattr +a stops the install step."""
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "chattr").write_text("#!/bin/sh\necho 'chattr: Operation not supported' >&2\nexit 1\n")
    (fake / "chattr").chmod(0o755)
    refused = install_step("audit-log", scratch, PATH=f"{fake}:{os.environ['PATH']}")
    assert refused.returncode == 1
    assert "must be on a file system with append-only files" in refused.stderr
    assert status(scratch) == "root:root 755", "the directory is reopened"


def logrotate_config(directory: Path, text: str) -> Path:
    config = directory.parent / f"{directory.name}.logrotate"
    config.write_text(text.replace("/var/log/gatekeeper", str(directory)))
    config.chmod(0o644)
    return config


def logrotate(config: Path) -> subprocess.CompletedProcess[str]:
    state = config.with_suffix(".state")
    return subprocess.run(["logrotate", "-f", "-s", str(state), str(config)], capture_output=True, text=True,
                          timeout=60, check=False)  # fmt: skip


OLD_LOGROTATE = """\
/var/log/gatekeeper/audit.jsonl {
    weekly
    rotate 52
    compress
    delaycompress
    missingok
    notifempty
    create 0620 root ai-worker
}
"""


@pytest.fixture
def rotation_dirs(stack: Stack) -> Iterator[tuple[Path, Path]]:
    dirs = (Path("/var/log/gk-e2e-rotate-old"), Path("/var/log/gk-e2e-rotate"))
    for directory in dirs:
        unlock(directory)
        directory.mkdir(mode=0o755)
    yield dirs
    for directory in dirs:
        unlock(directory)
        Path(f"{directory}.logrotate").unlink(missing_ok=True)
        Path(f"{directory}.state").unlink(missing_ok=True)


def test_logrotate_keeps_the_log_append_only(rotation_dirs: tuple[Path, Path]) -> None:
    old_dir, new_dir = rotation_dirs
    # Control 1: the old snippet leaves the rotated copy writable by the agent.
    old_live = old_dir / "audit.jsonl"
    old_live.write_bytes(RECORD)
    shutil.chown(old_live, "root", AGENT)
    old_live.chmod(0o620)
    assert logrotate(logrotate_config(old_dir, OLD_LOGROTATE)).returncode == 0
    assert status(old_dir / "audit.jsonl.1") == f"root:{AGENT} 620"
    assert as_agent(TAMPERING["truncate"], old_dir / "audit.jsonl.1").returncode == 0
    # Control 2: the old snippet cannot rotate an append-only log at all.
    installed = install_step("audit-log", new_dir)
    assert installed.returncode == 0, installed.stderr
    append(new_dir / "audit.jsonl", RECORD)
    assert logrotate(logrotate_config(new_dir, OLD_LOGROTATE)).returncode != 0
    assert not (new_dir / "audit.jsonl.1").exists()
    # Now: the shipped snippet, run for real, twice (the second compresses).
    config = logrotate_config(new_dir, LOGROTATE.read_text())
    for rotation in (1, 2):
        rotated = logrotate(config)
        assert rotated.returncode == 0, rotated.stderr
        live = new_dir / "audit.jsonl"
        assert "a" in lsattr(live) and status(live) == "root:root 600", rotation
        newest = new_dir / "audit.jsonl.1"
        assert "a" in lsattr(newest) and status(newest) == "root:root 600"
        assert status(new_dir) == "root:root 755"
        assert as_agent(APPEND, live).returncode != 0
        append(live, RECORD)
    assert status(new_dir / "audit.jsonl.2.gz") == "root:root 600"
    for copy in ("audit.jsonl.1", "audit.jsonl.2.gz"):
        assert as_agent(TAMPERING["truncate"], new_dir / copy).returncode != 0
    assert as_agent(TAMPERING["truncate"], new_dir / "audit.jsonl").returncode != 0


def test_logrotate_keeps_the_layout_without_the_proxy(rotation_dirs: tuple[Path, Path]) -> None:
    """Without [audit] via_proxy the agent's gatekeeper appends: the new live log is made as
    the old one was (root:ai-worker 0620, +a), rotated copies root-only as ever."""
    _, directory = rotation_dirs
    live = directory / "audit.jsonl"
    live.write_bytes(RECORD)
    shutil.chown(live, "root", AGENT)
    live.chmod(0o620)
    subprocess.run(["chattr", "+a", str(live)], check=True)
    rotated = logrotate(logrotate_config(directory, LOGROTATE.read_text()))
    assert rotated.returncode == 0, rotated.stderr
    assert "a" in lsattr(live) and status(live) == f"root:{AGENT} 620"
    assert status(directory / "audit.jsonl.1") == "root:root 600"
    assert as_agent(APPEND, live).returncode == 0
