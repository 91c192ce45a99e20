"""`gatekeeper resident`: the ForceCommand without Python's start on every call (the default).

    gatekeeper resident --user ai-worker            (as root, one per agent account)
    ForceCommand exec /opt/gatekeeper/bin/gatekeeper-ssh-resident --policy /etc/gatekeeper/policy.toml

A ForceCommand in Python pays the interpreter's start and its imports on every
ssh call (~7 ms of CPU). Here a pool of workers is started once with every
ForceCommand module imported. sshd's forced command is a small C client
(gatekeeper/resident_client.c, compiled by `gatekeeper install-entry --resident`)
that parses nothing: it connects to this pool's socket, hands over its stdin,
stdout and stderr (SCM_RIGHTS), its argv, environment, umask and rlimits, and
relays the exit status. The worker that accepts it runs the ForceCommand's own
entry (cli.forcecommand_main: the same policy load, decision, audit and
supervised docker as the entry script) on those descriptors, then exits: one
fresh process per session, forked before the call, never reused.

Trust, in order:
  * the socket is made by root in a root-owned directory (/run/gatekeeper-resident,
    0755), `<uid>.sock` root:<agent's group> 0660; the client trusts only a listener
    whose credentials are root's (SO_PEERCRED), so no process of the agent can pose
    as the pool.
  * a worker accepts as root, and the first thing it does is compare the peer's uid
    (SO_PEERCRED, the kernel's) with the account's: another is closed unserved. Then,
    before it reads a byte of the request, it drops to the account for good: uid, gid,
    and the groups /etc/group gives it now (initgroups, as sshd does at each login, so
    a group taken away applies to the next call, not at the pool's restart). So it has
    exactly the rights the entry script has as the agent.
  * what the client hands over is what the entry script would see: the argv sshd's
    ForceCommand gives it, and of its environment only SSH_VARIABLES (everything else
    of the worker's environment is cleared); the session's umask and its rlimits
    (each taken as is, or lowered to the pool's own hard limit: never above).
  * the client fails closed: any failure before the worker's acknowledgement (no pool,
    a listener not root's, a refused or dropped connection, a request too large) is a
    denial with one line on stderr; it execs nothing itself. After it, the worker owns
    the call.
"""

from __future__ import annotations

import os
import posix
import pwd
import signal
import socket
import struct
import sys
import time

from gatekeeper.errors import GatekeeperError

SOCKET_DIRECTORY = "/run/gatekeeper-resident"  # compiled into the client too (install_entry)
SSH_VARIABLES = ("SSH_ORIGINAL_COMMAND", "SSH_CONNECTION", "SSH_USER_AUTH")  # all the ForceCommand reads
MAGIC = b"gatekeeper-resident 1"
MAX_REQUEST = 128 << 10  # the client sends larger ones to the entry script instead
FDS = 3  # stdin, stdout, stderr
DEFAULT_WORKERS = 3
RLIMIT_INFINITY = (1 << 64) - 1  # as the client prints rlim_t's RLIM_INFINITY
RLIMITS = 16  # Linux's RLIMIT_NLIMITS: the client sends resources 0 to 15

class ResidentError(GatekeeperError):
    """The pool cannot be started safely."""


class Request:
    """What one session handed over: descriptors, argv, the SSH variables, umask, rlimits."""

    __slots__ = ("fds", "args", "environment", "umask", "limits")

    def __init__(self, fds: list[int]) -> None:
        self.fds = fds
        self.args: list[str] = []
        self.environment: dict[str, str] = {}
        self.umask = 0o077
        self.limits: dict[int, tuple[int, int]] = {}


def run_pool(user: str, workers: int, path: str | None) -> int:
    """Bind as root, import every ForceCommand module, then keep the workers (until SIGTERM)."""
    import gc

    try:
        account = pwd.getpwnam(user)
    except KeyError:
        raise ResidentError(f"no account {user!r}") from None
    if account.pw_uid == 0:
        raise ResidentError("the agent's account must not be root")
    listener = bind_listener(path or socket_path(account.pw_uid), account.pw_gid)
    stamps = preload()
    load_lookups(account)
    gc.freeze()  # what is loaded now is never collected: a worker's collections do not copy its pages
    return serve(listener, max(1, workers), Account(account), stamps)


def socket_path(uid: int) -> str:
    return f"{SOCKET_DIRECTORY}/{uid}.sock"


