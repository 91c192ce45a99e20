"""The resident ForceCommand (gatekeeper/resident.py, the drop-in's default) through sshd and engine.

sshd forces gatekeeper-ssh-resident (a C client), which hands the session's descriptors
to a pre-started worker of `gatekeeper resident`. What must hold, each with its control:

  * the session really is served by the pool (docker's parent is a worker, not the entry
    script), and a dropped connection still leaves no process of the agent;
  * without the pool the client denies with one line (fail closed: it execs nothing itself);
    control: with the pool the same command runs;
  * the session's rlimits reach the worker (a lower one applies to docker too);
  * Attack: a listener at the pool's path that is not root's (the agent's own process)
    would receive the session's descriptors and the command, and could answer any exit
    status. The client checks the listener's credentials: the agent's listener gets
    nothing and the call is denied; control: root's listener there does receive the
    request;
  * Attack: another account connecting to the agent's pool to be served as the agent. The
    worker checks the peer's uid before reading a byte; control: the agent's uid is served.
  * the client killed alone (sshd and the connection still up) stops docker: the worker
    watches its connection to the client; control: a pool with that watch off streams on.

Not three ways (tests/e2e/conftest.py THREE_WAY): the resident mode changes how the CLI
layer's ForceCommand starts, in (a) and (c) alike; `GK_E2E_FORCECOMMAND=resident` runs the
security modules with the stack's drop-in pointing at the client.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gatekeeper.resident import DEFAULT_WORKERS

from .stack import (
    AGENT,
    GATEKEEPER,
    RESIDENT,
    RESIDENT_CLIENT,
    RESIDENT_SOCKET_DIR,
    RUN_DIR,
    SNIPPET,
    SYSTEM_PYTHON,
    VENV,
    Daemon,
    Stack,
    agent_processes,
    audit_offset,
    audit_records_since,
    docker_client,
    free_port,
    read_lines,
    start_resident_pool,
    start_sshd,
    stop_resident_pool,
    use_resident_client,
    wait_for,
)

pytestmark = pytest.mark.e2e

ENTRY = VENV / "bin" / "gatekeeper-ssh"
NOFILE = 777  # the session's RLIMIT_NOFILE in rlimit test (the pool's is higher)

# A listener standing in for the pool: records what it was sent (bytes, descriptors), then
# closes without acknowledging (so the client denies: the call was not taken).
FAKE_POOL = """\
import os, socket, sys
path, record = sys.argv[1], sys.argv[2]
listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
listener.bind(path)
os.chmod(path, 0o666)
listener.listen(1)
print("listening", flush=True)
listener.settimeout(30)
connection, _ = listener.accept()
connection.settimeout(5)
try:
    data, ancillary, _, _ = connection.recvmsg(1 << 17, socket.CMSG_SPACE(12))
except (socket.timeout, OSError):
    data, ancillary = b"", []
fds = sum(len(payload) // 4 for _, _, payload in ancillary)
open(record, "w").write(f"{len(data)} {fds} {b'SSH_ORIGINAL_COMMAND' in data}\\n")
"""

# A connection to the agent's pool with a request of /dev/null's descriptors and no command:
# prints what the pool answered first ("A<pid>": served; "" : closed unserved).
KNOCK = """\
import array, os, socket, sys
connection = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
try:
    connection.connect(sys.argv[1])
except PermissionError:
    print("no access")
    sys.exit(0)
null = os.open("/dev/null", os.O_RDWR)
request = b"gatekeeper-resident 1\\0umask=22\\0arg=--policy\\0arg=/etc/gatekeeper/policy.toml\\0"
connection.settimeout(20)
try:
    fds = array.array("i", [null] * 3).tobytes()
    connection.sendmsg([request], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fds)])
    print(connection.recv(64)[:1].decode(), flush=True)
except OSError:  # closed (reset) with the request unsent or unread
    print("", flush=True)
"""


def pool_socket() -> Path:
    return RESIDENT_SOCKET_DIR / f"{pwd.getpwnam(AGENT).pw_uid}.sock"


POOLS: list[Daemon] = []  # the pool this module started (outside resident mode)


@pytest.fixture(scope="module")
def pool(stack: Stack) -> Iterator[None]:
    """The agent's pool: the stack's own in resident mode, else one started for this module."""
    if RESIDENT:
        yield
        return
    POOLS.append(start_resident_pool())
    try:
        yield
    finally:
        stop_resident_pool(POOLS.pop())


@pytest.fixture(scope="module")
def resident_port(stack: Stack, pool: None) -> Iterator[int]:
    """An sshd on the shipped drop-in with its ForceCommand pointed at the resident client."""
    snippet = stack.workdir / "resident.conf"
    shutil.copyfile(SNIPPET, snippet)
    use_resident_client(snippet)
    port = free_port()
    daemon = start_sshd("sshd-resident", stack.workdir, port, snippet, stack.workdir / "host_ed25519")
    assert daemon.process is not None
    # The session's limits, as PAM's limits.conf would lower them: sshd's children inherit it.
    subprocess.run(["prlimit", f"--pid={daemon.process.pid}", f"--nofile={NOFILE}:{NOFILE}"], check=True)
    try:
        yield port
    finally:
        daemon.stop()


def parent_of(pid: int) -> tuple[int, str]:
    stat = Path(f"/proc/{pid}/stat").read_text()
    ppid = int(stat.rsplit(")", 1)[1].split()[1])
    return ppid, Path(f"/proc/{ppid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")


def docker_pids() -> list[int]:
    """The agent's docker clients (by their executable: their argv[0] is plain `docker`)."""
    return agent_processes_of(docker_client())


