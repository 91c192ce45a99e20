"""`gatekeeper doctor`: a good deployment passes; each broken one fails naming its fix.

Deployments are built below a temporary root (``--root``), so nothing on the machine is touched;
the append-only attribute is read through a replaceable probe. The live checks (engine socket,
sshd -T) run only at / and are covered by the e2e stack (`gatekeeper doctor` passes there).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from gatekeeper.operator import doctor
from gatekeeper.operator.doctor import FAIL, OK, WARN, Deployment

pytestmark = [pytest.mark.skipif(os.geteuid() != 0, reason="the deployment's files must be root-owned"),
              pytest.mark.names_default]  # the embedded default's [names] prefix, as deployed

AGENT = "ai-worker"
AGENT_GID = 4242
STATE = f"home/{AGENT}/.gatekeeper"  # the default [paths] state_dir, below the temporary root
POLICY = """\
[docker]
binary = "/bin/sh"
config_dir = "/etc/gatekeeper/docker"
host = "unix:///run/gatekeeper/docker.sock"
[audit]
path = "/var/log/gatekeeper/audit.jsonl"
via_proxy = true
[paths]
allowed_roots = ["/home/ai-worker"]
"""


def build(root: Path) -> Path:
    """A deployment as sshd_snippets/install.sh leaves it: the agent reaches the engine through
    the proxy only, and only the proxy writes the audit log."""
    for directory, mode in [
        ("etc/gatekeeper/docker", 0o755),
        ("var/log/gatekeeper", 0o755),
        ("etc/ssh/authorized_keys", 0o755),
        ("etc/pam.d", 0o755),
        ("home/ai-worker", 0o755),
        ("bin", 0o755),
        ("etc/systemd/system", 0o755),
    ]:
        (root / directory).mkdir(parents=True, exist_ok=True)
        (root / directory).chmod(mode)
    policy = root / "etc/gatekeeper/policy.toml"
    policy.write_text(POLICY)
    policy.chmod(0o644)
    from gatekeeper.policy import compile_policy

    compile_policy(str(policy))
    log = root / "var/log/gatekeeper/audit.jsonl"
    log.write_text("")
    os.chown(log, 0, 0)
    log.chmod(0o600)
    keys = root / "etc/ssh/authorized_keys" / AGENT
    keys.write_text("")
    keys.chmod(0o644)
    (root / "etc/passwd").write_text(
        f"root:x:0:0::/root:/bin/sh\n{AGENT}:x:4242:{AGENT_GID}::/home/{AGENT}:/bin/sh\n"
    )
    (root / "etc/group").write_text(f"root:x:0:\ndocker:x:999:\n{AGENT}:x:{AGENT_GID}:\n")
    (root / "etc/pam.d/sshd").write_text("session required pam_env.so user_readenv=0\n")
    (root / RESIDENT_UNIT).write_text("[Service]\n")  # install.sh's resident step
    (root / RESIDENT_UNIT).chmod(0o644)
    docker = root / "bin/sh"  # the policy's docker.binary
    docker.write_text("#!/bin/sh\n")
    docker.chmod(0o755)
    os.chown(root / "home" / AGENT, 4242, AGENT_GID)
    (root / "home" / AGENT / ".gatekeeper").mkdir(mode=0o700)
    os.chown(root / "home" / AGENT / ".gatekeeper", 4242, AGENT_GID)
    return root


def diagnose(root: Path, *, append_only: bool | None = True) -> list[doctor.Check]:
    deployment = Deployment(
        str(root), "/etc/gatekeeper/policy.toml", AGENT, lambda _p: append_only, live=False
    )
    return doctor.diagnose(deployment)


def test_a_good_deployment_passes(tmp_path: Path) -> None:
    checks = diagnose(build(tmp_path))
    assert [c.status for c in checks] == [OK] * len(checks), [c.line() for c in checks]
    names = {c.name for c in checks}
    assert {
        "policy",
        "compiled policy",
        "docker config_dir",
        "audit log",
        "authorized keys",
        "agent account",
        "PAM",
        "engine access",
        "docker binary",
        "state dir",
    } <= names


def chmod(relative: str, mode: int) -> Callable[[Path], None]:
    return lambda root: (root / relative).chmod(mode)


def chown(relative: str, uid: int, gid: int) -> Callable[[Path], None]:
    return lambda root: os.chown(root / relative, uid, gid)


def write(relative: str, text: str) -> Callable[[Path], None]:
    return lambda root: (root / relative).write_text(text)


def binary_in_a_writable_directory(root: Path) -> None:
    """bin/sh -> /opt/drop/sh, and /opt/drop is world-writable: anyone can swap the CLI."""
    drop = root / "opt/drop"
    drop.mkdir(parents=True)
    drop.chmod(0o777)
    (root / "bin/sh").rename(drop / "sh")
    (root / "bin/sh").symlink_to("/opt/drop/sh")


def state_dir_symlink(root: Path) -> None:
    state = root / "home" / AGENT / ".gatekeeper"
    state.rmdir()
    state.symlink_to("/tmp")


def state_dir_uncreatable(root: Path) -> None:
    """Missing, and the home is root's: the agent's gatekeeper cannot make it."""
    (root / "home" / AGENT / ".gatekeeper").rmdir()
    os.chown(root / "home" / AGENT, 0, 0)


def remove(relative: str) -> Callable[[Path], None]:
    def step(root: Path) -> None:
        target = root / relative
        shutil.rmtree(target) if target.is_dir() else target.unlink()

    return step


RESIDENT_UNIT = "etc/systemd/system/gatekeeper-resident.service"


# Each row: how the deployment is broken, the check that must FAIL, and words of the fix it names.
BROKEN = [
    (remove("etc/gatekeeper/policy.toml"), "policy", "install.sh policy", "policy-missing"),
    (chmod("etc/gatekeeper/policy.toml", 0o666), "policy", "chmod 0644", "policy-world-writable"),
    (chown("etc/gatekeeper/policy.toml", 1000, 0), "policy", "chown root:root", "policy-not-root"),
    (
        write("etc/gatekeeper/policy.toml", POLICY.replace('["/home/ai-worker"]', '["/"]')),
        "policy",
        "gatekeeper policy check",
        "policy-root-slash",
    ),
    (
        lambda root: (root / "etc/gatekeeper/policy.toml").write_text(POLICY + "# edited\n"),
        "compiled policy",
        "gatekeeper policy compile",
        "compiled-stale",
    ),
    (
        chown("etc/gatekeeper/docker", 1000, 1000),
        "docker config_dir",
        "chown root:root",
        "config-dir-not-root",
    ),
    (remove("etc/gatekeeper/docker"), "docker config_dir", "install -d", "config-dir-missing"),
    (remove("var/log/gatekeeper/audit.jsonl"), "audit log", "install.sh audit-log", "audit-log-missing"),
    (remove("var/log/gatekeeper"), "audit log", "install.sh audit-log", "audit-dir-missing"),
    (chmod("var/log/gatekeeper/audit.jsonl", 0o620), "audit log", "chmod 0600", "audit-log-mode"),
    (chown("var/log/gatekeeper/audit.jsonl", 0, AGENT_GID), "audit log", "chown root:root", "audit-log-gid"),
    (chmod("var/log/gatekeeper", 0o777), "audit log", "chmod 0755 /var/log/gatekeeper", "audit-dir-mode"),
    (remove(f"etc/ssh/authorized_keys/{AGENT}"), "authorized keys", "install.sh keys-dir", "keys-missing"),
    (
        chown(f"etc/ssh/authorized_keys/{AGENT}", 4242, 4242),
        "authorized keys",
        "chown root:root",
        "keys-agent-owned",
    ),
    (chmod("etc/ssh/authorized_keys", 0o777), "authorized keys", "chmod go-w", "keys-dir-writable"),
    (write("etc/passwd", "root:x:0:0::/root:/bin/sh\n"), "agent account", "install.sh account", "no-agent"),
    (
        write("etc/passwd", f"{AGENT}:x:4242:{AGENT_GID}::/home/{AGENT}:/usr/sbin/nologin\n"),
        "agent account",
        "usermod -s /bin/sh",
        "nologin-shell",
    ),
    (
        write("etc/pam.d/sshd", "session required pam_env.so user_readenv=1\n"),
        "PAM",
        "user_readenv=0",
        "pam-user-readenv",
    ),
    (
        write("etc/group", "docker:x:999:\nproxy:x:4343:\n"),
        "engine access",
        "[proxy] group",
        "not-in-the-proxy-sockets-group",
    ),
    (remove("bin/sh"), "docker binary", "apt-get install docker.io", "docker-binary-missing"),
    (chmod("bin/sh", 0o777), "docker binary", "chmod 0755 /bin/sh", "docker-binary-world-writable"),
    (chown("bin/sh", 1000, 0), "docker binary", "chown root:root /bin/sh", "docker-binary-not-root"),
    (chmod("bin", 0o775), "docker binary", "chmod go-w /bin", "docker-binary-dir-group-writable"),
    (binary_in_a_writable_directory, "docker binary", "chmod go-w /opt/drop", "docker-binary-symlink-out"),
    (chmod("bin/sh", 0o644), "docker binary", "docker.binary", "docker-binary-not-executable"),
    (chown(STATE, 1000, 1000), "state dir", "install -d -m 0700", "state-dir-other-owner"),
    (chmod(STATE, 0o777), "state dir", "install -d -m 0700", "state-dir-world-writable"),
    (chmod(STATE, 0o770), "state dir", "install -d -m 0700", "state-dir-group-writable"),
    (state_dir_symlink, "state dir", f"rm -rf /home/{AGENT}/.gatekeeper", "state-dir-symlink"),
    (chmod(RESIDENT_UNIT, 0o666), "resident unit", "install.sh resident", "resident-unit-world-writable"),
    (chown(RESIDENT_UNIT, 1000, 0), "resident unit", "install.sh resident", "resident-unit-not-roots"),
    (state_dir_uncreatable, "state dir", f"install -d -m 0700 -o {AGENT}", "state-dir-uncreatable"),
    (chmod(f"home/{AGENT}", 0o777), "state dir", "[paths] state_dir", "state-dir-parent-world-writable"),
    (chmod("home", 0o777), "state dir", "[paths] state_dir", "state-dir-ancestor-world-writable"),
]


@pytest.mark.parametrize(("breakage", "check", "fix"), [pytest.param(b, c, f, id=i) for b, c, f, i in BROKEN])
def test_each_broken_deployment_fails_naming_the_fix(
    tmp_path: Path, breakage: Callable[[Path], None], check: str, fix: str
) -> None:
    root = build(tmp_path)
    breakage(root)
    failed = [c for c in diagnose(root) if c.status == FAIL]
    assert any(c.name == check and fix in c.fix for c in failed), [c.line() for c in failed]


def test_a_state_dir_not_made_yet_passes_when_the_agent_can_make_it(tmp_path: Path) -> None:
    root = build(tmp_path)
    (root / "home" / AGENT / ".gatekeeper").rmdir()
    state = [c for c in diagnose(root) if c.name == "state dir"]
    assert [c.status for c in state] == [OK] and "makes it 0700" in state[0].detail


def test_a_binary_reached_through_root_owned_links_passes(tmp_path: Path) -> None:
    """Control for docker-binary-symlink-out: the same link into a root-only directory is fine."""
    root = build(tmp_path)
    binary_in_a_writable_directory(root)
    (root / "opt/drop").chmod(0o755)
    binary = [c for c in diagnose(root) if c.name == "docker binary"]
    assert [c.status for c in binary] == [OK] and "via /opt/drop/sh" in binary[0].detail


def test_audit_log_that_is_not_append_only_fails(tmp_path: Path) -> None:
    failed = [c for c in diagnose(build(tmp_path), append_only=False) if c.status == FAIL]
    assert [(c.name, c.fix) for c in failed] == [("audit log", "chattr +a /var/log/gatekeeper/audit.jsonl")]


def test_exit_status_and_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = build(tmp_path)
    (root / "etc/pam.d/sshd").write_text("session required pam_env.so user_readenv=1\n")
    status = doctor.main(["--root", str(root), "--json"])
    report = json.loads(capsys.readouterr().out)
    assert status == 1 and report["ok"] is False
    assert {"name": "PAM", "status": FAIL} in [
        {k: c[k] for k in ("name", "status")} for c in report["checks"]
    ]
    status = doctor.main(["--root", str(root)])
    out = capsys.readouterr().out
    assert (
        status == 1
        and "FAIL  PAM:" in out
        and "fix: sed -i" in out
        and out.endswith("doctor: FAILED: fix the lines marked FAIL\n")
    )


def warnings(root: Path) -> list[doctor.Check]:
    return [c for c in diagnose(root) if c.status == WARN]


def test_agent_in_the_docker_group_is_warned_about(tmp_path: Path) -> None:
    """The engine's socket is root: with the proxy deployed, reaching it directly is a bypass.
    Control: the good deployment above has no warning."""
    root = build(tmp_path)
    assert warnings(root) == []
    (root / "etc/group").write_text(f"root:x:0:\ndocker:x:999:{AGENT}\n{AGENT}:x:{AGENT_GID}:\n")
    [warning] = warnings(root)
    assert warning.name == "engine access" and "gpasswd -d ai-worker docker" in warning.fix


def test_the_engine_socket_itself_decides_when_it_is_there(tmp_path: Path) -> None:
    """A socket the agent can connect to (any way: owner, group, others) is a warning, whatever
    the docker group says; one it cannot is fine."""
    import socket

    root = build(tmp_path)
    engine = root / "var/run/docker.sock"  # [proxy] upstream's default
    engine.parent.mkdir(parents=True)
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(engine))
        os.chown(engine, 0, 999)
        engine.chmod(0o660)
        assert warnings(root) == []
        engine.chmod(0o666)
        assert [c.name for c in warnings(root)] == ["engine access"]
        engine.chmod(0o660)
        os.chown(engine, 0, AGENT_GID)
        assert [c.name for c in warnings(root)] == ["engine access"]


def test_without_the_proxy_the_old_layout_passes_with_warnings(tmp_path: Path) -> None:
    """Before the proxy: the agent's gatekeeper writes the log (root:AGENT 0620) and the agent
    reaches the engine's socket in group docker. It works, and the doctor says what it costs."""
    root = build(tmp_path)
    policy = root / "etc/gatekeeper/policy.toml"
    policy.write_text(POLICY.replace('host = "unix:///run/gatekeeper/docker.sock"\n', "")
                      .replace("via_proxy = true\n", ""))  # fmt: skip
    from gatekeeper.policy import compile_policy

    compile_policy(str(policy))
    log = root / "var/log/gatekeeper/audit.jsonl"
    os.chown(log, 0, AGENT_GID)
    log.chmod(0o620)
    (root / "etc/group").write_text(f"root:x:0:\ndocker:x:999:{AGENT}\n{AGENT}:x:{AGENT_GID}:\n")
    checks = diagnose(root)
    assert [c.status for c in checks if c.status == FAIL] == [], [c.line() for c in checks]
    assert sorted(c.name for c in checks if c.status == WARN) == ["audit log", "engine access"]
    (root / "etc/group").write_text(f"root:x:0:\ndocker:x:999:\n{AGENT}:x:{AGENT_GID}:\n")
    failed = [c for c in diagnose(root) if c.status == FAIL]
    assert [(c.name, "usermod -aG docker" in c.fix) for c in failed] == [("engine access", True)]


