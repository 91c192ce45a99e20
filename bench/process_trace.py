"""Where the wall time of a process tree goes: exec, fork and exit events from the kernel.

`perf record` of the scheduler's tracepoints sched_process_exec/fork/exit, system wide,
on CLOCK_MONOTONIC (the clock of time.monotonic(), so a caller's own timestamps line up
with the kernel's). No probe in the traced programs: what is timed is what runs.
`Recorder` starts and stops perf; `events()` reads what it recorded; `milestones()` picks,
for one window of time, the events of the processes descended from one root (a daemon's
pid): when a program was exec'd and when it exited, by file name. Needs root and perf
(Debian: linux-perf); bench/ssh_bench.py --trace uses it.
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

EVENTS = ("sched:sched_process_exec", "sched:sched_process_fork", "sched:sched_process_exit")
LINE = re.compile(r"\s*(.+?)\s+(\d+)/(\d+)\s+([\d.]+):\s+sched:sched_process_(\w+):\s*(.*)")


class Event:
    """One tracepoint hit: kind is exec, fork or exit; pid is the thread group (process)."""

    __slots__ = ("when", "kind", "pid", "tid", "detail")

    def __init__(self, when: float, kind: str, pid: int, tid: int, detail: str) -> None:
        self.when, self.kind, self.pid, self.tid, self.detail = when, kind, pid, tid, detail

    def field(self, name: str) -> str:
        found = re.search(rf"\b{name}=(\S+)", self.detail)
        return found.group(1) if found else ""


class Recorder:
    """`with Recorder() as trace:` ... `trace.events()` after the block."""

    def __init__(self) -> None:
        if shutil.which("perf") is None:
            raise SystemExit("--trace needs perf (Debian: apt-get install linux-perf)")
        self.directory = Path(tempfile.mkdtemp(prefix="gk-trace-"))
        self.data = self.directory / "perf.data"
        self.process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Recorder:
        argv = ["perf", "record", "-q", "-a", "-k", "CLOCK_MONOTONIC", "-o", str(self.data)]
        for event in EVENTS:
            argv += ["-e", event]
        self.process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        time.sleep(1.0)  # perf needs a moment before it records
        if self.process.poll() is not None:
            raise SystemExit(f"perf record failed: {self.process.stderr.read().decode()[:300]}")  # type: ignore[union-attr]
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGINT)
            self.process.wait(60)

    def events(self) -> list[Event]:
        text = subprocess.run(["perf", "script", "-i", str(self.data), "-F", "comm,pid,tid,time,event,trace"],
                              capture_output=True, text=True, check=True).stdout
        shutil.rmtree(self.directory, ignore_errors=True)
        found = []
        for line in text.splitlines():
            match = LINE.match(line)
            if match:
                _comm, pid, tid, when, kind, detail = match.groups()
                found.append(Event(float(when), kind, int(pid), int(tid), detail))
        return sorted(found, key=lambda event: event.when)


def descendants(events: list[Event], root: int, start: float, end: float) -> list[Event]:
    """The events of `root`'s descendants between start and end (forks followed in order)."""
    family = {root}
    mine = []
    for event in events:
        if event.when > end:
            break
        if event.kind == "fork" and event.pid in family:
            family.add(int(event.field("child_pid")))
        elif event.when >= start and event.pid in family and event.pid != root:
            mine.append(event)
    return mine


def milestones(events: list[Event], programs: dict[str, str]) -> dict[str, float]:
    """For each named program (name -> file name it is exec'd from): when it was exec'd
    ("NAME exec") and when its process exited ("NAME exit"). A program run again after its
    first run ended counts from its last run: PAM's session modules run /bin/sh too (Debian's
    pam_motd: run-parts /etc/update-motd.d) before sshd starts the session's shell. The
    first event of all is "first" (the connection's sshd child)."""
    found: dict[str, float] = {"first": events[0].when} if events else {}
    pids: dict[int, list[str]] = {}  # one process can exec several programs (`sh -c 'exec ...'`)
    for event in events:
        if event.kind == "exec":
            filename = event.field("filename")
            for name, path in programs.items():
                if filename == path and (f"{name} exec" not in found or f"{name} exit" in found):
                    found[f"{name} exec"] = event.when
                    found.pop(f"{name} exit", None)
                    pids.setdefault(event.pid, []).append(name)
        elif event.kind == "exit" and event.pid in pids and last_thread(event):
            for name in pids.pop(event.pid):
                found[f"{name} exit"] = event.when
    return found


def last_thread(event: Event) -> bool:
    """The exit that ends the process (group_dead; kernels before 6.x lack it: the leader's)."""
    dead = event.field("group_dead")
    return dead in ("1", "true") if dead else event.tid == event.pid
