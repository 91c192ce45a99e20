"""The resident ForceCommand (gatekeeper/resident.py) and its C client, without sshd.

The request the worker accepts, what of it reaches the ForceCommand (only the SSH
variables, the session's rlimits never raised), and the client's rule: anything short of
a worker's acknowledgement from a listener with root's credentials is a denial with one
line on stderr; the client execs nothing itself. Through the real sshd and
engine: tests/e2e/test_resident.py.
"""

from __future__ import annotations

import array
import json
import os
import pwd
import resource
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from gatekeeper import resident
from gatekeeper.operator.install_entry import write_resident_client
from gatekeeper.operator.sshd_check import FORCECOMMAND

PACKAGES = str(Path(resident.__file__).resolve().parent.parent)
IS_ROOT = os.geteuid() == 0


def request_bytes(*fields: bytes) -> bytes:
    return resident.MAGIC + b"\0" + b"".join(field + b"\0" for field in fields)


# ---------------------------------------------------------------- the request


def test_a_request_gives_argv_umask_limits_and_only_the_ssh_variables() -> None:
    request = resident.Request([])
    data = request_bytes(b"umask=27", b"rlimit=7:512:1024", b"arg=--policy", b"arg=/etc/p.toml",
                         b"env=SSH_ORIGINAL_COMMAND=docker ps", b"env=SSH_CONNECTION=1 2 3 4",
                         b"env=PYTHONPATH=/home/ai-worker/pp", b"env=LD_PRELOAD=/tmp/x.so",
                         b"env=SSH_USER_AUTH=/tmp/auth", b"env=PATH=/evil")
    assert resident.parse_request(data, request)
    assert request.args == ["--policy", "/etc/p.toml"]
    assert request.environment == {"SSH_ORIGINAL_COMMAND": "docker ps", "SSH_CONNECTION": "1 2 3 4",
                                   "SSH_USER_AUTH": "/tmp/auth"}
    assert (request.umask, request.limits) == (0o027, {7: (512, 1024)})


@pytest.mark.parametrize("data", [
    b"",
    b"gatekeeper-resident 2\0arg=x\0",  # another protocol
    request_bytes(b"shell=/bin/sh"),  # a field nobody defined
    request_bytes(b"arg=x")[:-1],  # not NUL-terminated
], ids=["empty", "version", "unknown-field", "unterminated"])
def test_a_malformed_request_is_refused(data: bytes) -> None:
    assert not resident.parse_request(data, resident.Request([]))


def test_the_variables_passed_are_all_the_forcecommand_reads() -> None:
    """The list is the ForceCommand's own: every getenv() outside operator commands names one."""
    import re

    names = set()
    for path in Path(PACKAGES, "gatekeeper").rglob("*.py"):
        if "operator" in path.parts or "proxy" in path.parts:
            continue
        names.update(re.findall(r'getenv\("([A-Z_]+)"\)', path.read_text()))
    assert names == set(resident.SSH_VARIABLES)


def in_child(check: Callable[[], bool]) -> bool:
    """`check()` in a forked child (rlimits and descriptors changed there only)."""
    pid = os.fork()
    if pid == 0:
        try:
            os._exit(0 if check() else 1)
        except BaseException:  # noqa: BLE001
            os._exit(2)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status) == 0


def test_the_sessions_lower_limit_applies_and_a_higher_one_is_not_granted() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)

    def lower() -> bool:
        assert resident.apply_limits({resource.RLIMIT_NOFILE: (64, 128)})
        return resource.getrlimit(resource.RLIMIT_NOFILE) == (64, 128)

    def higher() -> bool:
        assert resident.apply_limits({resource.RLIMIT_NOFILE: (resident.RLIMIT_INFINITY,) * 2})
        return resource.getrlimit(resource.RLIMIT_NOFILE)[1] <= hard

    assert in_child(lower)
    assert in_child(higher)
    assert not resident.apply_limits({99: (1, 1)})  # a resource no client of ours sends: refused


# ---------------------------------------------------------------- the worker's side of the socket