def test_names_prefix_off_is_warned_about(tmp_path: Path) -> None:
    """[names] prefix = "" (the name rule off) is a warning; the control: the good deployment
    (the key absent: the default "ai-") says ok."""
    root = build(tmp_path)
    assert [c.status for c in diagnose(root) if c.name == "names"] == [OK]
    policy = root / "etc/gatekeeper/policy.toml"
    policy.write_text(policy.read_text() + '\n[names]\nprefix = ""\n')
    names = [c for c in diagnose(root) if c.name == "names"]
    assert [c.status for c in names] == [WARN] and "the name rule is off" in names[0].detail, names


@pytest.mark.parametrize(("keys", "size", "status", "said"), [
    ("", 10, OK, "has 10 of [audit] max_bytes = 2000000000 bytes"),  # the default ceiling
    ("max_bytes = 1000\nmax_bytes_per_uid = 500", 799, OK, "has 799 of [audit] max_bytes = 1000"),
    ("max_bytes = 1000", 800, WARN, "past it the proxy refuses every request"),
    ("max_bytes = 1000", 1000, FAIL, "the proxy refuses every request (rule audit-full)"),
    ("max_bytes = 1000", 5000, FAIL, "has 5000 bytes"),
    ("max_bytes = 0", 5000, WARN, "no [audit] max_bytes: a flood of requests can fill"),
    ("", 10, OK, "one uid's records may take 500000000 of it"),  # the default share
    ("max_bytes = 1000\nmax_bytes_per_uid = 999", 10, OK, "one uid's records may take 999"),
    ("max_bytes = 1000\nmax_bytes_per_uid = 1000", 10, WARN, "is no share of it: one account's flood"),
    ("max_bytes_per_uid = 0", 10, WARN, "max_bytes_per_uid = 0 is no share of it"),
])  # fmt: skip
def test_the_log_against_its_ceiling(tmp_path: Path, keys: str, size: int, status: str, said: str) -> None:
    """[audit] max_bytes: the proxy refuses every request once the live log reaches it (rule
    audit-full); doctor says how close it is, and names the rotation that makes room."""
    root = build(tmp_path)
    policy = root / "etc/gatekeeper/policy.toml"
    policy.write_text(policy.read_text().replace("via_proxy = true\n", f"via_proxy = true\n{keys}\n"))
    (root / "var/log/gatekeeper/audit.jsonl").write_bytes(b"x" * size)
    room = [c for c in diagnose(root) if c.name == "audit log room"]
    assert [c.status for c in room] == [status] and said in room[0].detail, [c.line() for c in room]
    if status != OK:
        assert "logrotate -f" in room[0].fix or "file system of its own" in room[0].fix


