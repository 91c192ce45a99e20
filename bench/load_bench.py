"""Bench: many ForceCommand sessions at once against one audit file.

Keeps `--concurrency` gatekeeper processes in flight until `--sessions` have
run (mixed allowed and denied, a third of them 8 to 12 KB long), with a stub
docker. Then checks the audit log as the concurrency test does (exact record
count, every line whole JSON, each session's decision and exit pair) and
prints throughput, latency percentiles, CPU per session and peak RSS.

Uses the same installed venv and temp deployment as forcecommand_bench.py.

    python3 bench/load_bench.py [--sessions N] [--concurrency C] [--venv DIR] [--no-install]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Final

from forcecommand_bench import compile_policy, prepare_root, prepare_venv, session_env

EX_NOPERM: Final = 77


def session_command(index: int) -> tuple[str, bool]:
    """The command of session `index` and whether it is allowed (as in tests/test_concurrency.py)."""
    kind = index % 6
    if kind == 0:
        return "docker exec web sh", False
    if kind == 1:
        fields = " ".join(["{{.ID}} {{.Names}} {{.Image}} {{.Status}}"] * 300)
        return f"docker ps -a --format '{fields}'", True
    if kind == 2:
        return "docker ps " + " ".join(f"--filter name=service-{n}" for n in range(480)), True
    if kind == 3:
        return "docker exec " + " ".join(f"arg{n}" for n in range(2_000)), False
    if kind == 4:
        return "docker ps --format '" + "\x01\x1b[31m" * 500 + "'", False
    return "docker ps", True


class Load:
    """Sessions in flight, by pid: (index, start time)."""

    def __init__(self, argv: list[str], root: Path) -> None:
        self.argv = argv
        self.root = root
        self.running: dict[int, tuple[int, float]] = {}
        self.latencies: list[float] = []
        self.cpu: list[float] = []
        self.peak_rss_kib = 0
        self.failures: list[str] = []

    def start(self, index: int) -> None:
        command, _ = session_command(index)
        env = session_env(self.root, command)
        env["SSH_CONNECTION"] = f"127.0.0.1 {index} 127.0.0.1 22"
        # posix_spawn, not Popen: Popen reaps children it has lost track of, and we wait4(-1) ourselves
        quiet = [(os.POSIX_SPAWN_OPEN, fd, "/dev/null", os.O_RDWR, 0) for fd in (0, 1, 2)]
        pid = os.posix_spawn(self.argv[0], self.argv, env, file_actions=quiet)
        self.running[pid] = (index, time.perf_counter())

    def reap_one(self) -> None:
        pid, status, usage = os.wait4(-1, 0)
        if pid not in self.running:
            return
        index, started = self.running.pop(pid)
        self.latencies.append(time.perf_counter() - started)
        self.cpu.append(usage.ru_utime + usage.ru_stime)
        self.peak_rss_kib = max(self.peak_rss_kib, usage.ru_maxrss)
        expected = 0 if session_command(index)[1] else EX_NOPERM
        if os.waitstatus_to_exitcode(status) != expected:
            self.failures.append(f"session {index}: exit {os.waitstatus_to_exitcode(status)}")

    def run(self, sessions: int, concurrency: int) -> float:
        started = time.perf_counter()
        for index in range(sessions):
            while len(self.running) >= concurrency:
                self.reap_one()
            self.start(index)
        while self.running:
            self.reap_one()
        return time.perf_counter() - started


def check_audit(audit: Path, sessions: int) -> list[str]:
    """What is wrong with the audit log, if anything."""
    raw = audit.read_bytes()
    if not raw.endswith(b"\n"):
        return ["the log does not end with a newline (a torn record)"]
    try:
        records = [json.loads(line) for line in raw.decode("ascii").split("\n")[:-1]]
    except ValueError as error:
        return [f"a line is not whole JSON: {error}"]
    allowed = sum(session_command(i)[1] for i in range(sessions))
    problems = []
    if len(records) != sessions + allowed:
        problems.append(f"{len(records)} records, expected {sessions + allowed}")
    decisions = {r["client"]: r for r in records if r["event"] == "decision"}
    exits = {r["session"] for r in records if r["event"] == "exit"}
    for index in range(sessions):
        command, is_allowed = session_command(index)
        decision = decisions.get(f"127.0.0.1 {index} 127.0.0.1 22")
        if decision is None or decision["cmd"] != command:
            problems.append(f"session {index}: decision missing or altered")
        elif is_allowed != (decision["session"] in exits):
            problems.append(f"session {index}: exit record missing or unexpected")
    return problems


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * share))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=200)
    parser.add_argument("--venv", type=Path, default=Path("/tmp/gatekeeper-bench-venv"))
    parser.add_argument("--no-install", action="store_true", help="reuse the venv's gatekeeper as is")
    options = parser.parse_args()
    python = prepare_venv(options.venv, install=not options.no_install)
    root = Path(tempfile.mkdtemp(prefix="gk-load-"))
    try:
        files = prepare_root(root)
        files["stub"].write_text("#!/bin/sh\nexit 0\n")
        compile_policy(python, files["policy"])
        load = Load([str(python), "-I", "-m", "gatekeeper", "--policy", str(files["policy"])], root)
        elapsed = load.run(options.sessions, options.concurrency)
        problems = load.failures + check_audit(root / "audit.jsonl", options.sessions)
        size_mb = (root / "audit.jsonl").stat().st_size / 1e6
    finally:
        shutil.rmtree(root, ignore_errors=True)
    ms = [v * 1000 for v in load.latencies]
    print(
        f"{options.sessions} sessions, {options.concurrency} at a time, {os.cpu_count()} CPUs: "
        f"{elapsed:.1f} s, {options.sessions / elapsed:.0f} sessions/s, audit log {size_mb:.1f} MB"
    )
    print(
        f"latency median {statistics.median(ms):.0f} ms, p90 {percentile(ms, 0.9):.0f} ms, "
        f"p99 {percentile(ms, 0.99):.0f} ms; CPU per session {statistics.mean(load.cpu) * 1000:.1f} ms; "
        f"peak RSS {load.peak_rss_kib / 1024:.1f} MB"
    )
    print("audit log: " + ("every record present and whole" if not problems else f"{len(problems)} problems"))
    for problem in problems[:20]:
        print("  " + problem)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
