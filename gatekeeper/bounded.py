"""The decision's own subprocesses, under memory, time and output limits.

Every engine or compose call made while deciding (renders, ownership and
volume queries, counting) runs through `run_bounded`: a compose file can make
compose allocate without bound (an alias bomb rendered 101 MB of JSON from an
11 KB file, with 864 MB in compose and 300 MB in gatekeeper), and all of it
happened before the audit record was written. Past a limit the child is killed
and the command denied with rule `decision-limit` (audited like every denial).

Memory is RLIMIT_DATA, not RLIMIT_AS: Go reserves address space it never
touches (the docker CLI does not start under a 512 MiB RLIMIT_AS), while
RLIMIT_DATA counts the writable private mappings it really uses.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing costs an import on the ForceCommand path
if TYPE_CHECKING:
    from selectors import BaseSelector
    from subprocess import Popen
    from typing import IO

RULE = "decision-limit"
MEMORY_BYTES = 512 << 20  # per child: compose renders of real projects stay far below
OUTPUT_BYTES = 16 << 20  # stdout of one call (a rendered project as JSON)
ERROR_BYTES = 64 << 10  # stderr kept for the denial message
CHUNK = 1 << 16


def timed_out(error: BaseException) -> bool:
    """`error` is subprocess.TimeoutExpired, asked without importing subprocess: a query
    the engine's API answered (gatekeeper.engine_api) never loaded it, and then no
    child could have timed out. Saves the import (~3 ms) on every owned-scope command."""
    import sys

    subprocess = sys.modules.get("subprocess")
    return subprocess is not None and isinstance(error, subprocess.TimeoutExpired)


def run_bounded(argv: list[str], stdin: bytes | None, env: dict[str, str], cwd: str,
                timeout: float, memory: int = MEMORY_BYTES,
                output: int = OUTPUT_BYTES) -> tuple[int, bytes, bytes]:
    """(status, stdout, stderr) of argv, or Denied(rule decision-limit) past a limit."""
    import subprocess

    from gatekeeper.errors import Denied

    child = subprocess.Popen(  # argv from the pinned binary, env we built
        argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env=env, cwd=cwd, preexec_fn=lambda: limit_memory(memory),  # noqa: PLW1509 - no threads here
    )
    import time

    deadline = time.monotonic() + timeout
    try:
        out, err, over = collect(child, stdin or b"", deadline, output)
        if not over:
            child.wait(max(0.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        over = "time"
    finally:
        if child.poll() is None:
            child.kill()
        child.wait()
    status = child.returncode
    if over or status < 0 or b"out of memory" in err:
        limit = limit_text(over or "memory", memory, output, timeout)
        raise Denied(f"'docker {' '.join(argv[1:3])}' went past gatekeeper's {limit} while deciding; "
                     "the command is refused", rule=RULE)
    return status, out, err


def limit_memory(memory: int) -> None:
    import resource

    resource.setrlimit(resource.RLIMIT_DATA, (memory, memory))


def collect(child: Popen[bytes], stdin: bytes, deadline: float, output: int) -> tuple[bytes, bytes, str]:
    """Feed stdin, read both pipes until EOF, the deadline or the output cap."""
    import os
    import selectors
    import time

    out, err = bytearray(), bytearray()
    selector = selectors.DefaultSelector()
    stdout, stderr, feed = child.stdout, child.stderr, child.stdin
    if stdout is None or stderr is None or feed is None:  # never: run_bounded makes all three pipes
        return b"", b"", "output"
    selector.register(stdout, selectors.EVENT_READ, out)
    selector.register(stderr, selectors.EVENT_READ, err)
    pending = memoryview(stdin)
    if pending:
        selector.register(feed, selectors.EVENT_WRITE, None)
    else:
        feed.close()
    while len(selector.get_map()) > 0:
        left = deadline - time.monotonic()
        if left <= 0:
            return bytes(out), bytes(err), "time"
        for key, _ in selector.select(left):
            if key.data is None:
                pending = write_some(selector, feed, pending)  # the one pipe registered for writing
                continue
            chunk = os.read(key.fd, CHUNK)
            if not chunk:
                selector.unregister(key.fileobj)
                continue
            key.data.extend(chunk)
            if len(out) > output:
                return bytes(out), bytes(err), "output"
            del err[ERROR_BYTES:]
    return bytes(out), bytes(err), ""


def write_some(selector: BaseSelector, pipe: IO[bytes], pending: memoryview) -> memoryview:
    import os

    try:
        written = os.write(pipe.fileno(), pending[:CHUNK])
    except BrokenPipeError:
        written = len(pending)
    pending = pending[written:]
    if not pending:
        selector.unregister(pipe)
        pipe.close()
    return pending


def limit_text(what: str, memory: int, output: int, timeout: float) -> str:
    if what == "output":
        return f"output limit ({output >> 20} MiB)"
    if what == "time":
        return f"time limit ({timeout:g} s)"
    return f"memory limit ({memory >> 20} MiB)"