def test_the_entry_scripts_module_bundle_is_checked(tmp_path: Path) -> None:
    """gatekeeper.module_bundle: a stale or untrusted bundle is ignored (every call imports its
    modules one by one), so doctor names it; none at all is a warning. Control: a current one passes."""
    from gatekeeper.module_bundle import write_bundle
    from tests.conftest import REPO

    entry = tmp_path / "gatekeeper-ssh"
    deployment = Deployment(root="/", entry_script=str(entry), live=True)
    assert list(doctor.check_module_bundle(deployment)) == []  # no entry script: nothing reads a bundle
    entry.write_text("#!/bin/sh\n")
    assert [check.status for check in doctor.check_module_bundle(deployment)] == [WARN]
    bundle = tmp_path / "gatekeeper-ssh.bundle"
    write_bundle(str(bundle), str(REPO))
    assert [check.status for check in doctor.check_module_bundle(deployment)] == [OK]
    bundle.chmod(0o666)  # others may write it: ignored
    [check] = doctor.check_module_bundle(deployment)
    assert (check.status, check.fix) == (FAIL, "gatekeeper install-entry")
    assert not list(doctor.check_module_bundle(Deployment(entry_script=str(entry), live=False)))


def test_a_missing_resident_unit_is_warned_about(tmp_path: Path) -> None:
    """The drop-in's default ForceCommand denies every call without the unit's workers;
    the fallback (the entry script forced instead) is the operator's choice: a warning."""
    root = build(tmp_path)
    (root / RESIDENT_UNIT).unlink()
    [check] = [c for c in diagnose(root) if c.name == "resident unit"]
    assert (check.status, "install.sh resident" in check.fix) == (WARN, True), check.line()


