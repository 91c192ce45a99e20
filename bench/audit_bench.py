"""Bench: ``gatekeeper audit`` on a year of logs (1,000,000 records).

Generates a realistic log in a temporary directory (allowed and refused
commands, exit lines, three keys, a few clients, hostile strings, spread over
365 days), then times two runs as separate processes:

    gatekeeper audit --log LOG --summary
    gatekeeper audit --log LOG --denied --since DATE --json

and prints wall time and peak RSS (the largest process, as ``/usr/bin/time -v``
reports it; the summary may fork one worker per CPU). Targets: < 3 s and
< 200 MB each on a 2-core machine.

Then the terminal path: ``gatekeeper audit --log LOG --no-pager`` on a
pseudo-terminal of 80 columns (the listing an operator sees, every record):
time to the first row and peak RSS over the whole listing. Targets: first row
< 0.5 s, < 100 MB.

    python bench/audit_bench.py [--records N] [--keep DIR [--reuse]] [--runs N]

Each query runs ``--runs`` times (default 3); the best and the median wall
time are printed with the peak RSS, since a shared machine adds noise.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Final

RECORDS: Final = 1_000_000
WALL_TARGET_S: Final = 3.0
RSS_TARGET_MB: Final = 200.0
SINCE_DAYS: Final = 30
SEED: Final = 20261125

NAMES: Final = ("web", "db", "cache", "worker", "api", "proxy", "queue", "search", "ci-runner", "metrics")
IMAGES: Final = ("nginx:1.27", "postgres:16", "redis:7", "python:3.12-slim", "node:22", "alpine:3.20")
KEYS: Final = (
    "SHA256:Jm0d0Wm2Zb5k3Q9lVv8bq3h1oZ7x8f1k2L3m4N5o6P7",
    "SHA256:q8Rr7Ls1Zf0Yt2Uv3Wx4Yz5Ab6Cd7Ef8Gh9Ij0Kl1Mn",
    "SHA256:Zz9Yy8Xx7Ww6Vv5Uu4Tt3Ss2Rr1Qq0Pp9Oo8Nn7Mm6L",
)
CLIENTS: Final = ("10.20.0.7", "10.20.0.8", "192.168.1.44", "fd00::17")
ALLOWED: Final = (
    ("docker ps", "container ls"),
    ("docker ps -a --format '{{.Names}}'", "container ls"),
    ("docker images", "image ls"),
    ("docker logs --tail 200 {name}", "container logs"),
    ("docker logs -f --since 10m {name}", "container logs"),
    ("docker inspect {name}", "inspect"),
    ("docker restart {name}", "container restart"),
    ("docker stop {name}", "container stop"),
    ("docker start {name}", "container start"),
    ("docker rm -f {name}-old", "container rm"),
    ("docker pull {image}", "image pull"),
    ("docker build -t app/{name}:dev .", "buildx build"),
    ("docker run --rm -v /home/ai-worker/src:/src -w /src {image} make test", "container run"),
    ("docker compose up -d {name}", "compose up"),
    ("docker compose logs --tail 50 {name}", "compose logs"),
    ("docker system df", "system df"),
    ("docker network ls", "network ls"),
)
DENIED: Final = (
    ("docker exec -it {name} sh", "container exec", "blocked-subcommand"),
    ("docker cp {name}:/etc/shadow .", "container cp", "blocked-subcommand"),
    ("docker -H tcp://10.0.0.1:2375 ps", None, "global-option"),
    ("docker run --privileged -v /:/host {image} chroot /host", "container run", "flag-denied"),
    ("docker system dial-stdio", "system dial-stdio", "not-allowed"),
    ("docker ps; id", None, "shell-syntax"),
    ("docker save {image} -o /tmp/x.tar", "image save", "blocked-subcommand"),
    ("docker push registry.example.com/{name}", "image push", "blocked-subcommand"),
    ("docker commit {name} evil", "container commit", "blocked-subcommand"),
    ("docker compose exec {name} bash", "compose exec", "blocked-subcommand"),
    ("docker ps \x1b[2J\x1b]8;;http://evil\x07click\x1b]8;;\x07 [bold red]x", None, "control-character"),
    ("docker ps \u202egnp.exe", None, "format-character"),
)
DENY_SHARE: Final = 0.2  # one decision in five is a refusal


def random_record_pairs(count: int, rng: random.Random) -> Iterator[dict[str, object]]:
    """``count`` records (decisions and exit lines), oldest first over one year."""
    end = datetime.now(UTC)
    step = timedelta(days=365) / count
    moment = end - timedelta(days=365)
    produced = 0
    while produced < count:
        decision = random_decision(rng, moment)
        yield decision
        produced += 1
        moment += step
        if decision["decision"] == "allow" and produced < count:
            yield exit_record(decision, rng, moment)
            produced += 1
            moment += step


def random_decision(rng: random.Random, moment: datetime) -> dict[str, object]:
    fill = {"name": rng.choice(NAMES), "image": rng.choice(IMAGES)}
    common = {
        "v": 1,
        "ts": stamp(moment),
        "event": "decision",
        "session": f"{rng.getrandbits(64):016x}",
        "user": "ai-worker",
        "profile": "default",
        "client": f"{rng.choice(CLIENTS)} {rng.randrange(30000, 61000)} 10.20.0.1 22",
        "key": rng.choice(KEYS),
    }
    if rng.random() < DENY_SHARE:
        template, canonical, rule = rng.choice(DENIED)
        command = template.format(**fill)
        verdict = {"argv": None, "canonical": canonical, "decision": "deny", "rule": rule}
        return {**common, "cmd": command, **verdict, "reason": f"refused ({rule})", **policy()}
    template, canonical = rng.choice(ALLOWED)
    command = template.format(**fill)
    verdict = {"argv": command.split(), "canonical": canonical, "decision": "allow", "rule": "allowed"}
    return {**common, "cmd": command, **verdict, "reason": f"{canonical} is allowed", **policy()}


def policy() -> dict[str, object]:
    digest = "9f2c1a7be0d44f6a8b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a"
    return {"policy": {"path": "/etc/gatekeeper/policy.toml", "sha256": digest}}


def exit_record(decision: dict[str, object], rng: random.Random, moment: datetime) -> dict[str, object]:
    return {
        "v": 1,
        "ts": stamp(moment),
        "event": "exit",
        "session": decision["session"],
        "user": "ai-worker",
        "canonical": decision["canonical"],
        "exit": 0 if rng.random() < 0.93 else rng.choice((1, 125, 130)),
        "duration_ms": round(rng.lognormvariate(4, 1.2), 1),
    }


def stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def write_log(path: str, count: int) -> None:
    rng = random.Random(SEED)
    with open(path, "w", encoding="ascii") as out:
        for record in random_record_pairs(count, rng):
            out.write(json.dumps(record, ensure_ascii=True, separators=(",", ":")) + "\n")


# ---------------------------------------------------------------- timing


def measure(argv: list[str]) -> tuple[float, float, float]:
    """Wall seconds, peak RSS (MB) and CPU seconds (all processes) of one run."""
    helper = (
        "import resource, subprocess, sys, time\n"
        "start = time.perf_counter()\n"
        "done = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL)\n"
        "wall = time.perf_counter() - start\n"
        "usage = resource.getrusage(resource.RUSAGE_CHILDREN)\n"
        "print(wall, usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime, done.returncode)\n"
    )
    result = subprocess.run([sys.executable, "-c", helper, *argv], capture_output=True, text=True, check=True)
    wall, peak, cpu, status = result.stdout.split()
    if status != "0":
        raise SystemExit(f"{' '.join(argv)} exited {status}")
    return float(wall), float(peak), float(cpu)


def measure_runs(argv: list[str], runs: int) -> tuple[float, float, float, float]:
    """Best and median wall time, largest peak RSS and least CPU time over ``runs`` runs."""
    results = [measure(argv) for _ in range(runs)]
    walls = sorted(wall for wall, _, _ in results)
    peak = max(peak for _, peak, _ in results)
    return walls[0], walls[len(walls) // 2], peak, min(cpu for _, _, cpu in results)


FIRST_ROW_TARGET_S: Final = 0.5
TERMINAL_RSS_TARGET_MB: Final = 100.0


def measure_terminal(argv: list[str], columns: int = 80) -> tuple[float, float, float, int]:
    """On a pseudo-terminal: seconds to the first record row, total seconds, peak RSS (MB), rows."""
    import pty

    started = time.perf_counter()
    pid, fd = pty.fork()
    if pid == 0:  # the child: a terminal of `columns` columns
        import fcntl
        import struct
        import termios

        fcntl.ioctl(1, termios.TIOCSWINSZ, struct.pack("HHHH", 50, columns, 0, 0))
        os.environ["NO_COLOR"] = "1"
        os.execv(argv[0], argv)  # noqa: S606
    first_row = None
    newlines = 0
    tail = b""
    while True:
        try:
            chunk = os.read(fd, 1 << 16)
        except OSError:
            break
        if not chunk:
            break
        tail = (tail + chunk)[-2000:]
        newlines += chunk.count(b"\n")
        if first_row is None and newlines >= 2:  # the header, then the first record
            first_row = time.perf_counter() - started
    _, status, usage = os.wait4(pid, 0)
    total = time.perf_counter() - started
    os.close(fd)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(argv)} exited {os.waitstatus_to_exitcode(status)}: {tail!r}")
    return first_row or total, total, usage.ru_maxrss / 1024, newlines - 1


def report_terminal(path: str) -> bool:
    first, total, peak, rows = measure_terminal(audit_command("--log", path, "--no-pager"))
    ok = first < FIRST_ROW_TARGET_S and peak < TERMINAL_RSS_TARGET_MB
    verdict = "ok" if ok else "OVER TARGET"
    print(
        f"{'audit on a terminal (pty, 80 columns)':<44} first row {first:5.2f} s; all {rows} rows "
        f"{total:5.1f} s; peak RSS {peak:5.1f} MB  {verdict}"
    )
    return ok


def audit_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "gatekeeper", "audit", "--no-rotated", *args]


def report(label: str, best: float, median: float, peak: float, cpu: float) -> bool:
    ok = best < WALL_TARGET_S and peak < RSS_TARGET_MB
    verdict = "ok" if ok else "OVER TARGET"
    figures = f"wall best {best:5.2f} s, median {median:5.2f} s; CPU {cpu:5.2f} s; peak RSS {peak:5.1f} MB"
    print(f"{label:<44} {figures}  {verdict}")
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--records", type=int, default=RECORDS)
    parser.add_argument("--keep", metavar="DIR", help="write the log here and keep it")
    parser.add_argument("--reuse", action="store_true", help="with --keep: use the log already there")
    parser.add_argument("--runs", type=int, default=3, help="runs of each query (best and median shown)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        path = os.path.join(args.keep or scratch, "audit.jsonl")
        if not (args.reuse and os.path.exists(path)):
            generate(path, args.records)
        return run_bench(path, args.runs)


def generate(path: str, count: int) -> None:
    started = time.perf_counter()
    write_log(path, count)
    size_mb = os.path.getsize(path) / 1e6
    print(f"generated {count} records ({size_mb:.0f} MB) in {time.perf_counter() - started:.1f} s: {path}")


def run_bench(path: str, runs: int) -> int:
    since = (datetime.now(UTC) - timedelta(days=SINCE_DAYS)).strftime("%Y-%m-%d")
    queries = {
        "audit --summary": audit_command("--log", path, "--summary"),
        f"audit --denied --since {since} --json": audit_command(
            "--log", path, "--denied", "--since", since, "--json"
        ),
    }
    results = [report(label, *measure_runs(argv, runs)) for label, argv in queries.items()]
    results.append(report_terminal(path))
    load = ", ".join(f"{figure:.1f}" for figure in os.getloadavg())
    machine = f"cpus: {os.cpu_count()}, python {sys.version.split()[0]}, load average {load}"
    print(f"{machine}; targets < {WALL_TARGET_S} s and < {RSS_TARGET_MB} MB each "
          f"(terminal: first row < {FIRST_ROW_TARGET_S} s, < {TERMINAL_RSS_TARGET_MB} MB)")
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
