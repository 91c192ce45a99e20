"""Bench: what one SSH command costs in ForceCommand mode, next to the floor and authprogs.

Each round runs every case once, in an order that rotates every round (so
drift on a shared machine hits all cases alike), as separate processes with a
recording stub as the docker binary:

    floor           <venv>/bin/python3 -I -c pass, then the stub: the bare interpreter
    floor again     the same once more: the A/A control; its ratio to the floor is the
                    noise of the run (a ratio inside it is no difference at all)
    allowed         <venv>/bin/python3 -I -m gatekeeper --policy P
                    with SSH_ORIGINAL_COMMAND="docker ps -a --format '{{.Names}}'"
    denied          the same with SSH_ORIGINAL_COMMAND="docker exec web sh"
    allowed/toml    'allowed' without the compiled policy (TOML parsed each call)
    allowed/-c      'allowed' started with -c (gatekeeper.cli.entry()) instead of -m: what runpy costs
    entry script    'allowed' and 'denied' through the script `gatekeeper install-entry`
                    writes (#!<venv>/bin/python3 -IS, no runpy, no site): the documented ForceCommand
    authprogs       /usr/bin/authprogs --run, configured to allow the same command
    authprogs deny  authprogs refusing 'docker exec web sh'

It prints the median, minimum and 90th percentile wall time, the median and
minimum CPU time (user + system, which other load on the machine disturbs less
than wall time), peak RSS and the ratios of each median and minimum to the
floor's. Then it streams a stub 'docker logs -f' (one line every 200 ms)
through gatekeeper and reports gatekeeper's own CPU time while it supervises
and the latency of each line from the child to our pipe.

The gatekeeper under test is installed (not editable) from the repository into
a venv made from /usr/bin/python3, as in the deployment layout.

With `--against DIR` (another venv with a gatekeeper installed, e.g. one made
from an earlier commit with `git archive`), every gatekeeper case runs also with
that venv in the same rounds, shown as "(against)" rows beside the others: a
before/after comparison under the same machine load.

    python3 bench/forcecommand_bench.py [--rounds N] [--venv DIR] [--no-install] [--against DIR]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Final

REPO: Final = Path(__file__).resolve().parent.parent
ALLOWED_COMMAND: Final = "docker ps -a --format '{{.Names}}'"
DENIED_COMMAND: Final = "docker exec web sh"
STREAM_LINES: Final = 15
STREAM_INTERVAL_S: Final = 0.2
RATIO_TARGET: Final = 1.5
RSS_TARGET_MB: Final = 30.0
AGAINST: Final = "(against)"

# The stub docker: records its argv, streams timestamped lines for 'logs -f'.
STUB: Final = """#!/bin/sh
printf '%s\\n' "$*" >> "{record}"
if [ "$1" = logs ] && [ "$2" = -f ]; then
    i=0
    while [ $i -lt {lines} ]; do
        echo "line $i $(date +%s.%N)"
        sleep {interval}
        i=$((i + 1))
    done
fi
exit 0
"""

POLICY: Final = """[docker]
binary = "{root}/bin/docker"
workdir = "{root}/work"
config_dir = "{root}/work"

[audit]
path = "{root}/audit.jsonl"
syslog = false

[paths]
allowed_roots = ["{root}/work"]

# The stub docker answers no ownership query: measure the supervision, not the scope rail.
[scope]
logs = "all"
"""

AUTHPROGS_CONFIG: Final = """-
  allow:
    - command: {command}