def send_request(conn: socket.socket, data: bytes, fds: list[int]) -> None:
    conn.sendmsg([data], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds).tobytes())])


def test_receive_takes_three_descriptors_and_the_request() -> None:
    client, worker = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    with client, worker, open(os.devnull, "rb") as null:
        send_request(client, request_bytes(b"arg=--policy", b"arg=/p"), [null.fileno()] * 3)
        request = resident.receive(worker)
        assert request is not None and request.args == ["--policy", "/p"]
        assert len(request.fds) == 3
        for fd in request.fds:
            os.close(fd)
        assert resident.peer_uid(worker) == os.getuid()


@pytest.mark.parametrize("count", [2, 4])
def test_receive_refuses_another_number_of_descriptors(count: int) -> None:
    client, worker = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    with client, worker, open(os.devnull, "rb") as null:
        send_request(client, request_bytes(b"arg=x"), [null.fileno()] * count)
        assert resident.receive(worker) is None


# ---------------------------------------------------------------- the C client


@pytest.fixture(scope="module")
def client_dir() -> Iterator[Path]:
    """The client compiled with a test socket directory."""
    if shutil.which("gcc") is None:
        pytest.skip("no gcc (install-entry --resident needs it; .ci/e2e-setup.sh installs it)")
    directory = Path(tempfile.mkdtemp(prefix="gk-resident-", dir="/tmp"))  # reachable by nobody too
    directory.chmod(0o755)
    write_resident_client(str(directory / "client"), PACKAGES, str(directory))
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


