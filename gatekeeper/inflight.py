"""What live gatekeeper sessions are about to do: a registry of claims in flight.

Two sessions could each pass a check that together they break: both ask the
engine which bind sources exist, both see none, and one binds work/ while the
other binds work/a/etc. So a session whose command carries host paths takes
an exclusive lock before it asks (`locked_claims`), and holds it until it has
registered what it adds (`settle`). The registration lives until the process
ends; by then the engine holds the container, and the next session sees it
there. Readers read the registry before they ask the engine, so a session
that ends in between is seen in one place or the other.

Layout, in the state directory (policy [paths] state_dir, by default the
agent's top-level hidden ~/.gatekeeper, which the path rule keeps out of every
container's reach; nothing from the client configures it):

    lock            flock(LOCK_EX) around check-and-register
    claim-<hex>     one file per live session: "kind\\0value\\0" pairs,
                    flock(LOCK_EX)'d by that session for as long as it lives

A claim file nobody holds a lock on belongs to a dead session (LOCK_NB
succeeds): it is stale and removed. The lock on a claim is also inherited
by the docker child, so a claim outlives a killed gatekeeper as long as the
docker CLI still runs.

The API is generic (kind, value) so other counts can use it (for example
containers about to start, for [limits] max_running).
"""

from __future__ import annotations

import errno
import os

from gatekeeper.errors import Denied

LOCK_NAME = "lock"
CLAIM_PREFIX = "claim-"
LOCK_TIMEOUT = 30.0  # seconds another session may hold the lock (its engine queries)
MAX_CLAIM_BYTES = 1 << 20

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable


class StateError(Denied):
    """The state directory cannot be used: host-path commands are refused."""

    def __init__(self, message: str) -> None:
        super().__init__(message, rule="host-path-state")


class Registration:
    """One session's claims, held until `release` (or the end of the process)."""

    __slots__ = ("path", "fd")

    def __init__(self, path: str, fd: int) -> None:
        self.path = path
        self.fd = fd

    def release(self) -> None:
        if self.fd < 0:
            return
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
        os.close(self.fd)
        self.fd = -1


class Registry:
    """The claims of live sessions in `state_dir`; see the module docstring."""

    __slots__ = ("state_dir", "lock_fd")

    def __init__(self, state_dir: str) -> None:
        self.state_dir = state_dir
        self.lock_fd = -1

    # -- the critical section

    def lock(self) -> None:
        """Take the exclusive lock (once); StateError if the directory or lock is unusable."""
        if self.lock_fd >= 0:
            return
        directory = self.open_state_dir()
        try:
            fd = os.open(LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600,
                         dir_fd=directory)
        except OSError as error:
            raise StateError(self.problem(f"cannot open its lock file ({error.strerror})")) from None
        finally:
            os.close(directory)
        if not wait_for_lock(fd, LOCK_TIMEOUT):
            os.close(fd)
            raise Denied(f"another gatekeeper session held the host-path lock for {LOCK_TIMEOUT:.0f} s; "
                         "try again", rule="host-path-busy")
        self.lock_fd = fd

    def unlock(self) -> None:
        if self.lock_fd >= 0:
            os.close(self.lock_fd)  # closing drops the flock
            self.lock_fd = -1

    def locked_claims(self) -> list[tuple[str, str]]:
        """Take the lock (held until `settle`) and return the live sessions' claims."""
        self.lock()
        return self.live_claims()

    def settle(self, claims: list[tuple[str, str]] | None) -> Registration | None:
        """Register `claims` (if any) under the lock, then drop the lock."""
        try:
            if claims and self.lock_fd >= 0:
                return self.register(claims)
            return None
        finally:
            self.unlock()

    # -- claims

    def live_claims(self) -> list[tuple[str, str]]:
        """Every (kind, value) of every live session; stale claim files are removed.
        Call with the lock held."""
        found: list[tuple[str, str]] = []
        for name in sorted(os.listdir(self.state_dir)):
            if name.startswith(CLAIM_PREFIX):
                found += self.read_claim(os.path.join(self.state_dir, name))
        return found

    def read_claim(self, path: str) -> list[tuple[str, str]]:
        import fcntl

        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
        except FileNotFoundError:
            return []
        except OSError as error:
            raise StateError(self.problem(f"cannot read {path!r} ({error.strerror})")) from None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return parse_claims(os.read(fd, MAX_CLAIM_BYTES))  # its session is alive
            os.unlink(path)  # nobody holds it: the session is gone
            return []
        finally:
            os.close(fd)

    def register(self, claims: Iterable[tuple[str, str]]) -> Registration:
        """A claim file for this session, locked for as long as the process (or its docker child) lives."""
        import fcntl

        path = os.path.join(self.state_dir, CLAIM_PREFIX + os.urandom(8).hex())
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
            fcntl.flock(fd, fcntl.LOCK_EX)
            os.write(fd, encode_claims(claims))
        except OSError as error:
            raise StateError(self.problem(f"cannot register this session ({error.strerror})")) from None
        os.set_inheritable(fd, True)  # the docker child keeps the claim alive if we die first
        return Registration(path, fd)

    # -- the directory

    def open_state_dir(self) -> int:
        """Create the directory if missing (0700); it must be ours, a real directory, private."""
        import stat

        try:
            os.mkdir(self.state_dir, 0o700)
        except FileExistsError:
            pass
        except OSError as error:
            raise StateError(self.problem(f"cannot create it ({error.strerror})")) from None
        try:
            fd = os.open(self.state_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError as error:
            why = "it is a symlink" if error.errno == errno.ELOOP else error.strerror
            raise StateError(self.problem(f"cannot open it ({why})")) from None
        info = os.fstat(fd)
        if info.st_uid != os.getuid() or stat.S_IMODE(info.st_mode) & 0o022:
            os.close(fd)
            raise StateError(self.problem("it must be owned by this account and writable by nobody else"))
        return fd

    def problem(self, what: str) -> str:
        return (f"gatekeeper's state directory {self.state_dir!r} is unusable: {what}; host paths are "
                "refused until the operator fixes it (remove it, or create it with "
                f"'install -d -m 0700 -o <agent> {self.state_dir}', or set [paths] state_dir)")


def wait_for_lock(fd: int, timeout: float) -> bool:
    import fcntl
    import time

    deadline = time.monotonic() + timeout
    delay = 0.005
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(delay)
            delay = min(delay * 2, 0.1)


def encode_claims(claims: Iterable[tuple[str, str]]) -> bytes:
    """NUL-separated: a host path cannot contain NUL (but may contain a newline)."""
    out = bytearray()
    for kind, value in claims:
        out += kind.encode() + b"\0" + value.encode("utf-8", "surrogateescape") + b"\0"
    return bytes(out)


def parse_claims(data: bytes) -> list[tuple[str, str]]:
    fields = data.split(b"\0")[:-1]
    return [(fields[i].decode(), fields[i + 1].decode("utf-8", "surrogateescape"))
            for i in range(0, len(fields) - 1, 2)]