def agent_processes_of(executable: Path) -> list[int]:
    """The pids of the agent's processes running `executable`."""
    uid = pwd.getpwnam(AGENT).pw_uid
    client = executable.resolve()
    found = []
    for entry in Path("/proc").iterdir():
        with contextlib.suppress(OSError):
            if entry.name.isdigit() and entry.stat().st_uid == uid and (entry / "exe").resolve() == client:
                found.append(int(entry.name))
    return found


def wait_until_no_agent_processes(timeout: float) -> list[str]:
    deadline = time.monotonic() + timeout
    while (left := agent_processes()) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


@contextlib.contextmanager
def streaming(stack: Stack, port: int, ticker: str) -> Iterator[subprocess.Popen[bytes]]:
    """`docker logs -f` through the sshd on `port`, streaming; the client killed afterwards."""
    assert wait_until_no_agent_processes(10) == [], "agent processes left over from an earlier test"
    client = subprocess.Popen(stack.ssh_argv(f"docker logs -f {ticker}", port=port), stdout=subprocess.PIPE)
    assert client.stdout is not None
    try:
        assert read_lines(client.stdout, count=2, timeout=15), "logs -f did not start streaming"
        yield client
    finally:
        client.kill()
        client.communicate(timeout=10)


def served_by() -> tuple[str, int]:
    """Who runs the agent's docker now: its parent's command line, and docker's pid."""
    (pid,) = docker_pids()
    return parent_of(pid)[1], pid


def test_the_pool_serves_the_session_and_a_drop_leaves_nothing(
        stack: Stack, resident_port: int, ticker: str) -> None:
    with streaming(stack, resident_port, ticker):
        parent, _ = served_by()
        assert "gatekeeper resident" in parent, parent
    assert wait_until_no_agent_processes(5) == []
    # control: the stack's own sshd (the entry script, unless the suite runs resident)
    if not RESIDENT:
        with streaming(stack, stack.gatekeeper_port, ticker):
            parent, _ = served_by()
            assert str(ENTRY) in parent, parent


def test_allowed_and_denied_answers_are_the_entry_scripts(stack: Stack, resident_port: int) -> None:
    command = "docker run --rm gk-busybox sh -c 'echo out; echo err >&2; exit 3'"
    allowed = stack.ssh(command, port=resident_port)
    assert (allowed.returncode, allowed.stdout, allowed.stderr.endswith(b"err\n")) == (3, b"out\n", True)
    denied = stack.ssh("docker exec some-container sh", port=resident_port)
    assert denied.returncode == 77
    assert denied.stderr.startswith(b"gatekeeper: denied:"), denied.stderr


def test_the_sessions_rlimits_reach_docker(stack: Stack, resident_port: int, ticker: str) -> None:
    with streaming(stack, resident_port, ticker):
        _, pid = served_by()
        limits = Path(f"/proc/{pid}/limits").read_text()
    line = next(line for line in limits.splitlines() if line.startswith("Max open files"))
    assert line.split()[3:5] == [str(NOFILE), str(NOFILE)], line
    ours = next(line for line in Path(f"/proc/{os.getpid()}/limits").read_text().splitlines()
                if line.startswith("Max open files"))
    assert ours.split()[3] != str(NOFILE), "control: the pool (started from here) has another limit"


@contextlib.contextmanager
def pool_stopped_for(stack: Stack) -> Iterator[None]:
    """The agent's socket gone (the pool stopped), restored afterwards."""
    path = pool_socket()
    moved = path.with_name("moved.sock")
    os.rename(path, moved)
    try:
        yield
    finally:
        Path(path).unlink(missing_ok=True)
        os.rename(moved, path)


NO_POOL = (b"gatekeeper: denied: the resident pool is not running (gatekeeper-resident.service); "
           b"ask the operator\n")
NOT_TAKEN = b"gatekeeper: denied: the resident pool did not take the call (restarting?); try again\n"