def run_client(directory: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {"SSH_ORIGINAL_COMMAND": "docker ps", "PYTHONPATH": "/x"}
    return subprocess.run([str(directory / "client"), *args], capture_output=True, text=True, env=env,
                          timeout=30, check=False)


NO_POOL = ("gatekeeper: denied: the resident pool is not running (gatekeeper-resident.service); "
           "ask the operator\n")
NOT_TAKEN = "gatekeeper: denied: the resident pool did not take the call (restarting?); try again\n"
NOT_ROOTS = "gatekeeper: denied: the resident pool's socket is not root's; ask the operator\n"


def test_without_a_pool_the_client_denies_with_one_line(client_dir: Path) -> None:
    """Fail closed: the client execs nothing of its own, so no pool means no call."""
    (client_dir / f"{os.getuid()}.sock").unlink(missing_ok=True)
    done = run_client(client_dir, "--policy", "/p")
    assert (done.returncode, done.stdout, done.stderr) == (75, "", NO_POOL)


def fake_pool(directory: Path, answer: Callable[[socket.socket], None]) -> list[bytes]:
    """A listener (ours: root's) at the client's socket path that hands the connection to
    `answer`; returns what it received."""
    path = directory / f"{os.getuid()}.sock"
    path.unlink(missing_ok=True)
    received: list[bytes] = []
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    listener.bind(str(path))
    listener.listen(1)

    def serve() -> None:
        connection, _ = listener.accept()
        with connection:
            data, ancillary, _, _ = connection.recvmsg(resident.MAX_REQUEST, socket.CMSG_SPACE(12))
            for fd in resident.received_fds(ancillary):
                os.close(fd)  # the client's stdio: held here, its reader would never see EOF
            received.append(data)
            answer(connection)
        listener.close()

    threading.Thread(target=serve, daemon=True).start()
    return received


@pytest.mark.skipif(not IS_ROOT, reason="the client trusts only a listener with root's credentials")
def test_the_client_relays_the_workers_exit_status(client_dir: Path) -> None:
    received = fake_pool(client_dir, lambda c: (c.sendall(b"A%d" % os.getpid()), c.sendall(b"E42")))
    done = run_client(client_dir, "--policy", "/p")
    assert (done.returncode, done.stdout) == (42, "")
    (data,) = received
    fields = data.split(b"\0")
    assert fields[0] == resident.MAGIC and b"arg=--policy" in fields and b"arg=/p" in fields
    assert b"env=SSH_ORIGINAL_COMMAND=docker ps" in fields  # the worker filters (PYTHONPATH too is sent)
    assert sum(field.startswith(b"rlimit=") for field in fields) == resident.RLIMITS


@pytest.mark.skipif(not IS_ROOT, reason="the client trusts only a listener with root's credentials")
def test_a_worker_closing_before_acknowledging_is_a_denial(client_dir: Path) -> None:
    fake_pool(client_dir, lambda c: None)
    done = run_client(client_dir, "--policy", "/p")
    assert (done.returncode, done.stdout, done.stderr) == (75, "", NOT_TAKEN)


@pytest.mark.skipif(not IS_ROOT, reason="the client trusts only a listener with root's credentials")
def test_a_worker_ending_after_acknowledging_is_a_failure_never_a_second_run(client_dir: Path) -> None:
    fake_pool(client_dir, lambda c: c.sendall(b"A%d" % os.getpid()))
    done = run_client(client_dir, "--policy", "/p")
    assert done.returncode == 70 and done.stdout == ""
    assert "resident worker ended" in done.stderr


@pytest.mark.skipif(not IS_ROOT, reason="needs root to make a listener of another uid")
def test_a_listener_that_is_not_roots_is_never_sent_anything(client_dir: Path) -> None:
    """Attack: a process of the agent at the pool's path. Control: root's listener is sent the request."""
    path = client_dir / f"{os.getuid()}.sock"
    path.unlink(missing_ok=True)
    script = ("import socket, sys, os\n"
              "s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET); s.bind(sys.argv[1])\n"
              "os.chmod(sys.argv[1], 0o666)\n"
              "s.listen(1); print('up', flush=True); c, _ = s.accept(); c.settimeout(5)\n"
              "try:\n    print(len(c.recv(1 << 17)))\nexcept OSError:\n    print(0)\n")
    client_dir.chmod(0o1777)  # so that nobody can bind there: the client must not trust the place
    for uid, expected_sent in ((0, True), (65534, False)):
        path.unlink(missing_ok=True)
        preexec = None if uid == 0 else (lambda: os.setuid(65534))
        argv = [sys.executable, "-I", "-c", script, str(path)]
        with subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, preexec_fn=preexec) as listener:  # noqa: PLW1509 - the uid is the point
            assert listener.stdout is not None and listener.stdout.readline() == "up\n"
            done = run_client(client_dir, "--policy", "/p")
            sent = int(listener.communicate(timeout=20)[0].strip())
        assert (sent > 0) == expected_sent, (uid, sent)
        # root's listener closes unacknowledged: the call is not taken; the other is never trusted
        expected = (75, "", NOT_TAKEN) if uid == 0 else (70, "", NOT_ROOTS)
        assert (done.returncode, done.stdout, done.stderr) == expected
    path.unlink(missing_ok=True)
    client_dir.chmod(0o755)


def test_sshd_check_accepts_the_resident_client() -> None:
    line = "exec /opt/gatekeeper/bin/gatekeeper-ssh-resident --policy /etc/gatekeeper/p.toml"
    assert FORCECOMMAND.fullmatch(line)


def test_an_upgrade_under_the_pool_is_noticed() -> None:
    """The pool's stamps of its sources: a changed one means its workers run replaced code."""
    stamps = resident.preload()
    assert stamps and resident.code_is_current(stamps)
    (relative, (inode, size, mtime)), *rest = stamps
    assert not resident.code_is_current(((relative, (inode, size + 1, mtime)), *rest))
    assert not resident.code_is_current((("gatekeeper/gone.py", (1, 1, 1)),))


# ---------------------------------------------------------------- a worker serving the compiled client

NOBODY = 65534
STREAMING_DOCKER = "#!/bin/sh\necho $$ > {area}/docker.pid\nexec sleep 60\n"  # a `logs -f` that never ends
QUICK_DOCKER = "#!/bin/sh\necho out\nexit 3\n"