def bind_listener(path: str, group: int) -> socket.socket:
    """The listening socket, made as root in a root-owned directory nobody else writes."""
    if posix.geteuid() != 0:
        raise ResidentError("start it as root: it makes its socket, then runs as the agent")
    directory = os.path.dirname(path)
    os.makedirs(directory, mode=0o755, exist_ok=True)
    status = os.lstat(directory)
    if status.st_uid != 0 or status.st_mode & 0o022 or not os.path.isdir(directory):
        raise ResidentError(f"{directory} must be a root-owned directory writable by root only")
    if os.path.lexists(path):
        os.unlink(path)  # a pool's leftover: the directory is root's alone
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    old = os.umask(0o177)
    try:
        listener.bind(path)
    finally:
        os.umask(old)
    os.chown(path, 0, group)
    os.chmod(path, 0o660)
    listener.listen(64)  # as root: the client checks the listener's credentials are root's
    return listener


class Account:
    """The agent's account as the pool started: name, uid, primary gid, home."""

    __slots__ = ("name", "uid", "gid", "home")

    def __init__(self, entry: pwd.struct_passwd) -> None:
        self.name = entry.pw_name
        self.uid = entry.pw_uid
        self.gid = entry.pw_gid
        self.home = entry.pw_dir


def drop_privileges(account: Account) -> None:
    """The agent's uid, gid and current groups, for good (a worker, before it reads the request)."""
    os.initgroups(account.name, account.gid)  # /etc/group as it is now, as sshd's login reads it
    os.setresgid(account.gid, account.gid, account.gid)
    os.setresuid(account.uid, account.uid, account.uid)
    if os.getresuid() != (account.uid,) * 3 or os.getresgid() != (account.gid,) * 3:
        raise ResidentError(f"could not drop to {account.name}")
    try:
        os.setresuid(0, 0, 0)
    except PermissionError:
        return
    raise ResidentError("root could be regained after dropping privileges")


PACKAGES = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # where gatekeeper is installed

Stamps = tuple[tuple[str, tuple[int, int, int]], ...]  # source (relative to PACKAGES), (inode, size, mtime)


def preload() -> Stamps:
    """Every module the ForceCommand may import (the module bundle's list), imported once;
    returns their sources' stamps, so a worker can tell that gatekeeper was upgraded since."""
    import importlib

    from gatekeeper.module_bundle import bundled_sources

    stamps = []
    for name, relative in bundled_sources(PACKAGES):
        if name != __name__:
            importlib.import_module(name)
        status = os.stat(os.path.join(PACKAGES, relative))
        stamps.append((relative, (status.st_ino, status.st_size, status.st_mtime_ns)))
    return tuple(stamps)


def load_lookups(account: pwd.struct_passwd) -> None:
    """What every worker would load afresh for its call (~0.8 ms), loaded once here: the NSS
    modules initgroups() opens (getgrouplist asks the same; nothing is cached, each worker's
    initgroups reads /etc/group as it is then) and `resource` (apply_limits)."""
    import resource  # noqa: F401

    os.getgrouplist(account.pw_name, account.pw_gid)


def code_is_current(stamps: Stamps) -> bool:
    """Every source as imported: else the pool would run code an upgrade replaced. The pool
    asks every STALE_CHECK_SECONDS, off the calls' path; stale, it ends its idle workers and
    exits 75 (its unit restarts it on the new code; meanwhile the client denies, exit 75)."""
    from gatekeeper.module_bundle import current

    try:
        return current(PACKAGES, stamps)
    except OSError:
        return False


EX_STALE = 75  # the pool exits with it when gatekeeper was upgraded under it (Restart=on-failure)
STALE_CHECK_SECONDS = 1.0  # a stat of each source: under 1 ms of the pool's CPU a second
# A worker's word to the pool that it accepted a session: a real-time signal, queued (two at
# once are two), sent while the worker is still root, with its pid (si_pid).
BUSY = signal.SIGRTMIN
REFILL_SECONDS = 1.0  # a worker busy this long is replaced while it runs on (idle_wanted)
# Taken synchronously (sigtimedwait): no handler can run in the middle of a fork.
POOL_SIGNALS = (signal.SIGCHLD, signal.SIGTERM, signal.SIGINT, BUSY)


