"""Running the vetted command: the pinned docker binary, argv (never a shell),
a freshly built environment, cwd = workdir, our stdio passed straight through.

We supervise instead of exec'ing so that the exit status can be audited and a
dropped SSH connection is noticed: when our stdout or stderr reports an error
or hang-up (the client is gone) the child is terminated, and SIGHUP, SIGTERM
and SIGINT sent to us are forwarded to it. A resident worker (gatekeeper.resident)
also watches its connection to the client that sshd started: killed alone, the
client hangs it up while sshd still holds the session's pipes open. Waiting is
done with poll() on a pidfd and the stdio descriptors: no busy loop, no extra
buffering.

Signals are handled through `_signal`, the C module that `signal` wraps: the
same functions and numbers, without `signal`'s enum classes, whose import
(enum and friends) would cost every SSH command a few milliseconds.
"""

from __future__ import annotations

import _signal as signal  # type: ignore[import-not-found]  # see the module docstring; no stub
import posix  # os's system calls without importing os (gatekeeper.environment)
import select

TYPE_CHECKING = False  # typing costs an import on the ForceCommand path
if TYPE_CHECKING:
    from collections.abc import Callable

    from gatekeeper.policy import Policy

FORWARDED_SIGNALS = (signal.SIGHUP, signal.SIGTERM, signal.SIGINT)
GRACE_SECONDS = 3.0
MAX_CAPTURE = 32 << 20  # filtered output is held in memory: bounded
SAFE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def child_environment(policy: Policy, host: str | None = None) -> dict[str, str]:
    """Built from the policy only; nothing the client sent survives. `host` replaces
    the policy's engine with gatekeeper's own stand-in (gatekeeper.redacting_engine)."""
    environment = base_environment(policy, host)
    # Every build, compose's included, takes the classic builder, in every layout. Behind
    # gatekeeper proxy BuildKit's gRPC tunnel (/grpc, /session) is not served (nothing could vet
    # it); on the engine's socket alone BuildKit would run the image `# syntax=` names as the
    # Dockerfile's frontend, which decides what the builder fetches on the host's network beyond
    # what the checks read. One builder for both layers: what is checked is what is built.
    # (COMPOSE_BAKE=false: compose's bake needs BuildKit; without it compose warns, then falls back.)
    environment["DOCKER_BUILDKIT"] = "0"
    environment["COMPOSE_BAKE"] = "false"
    return environment


def base_environment(policy: Policy, host: str | None) -> dict[str, str]:
    return {
        "PATH": SAFE_PATH,
        "HOME": policy.workdir,
        "LANG": "C.UTF-8",
        "DOCKER_HOST": host or policy.host,
        "DOCKER_CONFIG": policy.config_dir,
        "DOCKER_CLI_HINTS": "false",
        # compose must not fetch project files from git or OCI registries
        "COMPOSE_EXPERIMENTAL_GIT_REMOTE": "false",
        "COMPOSE_EXPERIMENTAL_OCI_REMOTE": "false",
        # the interactive menu's 'w' key would turn on watch (host file sync)
        "COMPOSE_MENU": "false",
        # buildx (and compose's builds through it) keeps builder state here; the default,
        # $DOCKER_CONFIG/buildx, is root's and read-only to the agent. The state dir is a
        # top-level dot entry of the home: no container can reach it.
        "BUILDX_CONFIG": policy.state_dir + "/buildx",
    }


# Descriptors besides stdout and stderr whose hang-up means this process's one session's client
# is gone: the resident worker's connection to the client sshd started (watch_client).
CLIENT_WATCHED: list[int] = []


def watch_client(fds: tuple[int, ...]) -> None:
    """From now on, docker is stopped when one of `fds` hangs up, as when stdout does (a
    resident worker serves one session, then exits: gatekeeper.resident)."""
    CLIENT_WATCHED[:] = fds


def run_child(policy: Policy, argv: list[str], stdin: bytes | None,
              output_filter: Callable[[bytes], bytes] | None = None, host: str | None = None,
              on_long_run: Callable[[], None] | None = None) -> int:
    """Spawn docker, supervise it, return its exit status (128+N if killed by signal N).

    With `output_filter` (bytes -> bytes, gatekeeper.redaction) docker's stdout
    goes to a pipe instead of ours; what it printed is filtered, then shown.
    With `host` docker talks to that DOCKER_HOST instead of the policy's.
    `on_long_run` is called once if docker is still running after LONG_RUN_MS.
    The client is also gone when a descriptor of CLIENT_WATCHED hangs up (supervise).
    """
    posix.chdir(policy.workdir)
    feed_r, feed_w = posix.pipe() if stdin is not None else (-1, -1)
    actions = [(posix.POSIX_SPAWN_DUP2, feed_r, 0)] if stdin is not None else []
    capture = Capture() if output_filter is not None else None
    if capture is not None:
        actions.append((posix.POSIX_SPAWN_DUP2, capture.write_fd, 1))
    pid = posix.posix_spawn(policy.binary, argv, child_environment(policy, host), file_actions=actions)
    if stdin is not None:
        posix.close(feed_r)
    if capture is not None:
        posix.close(capture.write_fd)
    install_forwarding(pid)
    status = supervise(pid, feed_w, stdin or b"", capture, on_long_run, hangups=tuple(CLIENT_WATCHED))
    code = posix.waitstatus_to_exitcode(status) if status >= 0 else 128 + signal.SIGKILL
    if capture is not None and output_filter is not None:  # one only exists with the other
        return show_filtered(capture, output_filter, code)
    return code