def worker_area(client_dir: Path, docker: str) -> Path:
    """A policy, audit log and stub docker the agent (nobody) can use, beside the client."""
    area = client_dir / "area"
    shutil.rmtree(area, ignore_errors=True)
    area.mkdir(mode=0o777)
    area.chmod(0o777)
    (area / "audit.jsonl").touch(mode=0o666)
    (area / "audit.jsonl").chmod(0o666)
    stub = area / "docker"
    stub.write_text(docker.format(area=area))
    stub.chmod(0o755)
    (area / "policy.toml").write_text(
        f'[docker]\nbinary = "{stub}"\nworkdir = "{area}"\nconfig_dir = "{area}/cfg"\n'
        f'host = "unix:///run/test.sock"\n[audit]\npath = "{area}/audit.jsonl"\nsyslog = false\n'
        f'[paths]\nallowed_roots = ["{area}"]\nstate_dir = "{area}/.gatekeeper"\n')
    return area


def fork_worker(client_dir: Path, *, linger: float = 0.0) -> int:
    """A worker of the pool (resident.serve_one, as nobody) on the client's socket path; it
    stays `linger` seconds after serving, as a worker being torn down would."""
    path = client_dir / f"{NOBODY}.sock"
    path.unlink(missing_ok=True)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    listener.bind(str(path))
    path.chmod(0o666)
    listener.listen(1)
    pid = os.fork()
    if pid == 0:
        try:
            resident.serve_one(listener, resident.Account(pwd.getpwuid(NOBODY)))
            time.sleep(linger)
        finally:
            os._exit(0)
    listener.close()
    return pid


def start_client(client_dir: Path, area: Path) -> tuple[subprocess.Popen[bytes], int]:
    """The compiled client as nobody, its stdout a pipe of ours; returns it and the pipe's reading end."""
    read_end, write_end = os.pipe()
    env = {"SSH_ORIGINAL_COMMAND": "docker ps", "SSH_CONNECTION": "1.2.3.4 5 6.7.8.9 22"}
    client = subprocess.Popen([str(client_dir / "client"), "--policy", str(area / "policy.toml")],
                              stdout=write_end, stderr=subprocess.DEVNULL, env=env, user=NOBODY, group=NOBODY,
                              extra_groups=[])
    os.close(write_end)
    return client, read_end


def seconds_to_end_of_file(fd: int, timeout: float) -> float:
    """Seconds until `fd` (the session's stdout as sshd reads it) ends; inf if not within `timeout`."""
    started = time.monotonic()
    os.set_blocking(fd, False)
    while time.monotonic() - started < timeout:
        if not select.select([fd], [], [], 0.05)[0]:
            continue
        if os.read(fd, 65536) == b"":
            return time.monotonic() - started
    return float("inf")


@pytest.fixture
def worker_signals() -> Iterator[None]:
    """A worker tells its pool (us, here) it accepted: BUSY, whose default would end pytest."""
    previous = signal.signal(resident.BUSY, signal.SIG_IGN)
    yield
    signal.signal(resident.BUSY, previous)