def serve(listener: socket.socket, workers: int, account: Account, stamps: Stamps) -> int:
    """Keep `workers` idle workers in accept(); each serves one session, then exits. A worker
    that accepted says so (BUSY, queued) and is replaced when its session ends, or REFILL_SECONDS
    after it began if it still runs, or at once if no idle worker is left (idle_wanted): a
    `logs -f` holding a worker for hours never leaves a call waiting. Until SIGTERM or SIGINT
    (0) or sources changed under it (EX_STALE): then idle workers end and busy ones finish."""
    signal.pthread_sigmask(signal.SIG_BLOCK, POOL_SIGNALS)
    idle: set[int] = set()
    busy: dict[int, float] = {}  # pid: when it took its session
    code, checked = 0, time.monotonic()
    while True:
        gone = reaped()
        idle -= gone
        for pid in gone:
            busy.pop(pid, None)
        while len(idle) < idle_wanted(workers, busy, time.monotonic()):
            idle.add(start_worker(listener, account))
        received = signal.sigtimedwait(POOL_SIGNALS, next_wake(busy, time.monotonic()))
        if received is not None and received.si_signo == BUSY and received.si_pid in idle:
            idle.discard(received.si_pid)
            busy[received.si_pid] = time.monotonic()
        elif received is not None and received.si_signo not in (BUSY, signal.SIGCHLD):
            break
        if time.monotonic() - checked >= STALE_CHECK_SECONDS:
            checked = time.monotonic()
            if not code_is_current(stamps):
                code = EX_STALE
                break
    for pid in idle - reaped():
        try:
            os.kill(pid, signal.SIGUSR1)
        except ProcessLookupError:
            pass
    return code


def idle_wanted(workers: int, busy: dict[int, float], now: float) -> int:
    """Idle workers to keep now: `workers`, less one for each session begun within
    REFILL_SECONDS, never none. Its replacement is forked when it ends (or, a stream, that long
    after it began): not while its call starts, when the fork (~1 ms of CPU for a 22 MB
    process) would compete with the worker, docker and sshd for the same CPUs."""
    starting = sum(1 for since in busy.values() if now - since < REFILL_SECONDS)
    return max(1, workers - starting)


def next_wake(busy: dict[int, float], now: float) -> float:
    """Seconds until the pool must look again: the next source check, or sooner when a busy
    worker's REFILL_SECONDS run out (its replacement is due then)."""
    due = [since + REFILL_SECONDS - now for since in busy.values() if now - since < REFILL_SECONDS]
    return max(0.001, min([STALE_CHECK_SECONDS, *due]))


def reaped() -> set[int]:
    """The workers that have exited, waited for."""
    done: set[int] = set()
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return done
        if pid == 0:
            return done
        done.add(pid)


