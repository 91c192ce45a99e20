"""Running the vetted command: the pinned docker binary, argv (never a shell),
a freshly built environment, cwd = workdir, our stdio passed straight through.

We supervise instead of exec'ing so that the exit status can be audited and a
dropped SSH connection is noticed: when our stdout or stderr reports an error
or hang-up (the client is gone) the child is terminated, and SIGHUP, SIGTERM
and SIGINT sent to us are forwarded to it. Waiting is done with poll() on a
pidfd and the stdio descriptors: no busy loop, no extra buffering.

Signals are handled through `_signal`, the C module that `signal` wraps: the
same functions and numbers, without `signal`'s enum classes, whose import
(enum and friends) would cost every SSH command a few milliseconds.
"""

from __future__ import annotations

import _signal as signal  # see the module docstring
import os
import select

FORWARDED_SIGNALS = (signal.SIGHUP, signal.SIGTERM, signal.SIGINT)
GRACE_SECONDS = 3.0
SAFE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def child_environment(policy: object) -> dict[str, str]:
    """Built from the policy only; nothing the client sent survives."""
    return {
        "PATH": SAFE_PATH,
        "HOME": policy.workdir,  # type: ignore[attr-defined]
        "LANG": "C.UTF-8",
        "DOCKER_HOST": policy.host,  # type: ignore[attr-defined]
        "DOCKER_CONFIG": policy.config_dir,  # type: ignore[attr-defined]
        "DOCKER_CLI_HINTS": "false",
        # compose must not fetch project files from git or OCI registries
        "COMPOSE_EXPERIMENTAL_GIT_REMOTE": "false",
        "COMPOSE_EXPERIMENTAL_OCI_REMOTE": "false",
        # the interactive menu's 'w' key would turn on watch (host file sync)
        "COMPOSE_MENU": "false",
    }


def run_child(policy: object, argv: list[str], stdin: bytes | None) -> int:
    """Spawn docker, supervise it, return its exit status (128+N if killed by signal N)."""
    os.chdir(policy.workdir)  # type: ignore[attr-defined]
    feed_r, feed_w = os.pipe() if stdin is not None else (-1, -1)
    actions = [(os.POSIX_SPAWN_DUP2, feed_r, 0)] if stdin is not None else []
    pid = os.posix_spawn(policy.binary, argv, child_environment(policy), file_actions=actions)  # type: ignore[attr-defined]
    if stdin is not None:
        os.close(feed_r)
    install_forwarding(pid)
    status = supervise(pid, feed_w, stdin or b"")
    return os.waitstatus_to_exitcode(status) if status >= 0 else 128 + signal.SIGKILL


def install_forwarding(pid: int) -> None:
    def forward(signum: int, _frame: object) -> None:
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass

    for signum in FORWARDED_SIGNALS:
        signal.signal(signum, forward)
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)


def supervise(pid: int, feed_fd: int, feed: bytes) -> int:
    """Wait for the child; stop it if the client goes away. Returns the wait status."""
    pidfd = os.pidfd_open(pid)
    poller = select.poll()
    poller.register(pidfd, select.POLLIN)
    for fd in (1, 2):
        poller.register(fd, 0)  # only POLLERR/POLLHUP: the client hung up
    if feed_fd >= 0:
        poller.register(feed_fd, select.POLLOUT)
    while True:
        for fd, events in poller.poll():
            if fd == pidfd:
                return reap(pid)
            if fd == feed_fd:
                feed = write_feed(poller, feed_fd, feed, events)
            elif events & select.POLLNVAL:
                poller.unregister(fd)  # closed stdio: nothing to watch
            elif events & (select.POLLERR | select.POLLHUP):
                return stop_child(pid, pidfd)


def write_feed(poller: select.poll, fd: int, feed: bytes, events: int) -> bytes:
    """Feed the child's stdin without blocking; close it when done or unwanted."""
    if feed and events & select.POLLOUT:
        try:
            feed = feed[os.write(fd, feed[:65536]):]
        except OSError:
            feed = b""
    if not feed or events & (select.POLLERR | select.POLLHUP):
        poller.unregister(fd)
        os.close(fd)
    return feed


def stop_child(pid: int, pidfd: int) -> int:
    """The client is gone: SIGTERM, a grace period, then SIGKILL."""
    os.kill(pid, signal.SIGTERM)
    ready, _, _ = select.select([pidfd], [], [], GRACE_SECONDS)
    if not ready:
        os.kill(pid, signal.SIGKILL)
    return reap(pid)


def reap(pid: int) -> int:
    _, status = os.waitpid(pid, 0)
    return status