@pytest.mark.skipif(not IS_ROOT, reason="a worker drops from root to the agent")
def test_the_session_ends_when_the_status_is_sent_not_when_the_worker_is_gone(
        client_dir: Path, worker_signals: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """sshd ends a session when the client has exited and its stdout and stderr reached their
    end. The worker closes its copies before it sends the status: the session ends then, not
    after the worker's teardown (here: a worker lingering 3 s). Control: without that, the
    session's stdout stays open as long as the worker lives."""
    area = worker_area(client_dir, QUICK_DOCKER)
    for let_go, expect_quick in ((True, True), (False, False)):
        if not let_go:
            monkeypatch.setattr(resident, "let_go_of_session", lambda: None)
        worker = fork_worker(client_dir, linger=3.0)
        client, stdout = start_client(client_dir, area)
        seconds = seconds_to_end_of_file(stdout, timeout=10)
        assert client.wait(timeout=10) == 3
        os.close(stdout)
        os.waitpid(worker, 0)
        assert (seconds < 2.0) == expect_quick, (let_go, seconds)
    events = [json.loads(line)["event"] for line in (area / "audit.jsonl").read_text().splitlines()]
    assert events == ["decision", "exit"] * 2


@pytest.mark.skipif(not IS_ROOT, reason="a worker drops from root to the agent")
def test_the_client_killed_alone_stops_docker(
        client_dir: Path, worker_signals: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """The client killed (SIGKILL) while docker streams, sshd (here: us) still holding the
    session's pipes: the worker sees its connection hang up, stops docker and records the
    exit. Control: unwatched (client_hangups gives nothing), docker runs on."""
    area = worker_area(client_dir, STREAMING_DOCKER)
    for watched in (False, True):
        if not watched:
            monkeypatch.setattr(resident, "client_hangups", lambda connection: ())
        else:
            monkeypatch.undo()
        (area / "docker.pid").unlink(missing_ok=True)
        worker = fork_worker(client_dir)
        client, stdout = start_client(client_dir, area)
        wait_for_file(area / "docker.pid")
        docker = int((area / "docker.pid").read_text())
        client.kill()
        client.wait(timeout=10)
        seconds = seconds_to_end_of_file(stdout, timeout=2.0 if not watched else 10)
        if watched:
            assert seconds < 5, "docker not stopped when the client was killed"
            assert not Path(f"/proc/{docker}").exists() or process_state(docker) == "Z"
        else:
            assert seconds == float("inf") and process_state(docker) not in ("Z", ""), "control: docker ends"
            os.kill(docker, signal.SIGKILL)
            seconds_to_end_of_file(stdout, timeout=10)
        os.close(stdout)
        os.waitpid(worker, 0)
    records = [json.loads(line) for line in (area / "audit.jsonl").read_text().splitlines()]
    assert [record["event"] for record in records] == ["decision", "exit"] * 2
    assert records[3]["exit"] != 0  # stopped: SIGTERM


def wait_for_file(path: Path, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists() or not path.read_text().strip():
        assert time.monotonic() < deadline, f"{path} not written"
        time.sleep(0.02)


def process_state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return ""


def test_supervise_stops_docker_when_a_watched_descriptor_hangs_up() -> None:
    """execution.supervise's hang-up set: stdout, stderr and the `hangups` given (the worker's
    connection). Control: the same hang-up, not watched, leaves the child to finish by itself."""
    from gatekeeper.execution import supervise

    for watched in (True, False):
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        pid = os.posix_spawn("/bin/sleep", ["sleep", "1.5"], {})
        theirs.close()  # the client gone
        started = time.monotonic()
        status = supervise(pid, -1, b"", hangups=(ours.fileno(),) if watched else ())
        seconds = time.monotonic() - started
        ours.close()
        if watched:
            assert os.waitstatus_to_exitcode(status) == -signal.SIGTERM and seconds < 1.0
        else:
            assert os.waitstatus_to_exitcode(status) == 0 and seconds >= 1.0


# ---------------------------------------------------------------- the pool's refill

@pytest.mark.parametrize(("busy_since", "wanted"), [
    ({}, 3),  # nothing running: all idle
    ({101: 9.5}, 2),  # a call begun 0.5 s ago: its replacement waits until it ends
    ({101: 9.5, 102: 9.8}, 1),
    ({101: 9.5, 102: 9.8, 103: 9.9}, 1),  # never none idle: the next call is not left waiting
    ({101: 8.9}, 3),  # running over REFILL_SECONDS (a `logs -f`): replaced while it runs
    ({101: 2.0, 102: 9.9}, 2),
], ids=["none", "one-starting", "two-starting", "three-starting", "one-streaming", "mixed"])
def test_a_starting_call_is_replaced_after_it_not_beside_it(busy_since: dict[int, float],
                                                             wanted: int) -> None:
    assert resident.idle_wanted(3, busy_since, now=10.0) == wanted


def test_the_pool_wakes_when_a_replacement_is_due() -> None:
    assert resident.next_wake({}, now=10.0) == resident.STALE_CHECK_SECONDS
    assert resident.next_wake({101: 9.5}, now=10.0) == pytest.approx(0.5)
    assert resident.next_wake({101: 8.0}, now=10.0) == resident.STALE_CHECK_SECONDS