def test_without_the_pool_every_call_is_denied(stack: Stack, resident_port: int) -> None:
    """Fail closed: the client runs nothing itself, so no pool means no docker at all."""
    allowed = stack.ssh("docker ps", port=resident_port)
    assert allowed.returncode == 0, allowed.stderr  # control: the pool serves it
    with pool_stopped_for(stack):
        denied = stack.ssh("docker ps", port=resident_port)
        assert (denied.returncode, denied.stdout) == (75, b""), denied.stderr
        assert denied.stderr.endswith(NO_POOL), denied.stderr
    assert wait_until_no_agent_processes(5) == []


def doctor_on_the_pool(stack: Stack) -> str:
    """`gatekeeper doctor`'s "resident pool" status, sshd's settings read from the resident sshd."""
    argv = [str(GATEKEEPER), "doctor", "--json", "--sshd-config", str(stack.workdir / "sshd-resident.conf")]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    checks = json.loads(done.stdout)["checks"]
    return next(str(check["status"]) for check in checks if check["name"] == "resident pool")


def test_doctor_names_a_stopped_pool(stack: Stack, resident_port: int) -> None:
    """Every call is denied without the pool: doctor FAILs it; control: ok while it runs."""
    assert doctor_on_the_pool(stack) == "ok"
    with pool_stopped_for(stack):
        assert doctor_on_the_pool(stack) == "FAIL"


def fake_pool_answers(stack: Stack, resident_port: int, record: Path, user: str) -> tuple[str, int]:
    """A FAKE_POOL run as `user` at the agent's socket path during one `docker ps`."""
    argv = [SYSTEM_PYTHON, "-I", "-c", FAKE_POOL, str(pool_socket()), str(record)]
    if user != "root":
        argv = as_user(user, argv)
    with subprocess.Popen(argv, stdout=subprocess.PIPE) as fake:
        assert fake.stdout is not None
        assert fake.stdout.readline() == b"listening\n"
        done = stack.ssh("docker ps", port=resident_port)
        fake.wait(timeout=40)
    return record.read_text(), done.returncode


def test_a_listener_not_roots_gets_nothing(stack: Stack, resident_port: int, markers: Path) -> None:
    directory = RESIDENT_SOCKET_DIR
    with pool_stopped_for(stack):
        # control: a listener with root's credentials at the path receives the request
        said, status = fake_pool_answers(stack, resident_port, markers / "root", "root")
        pool_socket().unlink()
        assert said.split() == [said.split()[0], "3", "True"], said
        assert status == 75  # closed unacknowledged: the call was not taken
        # the attack: the agent's own listener there (its directory made the agent's for it)
        os.chown(directory, pwd.getpwnam(AGENT).pw_uid, 0)
        try:
            (markers / "agent").touch()
            os.chown(markers / "agent", pwd.getpwnam(AGENT).pw_uid, 0)
            said, status = fake_pool_answers(stack, resident_port, markers / "agent", AGENT)
        finally:
            os.chown(directory, 0, 0)
            pool_socket().unlink(missing_ok=True)
        assert said.split() == ["0", "0", "False"], said
        assert status == 70  # never trusted, never sent a byte


def as_user(user: str, argv: list[str]) -> list[str]:
    gid = pwd.getpwnam(user).pw_gid
    return ["setpriv", f"--reuid={user}", f"--regid={gid}", "--init-groups", *argv]


def knock(user: str) -> str:
    argv = [SYSTEM_PYTHON, "-I", "-c", KNOCK, str(pool_socket())]
    if user != "root":
        argv = as_user(user, argv)
    return subprocess.run(argv, capture_output=True, text=True, timeout=30, check=True).stdout.strip()


def test_only_the_agents_uid_is_served(stack: Stack, pool: None) -> None:
    assert knock(AGENT) == "A"  # control: the agent's uid is served (no command: usage, exit 77)
    assert knock("root") == ""  # another uid: closed before a byte is read
    assert knock("nobody") == "no access"  # the socket is root:<agent's group> 0660


def test_the_client_is_compiled_and_root_owned(stack: Stack) -> None:
    status = RESIDENT_CLIENT.stat()
    assert (status.st_uid, status.st_mode & 0o7777) == (0, 0o755)


def test_an_upgrade_under_the_pool_sends_calls_to_the_new_code(stack: Stack, resident_port: int) -> None:
    """gatekeeper's sources changed under a running pool (an upgrade without restarting the
    unit): within seconds the pool exits 75 for its unit to restart it, and meanwhile calls
    are denied (never served by the old code); control: served again once it restarted."""
    daemon = pool_daemon(stack)
    assert daemon.alive()
    source = next(VENV.glob("lib/python3*/site-packages/gatekeeper/errors.py"))
    before = source.stat()
    os.utime(source, ns=(before.st_atime_ns, before.st_mtime_ns + 1_000_000_000))
    try:
        assert daemon.process is not None and daemon.process.wait(timeout=20) == 75
        done = stack.ssh("docker ps", port=resident_port)
        assert done.returncode == 75 and done.stderr.endswith((NO_POOL, NOT_TAKEN)), done.stderr
    finally:
        os.utime(source, ns=(before.st_atime_ns, before.st_mtime_ns))
        daemon.start()  # as Restart=on-failure would
        wait_for("the pool again", pool_socket().is_socket, 30, diagnose=daemon.log_tail)
    assert stack.ssh("docker ps", port=resident_port).returncode == 0