def resident_pool(root: Path) -> list[doctor.Check]:
    return list(doctor.check_resident_pool(Deployment(str(root), agent=AGENT)))


def test_the_resident_pools_socket_is_there_and_owned_right(tmp_path: Path) -> None:
    """Without the socket the resident client denies every call: doctor says so. Control: the
    socket as the pool makes it (root:<agent's group> 0660 in root's 0755 directory) passes."""
    import socket

    from gatekeeper.resident import socket_path

    root = build(tmp_path)
    [missing] = resident_pool(root)
    assert (missing.status, "every call is denied" in missing.detail) == (FAIL, True), missing.line()
    path = root / socket_path(4242).lstrip("/")
    path.parent.mkdir(parents=True, mode=0o755)
    with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as listener:
        listener.bind(str(path))
        os.chown(path, 0, AGENT_GID)
        path.chmod(0o660)
        assert [c.status for c in resident_pool(root)] == [OK]
        path.chmod(0o666)  # anyone could ask to be served (the worker checks the uid: still wrong)
        assert [c.status for c in resident_pool(root)] == [FAIL]
        path.chmod(0o660)
        path.parent.chmod(0o777)  # anyone could put a listener of their own there
        assert [c.status for c in resident_pool(root)] == [FAIL]


def test_a_missing_resident_unit_fails_only_when_sshd_forces_its_client() -> None:
    """No unit: every call is denied if sshd forces the resident client (FAIL); forcing the entry
    script, the fallback, needs none (skip); not knowing what sshd forces, a warning."""
    client = "/opt/gatekeeper/bin/gatekeeper-ssh-resident"
    assert doctor.missing_resident_unit(client, client).status == FAIL
    assert doctor.missing_resident_unit("/opt/gatekeeper/bin/gatekeeper-ssh", client).status == doctor.SKIP
    assert doctor.missing_resident_unit(None, client).status == WARN