class Capture:
    """docker's stdout, collected from a pipe, up to MAX_CAPTURE bytes."""

    __slots__ = ("read_fd", "write_fd", "chunks", "size", "overflow")

    def __init__(self) -> None:
        self.read_fd, self.write_fd = posix.pipe()
        posix.set_blocking(self.read_fd, False)
        self.chunks: list[bytes] = []
        self.size = 0
        self.overflow = False

    def drain(self) -> bool:
        """Read what is there; False at end of file (or on overflow)."""
        while True:
            try:
                chunk = posix.read(self.read_fd, 65536)
            except BlockingIOError:
                return True
            if not chunk:
                return False
            self.size += len(chunk)
            if self.size > MAX_CAPTURE:
                self.overflow = True
                return False
            self.chunks.append(chunk)


def show_filtered(capture: Capture, output_filter: Callable[[bytes], bytes], code: int) -> int:
    """Print the filtered output; withhold it all if it cannot be filtered (fail closed)."""
    if not capture.overflow:
        capture.drain()  # whatever arrived between the last poll and the exit
    posix.close(capture.read_fd)
    why = "more than 32 MiB" if capture.overflow else ""
    if not why:
        try:
            write_all(1, output_filter(b"".join(capture.chunks)))
            return code
        except ValueError as error:
            why = str(error)
        except RecursionError:
            why = "nested too deeply to read"
    posix.write(2, f"gatekeeper: output withheld: {why}, so secrets could not be redacted\n".encode())
    return code or 1


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            view = view[posix.write(fd, view):]
        except BrokenPipeError:
            return


def install_forwarding(pid: int) -> None:
    def forward(signum: int, _frame: object) -> None:
        try:
            posix.kill(pid, signum)
        except ProcessLookupError:
            pass

    for signum in FORWARDED_SIGNALS:
        signal.signal(signum, forward)
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)


LONG_RUN_MS = 1000  # docker still running after this: a stream or a long job (gatekeeper.audit_handoff)


def supervise(pid: int, feed_fd: int, feed: bytes, capture: Capture | None = None,
              on_long_run: Callable[[], None] | None = None, long_run_ms: int = LONG_RUN_MS,
              hangups: tuple[int, ...] = ()) -> int:
    """Wait for the child; stop it if the client goes away. Returns the wait status.
    `on_long_run` is called once when the child runs longer than long_run_ms. The client
    is gone when our stdout or stderr, or one of `hangups` (the resident worker's connection
    to its client, gatekeeper.resident), reports a hang-up or an error."""
    pidfd = posix.pidfd_open(pid)
    poller = select.poll()
    poller.register(pidfd, select.POLLIN)
    for fd in (1, 2, *hangups):
        poller.register(fd, 0)  # only POLLERR/POLLHUP: the client hung up
    if feed_fd >= 0:
        poller.register(feed_fd, select.POLLOUT)
    capture_fd = capture.read_fd if capture is not None else -1
    if capture is not None:
        poller.register(capture_fd, select.POLLIN)
    while True:
        ready, on_long_run = poll_once(poller, on_long_run, long_run_ms)
        for fd, events in ready:
            if fd == pidfd:
                return reap(pid)
            if capture is not None and fd == capture_fd:
                if not capture.drain():
                    poller.unregister(capture_fd)
                    if capture.overflow:
                        return stop_child(pid, pidfd)
            elif fd == feed_fd:
                feed = write_feed(poller, feed_fd, feed, events)
            elif events & select.POLLNVAL:
                poller.unregister(fd)  # closed stdio: nothing to watch
            elif events & (select.POLLERR | select.POLLHUP):
                return stop_child(pid, pidfd)


def poll_once(poller: select.poll, on_long_run: Callable[[], None] | None,
              long_run_ms: int) -> tuple[list[tuple[int, int]], Callable[[], None] | None]:
    """One poll(); the first time it waits long_run_ms in vain, on_long_run is called (once)."""
    ready = poller.poll(None if on_long_run is None else long_run_ms)
    if not ready and on_long_run is not None:
        on_long_run()
        return ready, None
    return ready, on_long_run


def write_feed(poller: select.poll, fd: int, feed: bytes, events: int) -> bytes:
    """Feed the child's stdin without blocking; close it when done or unwanted."""
    if feed and events & select.POLLOUT:
        try:
            feed = feed[posix.write(fd, feed[:65536]):]
        except OSError:
            feed = b""
    if not feed or events & (select.POLLERR | select.POLLHUP):
        poller.unregister(fd)
        posix.close(fd)
    return feed


def stop_child(pid: int, pidfd: int) -> int:
    """The client is gone: SIGTERM, a grace period, then SIGKILL."""
    posix.kill(pid, signal.SIGTERM)
    ready, _, _ = select.select([pidfd], [], [], GRACE_SECONDS)
    if not ready:
        posix.kill(pid, signal.SIGKILL)
    return reap(pid)


def reap(pid: int) -> int:
    _, status = posix.waitpid(pid, 0)
    return status