def test_long_sessions_never_leave_a_call_waiting(stack: Stack, resident_port: int, ticker: str) -> None:
    """More held sessions (`logs -f`) than the pool keeps idle workers: each accepted session
    is replaced by a fresh idle worker at once, so the next call is served, by the pool."""
    assert wait_until_no_agent_processes(10) == [], "agent processes left over from an earlier test"
    argv = stack.ssh_argv(f"docker logs -f {ticker}", port=resident_port)
    clients = [subprocess.Popen(argv, stdout=subprocess.PIPE) for _ in range(DEFAULT_WORKERS + 1)]
    try:
        for client in clients:
            assert client.stdout is not None
            assert read_lines(client.stdout, count=2, timeout=20), "a held session did not start streaming"
        assert all("gatekeeper resident" in parent_of(pid)[1] for pid in docker_pids())
        done = stack.ssh("docker exec some-container sh", port=resident_port, timeout=20)
        assert done.returncode == 77, done.stderr
    finally:
        for client in clients:
            client.kill()
            client.communicate(timeout=10)
    assert wait_until_no_agent_processes(5) == []


def pool_daemon(stack: Stack) -> Daemon:
    """The agent's pool: the stack's own in resident mode, else this module's."""
    return next((d for d in stack.daemons if d.name == "gatekeeper-resident"), None) or POOLS[0]


# The pool with the worker's watch of its client switched off (resident.client_hangups gives
# nothing): the control of test_the_client_killed_alone_stops_docker.
UNWATCHED_POOL = ("import sys\nfrom gatekeeper import resident\n"
                  "resident.client_hangups = lambda connection: ()\n"
                  f"sys.exit(resident.run_pool({AGENT!r}, resident.DEFAULT_WORKERS, None))\n")


@contextlib.contextmanager
def unwatched_pool(stack: Stack) -> Iterator[None]:
    """The agent's pool replaced by one whose workers do not watch their client; restored after."""
    daemon = pool_daemon(stack)
    daemon.stop()
    pool_socket().unlink(missing_ok=True)
    argv = [str(VENV / "bin" / "python3"), "-I", "-c", UNWATCHED_POOL]
    other = Daemon("gatekeeper-resident-unwatched", argv, RUN_DIR / "resident-unwatched.log")
    other.start()
    try:
        wait_for("the unwatched pool", pool_socket().is_socket, 30, diagnose=other.log_tail)
        yield
    finally:
        other.stop()
        pool_socket().unlink(missing_ok=True)
        daemon.start()
        wait_for("the pool again", pool_socket().is_socket, 30, diagnose=daemon.log_tail)


def resident_clients() -> list[int]:
    """The agent's resident clients (sshd's child for each session)."""
    return agent_processes_of(RESIDENT_CLIENT)


def gone_within(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    return not Path(f"/proc/{pid}").exists()


def test_the_client_killed_alone_stops_docker(stack: Stack, resident_port: int, ticker: str) -> None:
    """The resident client killed alone (SIGKILL) while `logs -f` streams, sshd and the ssh
    connection still up (they hold the session's pipes, so the worker's stdout sees no
    hang-up): the worker watches its connection to the client, stops docker, records the exit
    and the session ends. Control, same run: a pool with the watch off; docker streams on to
    the ssh client until the connection itself goes (the behaviour before the watch)."""
    for watched in (False, True):
        with contextlib.nullcontext() if watched else unwatched_pool(stack):
            offset = audit_offset()
            with streaming(stack, resident_port, ticker) as ssh:
                assert ssh.stdout is not None
                _, docker = served_by()
                (client,) = resident_clients()
                os.kill(client, signal.SIGKILL)
                if watched:
                    assert gone_within(docker, 10), "docker still running after its client was killed"
                    ssh.wait(timeout=10)  # the session ended by itself
                else:
                    time.sleep(3)
                    assert Path(f"/proc/{docker}").exists(), "control: docker ended without the watch"
                    assert read_lines(ssh.stdout, count=2, timeout=5), "control: docker stopped streaming"
            assert wait_until_no_agent_processes(5) == []
            exits = [r for r in audit_records_since(offset) if r["event"] == "exit"]
            assert [r["canonical"] for r in exits] == ["container logs"], exits