"""


class Run:
    """One process run: wall and CPU seconds, peak RSS (KiB), of it and its waited-for children."""

    __slots__ = ("wall", "cpu", "rss_kib", "status")

    def __init__(self, wall: float, cpu: float, rss_kib: int, status: int) -> None:
        self.wall = wall
        self.cpu = cpu
        self.rss_kib = rss_kib
        self.status = status


def run_once(argv: list[str], env: dict[str, str]) -> Run:
    started = time.perf_counter()
    child = subprocess.Popen(
        argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - started
    child.returncode = os.waitstatus_to_exitcode(status)
    return Run(wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss, child.returncode)


def run_sequence(steps: list[tuple[list[str], dict[str, str]]]) -> Run:
    """Several processes one after the other, as one measurement."""
    runs = [run_once(argv, env) for argv, env in steps]
    return Run(
        sum(r.wall for r in runs), sum(r.cpu for r in runs), max(r.rss_kib for r in runs), runs[-1].status
    )


class Case:
    __slots__ = ("name", "steps", "expected_status", "runs")

    def __init__(
        self, name: str, steps: list[tuple[list[str], dict[str, str]]], expected_status: int
    ) -> None:
        self.name = name
        self.steps = steps
        self.expected_status = expected_status
        self.runs: list[Run] = []

    def measure(self) -> None:
        run = run_sequence(self.steps)
        if run.status != self.expected_status:
            raise SystemExit(f"{self.name}: exit status {run.status}, expected {self.expected_status}")
        self.runs.append(run)

    def median_ms(self) -> float:
        return statistics.median(r.wall for r in self.runs) * 1000

    def cpu_ms(self) -> float:
        return statistics.median(r.cpu for r in self.runs) * 1000

    def min_ms(self) -> float:
        return min(r.wall for r in self.runs) * 1000

    def min_cpu_ms(self) -> float:
        return min(r.cpu for r in self.runs) * 1000

    def p90_ms(self) -> float:
        walls = sorted(r.wall for r in self.runs)
        return walls[min(len(walls) - 1, int(len(walls) * 0.9))] * 1000

    def peak_rss_mb(self) -> float:
        return max(r.rss_kib for r in self.runs) / 1024


def prepare_venv(venv: Path, *, install: bool) -> Path:
    python = venv / "bin" / "python3"
    if not python.exists():
        subprocess.run(["/usr/bin/python3", "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", str(REPO)], check=True)
    elif install:
        subprocess.run(
            [str(python), "-m", "pip", "install", "-q", "--no-deps", "--force-reinstall", str(REPO)],
            check=True,
        )
    return python


def prepare_root(root: Path) -> dict[str, Path]:
    for sub in ("bin", "work", "authprogs"):
        (root / sub).mkdir(parents=True)
    stub = root / "bin" / "docker"
    stub.write_text(STUB.format(record=root / "calls.log", lines=STREAM_LINES, interval=STREAM_INTERVAL_S))
    stub.chmod(0o755)
    (root / "audit.jsonl").touch()
    policy = root / "policy.toml"
    policy.write_text(POLICY.format(root=root))
    authprogs = root / "authprogs" / "authprogs.yaml"
    authprogs.write_text(AUTHPROGS_CONFIG.format(command=ALLOWED_COMMAND))
    return {"stub": stub, "policy": policy, "authprogs": authprogs}


def compile_policy(python: Path, policy: Path) -> bool:
    """Write the compiled policy if this gatekeeper has 'policy compile'."""
    done = subprocess.run(
        [str(python), "-I", "-m", "gatekeeper", "policy", "compile", str(policy)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        print(f"note: no compiled policy ({done.stderr.strip() or done.stdout.strip()})")
    return done.returncode == 0


def session_env(root: Path, command: str | None = None) -> dict[str, str]:
    env = {
        "PATH": f"{root}/bin:/usr/bin:/bin",
        "HOME": str(root / "authprogs"),
        "LANG": "C.UTF-8",
        "SSH_CONNECTION": "127.0.0.1 40000 127.0.0.1 22",
    }
    if command is not None:
        env["SSH_ORIGINAL_COMMAND"] = command
    return env


def build_cases(
    python: Path, root: Path, files: dict[str, Path], toml_copy: Path, label: str = ""
) -> list[Case]:
    gatekeeper = [str(python), "-I", "-m", "gatekeeper", "--policy", str(files["policy"])]
    uncompiled = [str(python), "-I", "-m", "gatekeeper", "--policy", str(toml_copy)]
    without_runpy = [
        str(python),
        "-I",
        "-c",
        # an --against venv of an earlier commit may predate entry()
        "import sys, gatekeeper.cli as cli; cli.entry() if hasattr(cli, 'entry') else sys.exit(cli.main())",
        "--policy",
        str(files["policy"]),
    ]
    stub = [str(files["stub"]), "ps", "-a", "--format", "{{.Names}}"]
    authprogs = ["/usr/bin/authprogs", "--run", "--configfile", str(files["authprogs"])]
    plain = session_env(root)
    cases = [
        Case(
            "floor (python -I -c pass + stub)", [([str(python), "-I", "-c", "pass"], plain), (stub, plain)], 0
        ),
        Case("floor again (A/A control)", [([str(python), "-I", "-c", "pass"], plain), (stub, plain)], 0),
        Case("gatekeeper allowed", [(gatekeeper, session_env(root, ALLOWED_COMMAND))], 0),
        Case("gatekeeper denied", [(gatekeeper, session_env(root, DENIED_COMMAND))], 77),
        Case("gatekeeper allowed, TOML", [(uncompiled, session_env(root, ALLOWED_COMMAND))], 0),
        Case("gatekeeper allowed, -c", [(without_runpy, session_env(root, ALLOWED_COMMAND))], 0),
        Case("gatekeeper denied, -c", [(without_runpy, session_env(root, DENIED_COMMAND))], 77),
    ]
    entry = install_entry(python, root, label)
    if entry is not None:
        cases += [
            Case("gatekeeper allowed, entry script", [(entry, session_env(root, ALLOWED_COMMAND))], 0),
            Case("gatekeeper denied, entry script", [(entry, session_env(root, DENIED_COMMAND))], 77),
        ]
    if label:  # the same gatekeeper cases with another venv: no floor, no authprogs
        for case in cases:
            case.name = f"{case.name} {label}"
        return cases[2:]
    if Path("/usr/bin/authprogs").exists():
        cases += [
            Case("authprogs allowed", [(authprogs, session_env(root, ALLOWED_COMMAND))], 0),
            Case("authprogs denied", [(authprogs, session_env(root, DENIED_COMMAND))], 126),
        ]
    return cases


def install_entry(python: Path, root: Path, label: str = "") -> list[str] | None:
    """The entry script, if this gatekeeper has `install-entry`."""
    script = root / "bin" / ("gatekeeper-ssh-against" if label else "gatekeeper-ssh")
    done = subprocess.run(
        [str(python), "-I", "-m", "gatekeeper", "install-entry", "--to", str(script),
         "--python", str(python)],
        capture_output=True, text=True, check=False,
    )
    if done.returncode != 0:
        print(f"note: no entry script ({done.stderr.strip() or done.stdout.strip()})")
        return None
    return [str(script), "--policy", str(root / "policy.toml")]


def report(cases: list[Case]) -> None:
    floor = cases[0]
    print(
        f"\n{'case':38} {'med ms':>7} {'min ms':>7} {'p90 ms':>7} {'x med':>6} {'x min':>6} "
        f"{'CPU med':>8} {'CPU min':>8} {'x med':>6} {'x min':>6} {'RSS MB':>7}"
    )
    for case in cases:
        print(
            f"{case.name:38} {case.median_ms():7.1f} {case.min_ms():7.1f} {case.p90_ms():7.1f} "
            f"{case.median_ms() / floor.median_ms():6.2f} {case.min_ms() / floor.min_ms():6.2f} "
            f"{case.cpu_ms():8.1f} {case.min_cpu_ms():8.1f} {case.cpu_ms() / floor.cpu_ms():6.2f} "
            f"{case.min_cpu_ms() / floor.min_cpu_ms():6.2f} {case.peak_rss_mb():7.1f}"
        )
    documented = [case for case in cases if case.name.endswith("entry script")] or cases[1:3]
    against = {case.name: case for case in cases if case.name.endswith(AGAINST)}
    for case in cases:
        other = against.get(f"{case.name} {AGAINST}")
        if other is not None:
            print(f"{case.name}: median {case.median_ms() / other.median_ms():.3f} x, "
                  f"CPU {case.cpu_ms() / other.cpu_ms():.3f} x the {AGAINST} venv's")
    for case in documented:
        ratio, cpu = case.median_ms() / floor.median_ms(), case.cpu_ms() / floor.cpu_ms()
        rss = case.peak_rss_mb()
        verdict = "ok" if max(ratio, cpu) <= RATIO_TARGET and rss <= RSS_TARGET_MB else "MISSED"
        print(
            f"target {case.name}: wall {ratio:.2f}, CPU {cpu:.2f} <= {RATIO_TARGET}, RSS {rss:.1f} <= "
            f"{RSS_TARGET_MB} MB: {verdict}"
        )


def on_cpu_ns(pid: int) -> int:
    """Time the process itself (not its children) has run, from /proc/PID/schedstat."""
    with open(f"/proc/{pid}/schedstat") as handle:
        return int(handle.read().split()[0])


def stream_once(argv: list[str], env: dict[str, str]) -> tuple[list[float], int]:
    """Run a streaming command; per-line latency (s) and CPU ns used between first and last line."""
    child = subprocess.Popen(
        argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
    )
    assert child.stdout is not None
    latencies: list[float] = []
    cpu_at_first = cpu_at_last = 0
    for count, line in enumerate(child.stdout, start=1):
        received = time.time()
        latencies.append(received - float(line.split()[2]))
        if count == 1:
            cpu_at_first = on_cpu_ns(child.pid)
        if count == STREAM_LINES:
            cpu_at_last = on_cpu_ns(child.pid)
    child.wait()
    return latencies, cpu_at_last - cpu_at_first


def stream_bench(python: Path, root: Path, files: dict[str, Path]) -> None:
    command = "docker logs -f web"
    direct, _ = stream_once([str(files["stub"]), "logs", "-f", "web"], session_env(root))
    through, cpu_ns = stream_once(
        [str(python), "-I", "-m", "gatekeeper", "--policy", str(files["policy"])], session_env(root, command)
    )
    span = STREAM_INTERVAL_S * (STREAM_LINES - 1)
    print(f"\nstreaming '{command}' ({STREAM_LINES} lines, one per {STREAM_INTERVAL_S * 1000:.0f} ms):")
    print(f"  gatekeeper CPU while supervising: {cpu_ns / 1e6:.3f} ms over {span:.1f} s")
    for label, values in (("stub -> bench directly", direct), ("stub -> gatekeeper -> bench", through)):
        ms = sorted(v * 1000 for v in values)
        print(f"  line latency {label:28} median {statistics.median(ms):6.2f} ms, max {ms[-1]:6.2f} ms")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--venv", type=Path, default=Path("/tmp/gatekeeper-bench-venv"))
    parser.add_argument("--no-install", action="store_true", help="reuse the venv's gatekeeper as is")
    parser.add_argument("--against", type=Path, help="a venv whose gatekeeper runs beside, same rounds")
    options = parser.parse_args()
    python = prepare_venv(options.venv, install=not options.no_install)
    root = Path(tempfile.mkdtemp(prefix="gk-bench-"))
    try:
        files = prepare_root(root)
        toml_copy = root / "policy-uncompiled.toml"
        shutil.copyfile(files["policy"], toml_copy)
        compile_policy(python, files["policy"])
        cases = build_cases(python, root, files, toml_copy)
        if options.against is not None:
            cases += build_cases(options.against / "bin" / "python3", root, files, toml_copy, AGAINST)
        for case in cases:  # warm the page cache and __pycache__
            case.measure()
            case.runs.clear()
        for n in range(options.rounds):
            for case in cases[n % len(cases):] + cases[:n % len(cases)]:
                case.measure()
        python_version = sys.version.split()[0]
        print(f"{options.rounds} rounds, {os.cpu_count()} CPUs, Python {python_version}, venv {options.venv}")
        report(cases)
        stream_bench(python, root, files)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