def start_worker(listener: socket.socket, account: Account) -> int:
    pid = os.fork()
    if pid:
        return pid
    code = 0
    try:
        signal.pthread_sigmask(signal.SIG_SETMASK, [])  # docker must not inherit the pool's mask
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1):
            signal.signal(signum, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a fresh interpreter
        serve_one(listener, account)
    except BaseException:  # noqa: BLE001 - a worker never returns into the pool's loop
        code = 70
    os._exit(code)


def serve_one(listener: socket.socket, account: Account) -> None:
    connection, _ = listener.accept()
    # From here the session is ours to finish: the pool's SIGUSR1 (stop, idle ones only) is
    # caught and dropped. A handler, not SIG_IGN: docker must not inherit an ignored signal.
    signal.signal(signal.SIGUSR1, ignore_stop)
    listener.close()
    os.kill(os.getppid(), BUSY)  # the pool forks an idle worker in our place
    if peer_uid(connection) != account.uid:
        return  # closed unserved (the client, if ours, denies: nothing of the call ran)
    drop_privileges(account)
    request = receive(connection)
    if request is None or not take_session(request, account.home):
        return  # closed before the acknowledgement: the client denies (try again)
    connection.sendall(b"A%d" % posix.getpid())
    code = run_session(request, client_hangups(connection))  # its records written, the exit line's too
    let_go_of_session()
    try:
        connection.sendall(b"E%d" % code)
    except OSError:
        pass  # the client is gone; the exit line is in the audit log


def client_hangups(connection: socket.socket) -> tuple[int, ...]:
    """The connection to the client, watched while docker runs (execution.supervise): the
    client killed alone hangs it up while sshd still holds the session's pipes open, and
    docker (a `logs -f`) would otherwise run on until sshd closed them. (The e2e control
    replaces this with `()`: tests/e2e/test_resident.py.)"""
    return (connection.fileno(),)


def let_go_of_session() -> None:
    """Close the session's stdin, stdout and stderr before the status goes to the client.
    sshd ends the session once the client has exited and these have reached their end; kept
    open, they would end only with this process, after its ~1 ms teardown."""
    for fd in (0, 1, 2):
        try:
            posix.close(fd)
        except OSError:
            pass


def ignore_stop(_signum: int, _frame: object) -> None:
    """The pool stopping: a worker serving a session finishes it."""


def peer_uid(connection: socket.socket) -> int:
    """The connecting process's uid, as the kernel recorded it at connect()."""
    pid_uid_gid = connection.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return int(struct.unpack("3i", pid_uid_gid)[1])


def receive(connection: socket.socket) -> Request | None:
    """The session's request (fds, argv, variables, umask, rlimits), if well formed."""
    data, ancillary, flags, _ = connection.recvmsg(MAX_REQUEST, socket.CMSG_SPACE(FDS * 4))
    fds = received_fds(ancillary)
    if flags & (socket.MSG_CTRUNC | socket.MSG_TRUNC) or len(fds) != FDS:
        for fd in fds:
            posix.close(fd)
        return None
    request = Request(fds)
    if not parse_request(data, request):
        for fd in fds:
            posix.close(fd)
        return None
    return request


def received_fds(ancillary: list[tuple[int, int, bytes]]) -> list[int]:
    fds: list[int] = []
    for level, kind, payload in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            usable = len(payload) - len(payload) % 4
            fds.extend(struct.unpack(f"{usable // 4}i", payload[:usable]))
    return fds


def parse_request(data: bytes, request: Request) -> bool:
    """MAGIC, then NUL-terminated fields `umask=OCTAL`, `rlimit=R:CUR:MAX`, `arg=...`, `env=NAME=VALUE`."""
    fields = data.split(b"\0")
    if len(fields) < 2 or fields[0] != MAGIC or fields[-1] != b"":
        return False
    encoding = sys.getfilesystemencoding()
    for field in fields[1:-1]:
        tag, _, value = field.partition(b"=")
        text = value.decode(encoding, "surrogateescape")
        if tag == b"arg":
            request.args.append(text)
        elif tag == b"env":
            name, eq, setting = text.partition("=")
            if eq and name in SSH_VARIABLES:
                request.environment[name] = setting
        elif tag == b"umask":
            request.umask = int(text, 8) & 0o777
        elif tag == b"rlimit":
            resource, current, maximum = (int(part) for part in text.split(":"))
            request.limits[resource] = (current, maximum)
        else:
            return False
    return True


def take_session(request: Request, home: str) -> bool:
    """Become the session's process: its descriptors, variables, umask, rlimits and cwd.
    False (an rlimit that cannot be set): the client denies; nothing of the call ran."""
    for target, fd in enumerate(request.fds):
        posix.dup2(fd, target)
    for fd in request.fds:
        if fd > 2:
            posix.close(fd)
    os.environ.clear()
    os.environ.update(request.environment)
    posix.umask(request.umask)
    try:
        posix.chdir(home)  # where sshd starts the forced command
    except OSError:
        posix.chdir("/")
    sys.argv = [sys.argv[0], *request.args]
    return apply_limits(request.limits)


def run_session(request: Request, hangups: tuple[int, ...] = ()) -> int:
    """The ForceCommand's own entry on the session's descriptors, as the entry script runs it
    (`hangups`: the client's connection, watched as stdout is while docker runs)."""
    from gatekeeper.cli import forcecommand_main, guarded
    from gatekeeper.execution import watch_client

    watch_client(hangups)
    code = guarded(forcecommand_main, request.args)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    return code


def apply_limits(limits: dict[int, tuple[int, int]]) -> bool:
    """The session's rlimits, each as sshd and PAM set it, or the pool's own hard limit if lower."""
    import resource

    for which, (current, maximum) in limits.items():
        if not 0 <= which < RLIMITS:
            return False  # no client of ours sends one
        _, ours = resource.getrlimit(which)
        hard = lowest(as_limit(maximum), ours)
        soft = lowest(as_limit(current), hard)
        try:
            resource.setrlimit(which, (soft, hard))
        except (ValueError, OSError):
            return False
    return True


def as_limit(value: int) -> int:
    import resource

    return resource.RLIM_INFINITY if value == RLIMIT_INFINITY else value


def lowest(first: int, second: int) -> int:
    import resource

    if first == resource.RLIM_INFINITY:
        return second
    if second == resource.RLIM_INFINITY:
        return first
    return min(first, second)
