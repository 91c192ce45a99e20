"""Bench: the docker CLI through `gatekeeper proxy` against the engine's socket directly, side by side.

Starts the end-to-end stack (tests/e2e/stack.py: the private dockerd) and the proxy as the
deployment runs it (the installed venv, `gatekeeper proxy --policy FILE`, the real decision,
audit records written), then times each command once each way per round:

    ps        docker ps
    run --rm  docker run --rm gk-busybox true
    inspect   docker inspect <owned container>
    logs      docker logs <owned container that wrote 100 MB>   (to /dev/null; MB/s)

Four sides per round: through the proxy, direct, direct again, and through a bare hop. The
third is the A/A control: the same command on the same socket, so its ratio to direct is what
this machine's noise alone makes of a ratio in this run. The fourth is the floor of any proxy
here: a relay in the installed venv's interpreter and event loop (uvloop) that copies bytes
between the client and a fresh engine connection and reads, checks and records nothing, so
its ratio is what one more process in the path costs on this machine before the proxy does
anything. With --against REV a fifth side: the proxy of an earlier commit (its gatekeeper
package from `git archive REV`, run by the same interpreter), so before and after are measured
in the same rounds. The order rotates through all permutations, round by round, so drift and
order effects hit every side alike. Reported per
command: medians, the ratio of medians proxy/direct (target <= 1.05; throughput >= 90% of
direct for logs), the median of the per-round ratios (each round's proxy run against the direct
run next to it), the same two for the A/A control, and the CPU time the proxy process spent per
command (all its threads, from /proc/PID/task/*/schedstat: what the proxy costs whatever the
load on the machine).

Then, without the CLI's own start-up in the figure, API requests from Python over each socket,
interleaved the same way: what `docker ps` sends (HEAD /_ping, then GET /containers/json on one
kept-alive connection), and single GETs on a fresh connection each. Needs root and the lock:

    flock /tmp/gk-e2e.lock .venv/bin/python bench/proxy_bench.py [--rounds N] [--log-rounds N] [--against REV]
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import itertools
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Final

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.proxy_cpu import cpu_ns
from tests.e2e.proxy_daemon import ProxyDaemon, running_proxy
from tests.e2e.stack import (
    DOCKER_CONFIG_DIR,
    DOCKER_SOCKET,
    IMAGE,
    RUN_DIR,
    VENV,
    docker_client,
    running_stack,
)

OWNED: Final = "ai-bench-proxy-own"  # names given start with the [names] prefix
LOGGER: Final = "ai-bench-proxy-logs"
ROUND_TRIP_TARGET: Final = 1.05
THROUGHPUT_TARGET: Final = 0.90
LINE: Final = "x" * 99  # 100-byte log lines (with the newline), as an application might write

Times = dict[str, list[list[float]]]  # command -> per side, one time per round (same index = same round)
PROXY, DIRECT, AGAIN, HOP, BEFORE = range(5)  # the sides, in this order (BEFORE with --against)

# The bare hop: each client connection gets its own engine connection and bytes are copied
# both ways as they come; nothing is parsed, checked or recorded (the floor of any proxy).
HOP_RELAY: Final = r"""
import asyncio, os, sys
listen, upstream = sys.argv[1], sys.argv[2]
class Engine(asyncio.Protocol):
    def __init__(self, client): self.client = client
    def data_received(self, data): self.client.write(data)
    def connection_lost(self, error): self.client.close()
class Client(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport, self.engine, self.early = transport, None, []
        asyncio.get_running_loop().create_task(self.connect())
    async def connect(self):
        try:
            self.engine, _ = await asyncio.get_running_loop().create_unix_connection(
                lambda: Engine(self.transport), upstream)
        except OSError:
            self.transport.close()
            return
        for data in self.early:
            self.engine.write(data)
        self.early = None
    def data_received(self, data):
        if self.engine is None:
            self.early.append(data)
        else:
            self.engine.write(data)
    def connection_lost(self, error):
        if self.engine is not None:
            self.engine.close()
async def main():
    server = await asyncio.get_running_loop().create_unix_server(Client, listen)
    os.chmod(listen, 0o600)
    await server.serve_forever()
try:
    import uvloop
    loop = uvloop.new_event_loop()
except ImportError:
    loop = asyncio.new_event_loop()
loop.run_until_complete(main())
"""


def direct_env() -> dict[str, str]:
    return {"PATH": "/usr/bin:/bin", "DOCKER_HOST": f"unix://{DOCKER_SOCKET}",
            "DOCKER_CONFIG": str(DOCKER_CONFIG_DIR), "HOME": "/root"}


def timed(args: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    done = subprocess.run([str(docker_client()), *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                          env=env, timeout=600, check=False)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"docker {' '.join(args)} failed ({done.returncode}): {done.stderr.decode()[:300]}")
    return elapsed


@contextlib.contextmanager
def running_hop() -> Iterator[Path]:
    """The bare hop (HOP_RELAY) on a socket of its own in front of the stack's engine."""
    directory = Path(tempfile.mkdtemp(prefix="hop-", dir=RUN_DIR))
    listen = directory / "docker.sock"
    process = subprocess.Popen([str(VENV / "bin" / "python3"), "-I", "-c", HOP_RELAY, str(listen),
                                str(DOCKER_SOCKET)])
    try:
        deadline = time.monotonic() + 20
        while not listen.exists():
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit("the bare hop did not start")
            time.sleep(0.05)
        yield listen
    finally:
        process.terminate()
        process.wait(10)
        listen.unlink(missing_ok=True)
        directory.rmdir()


def hop_env(socket_path: Path) -> dict[str, str]:
    return {**direct_env(), "DOCKER_HOST": f"unix://{socket_path}"}


def cpu_seconds(pid: int) -> float:
    """CPU time of every thread of `pid` so far (bench/proxy_cpu.py's cpu_ns, in seconds)."""
    return cpu_ns(pid) / 1e9


def prepare(proxy: ProxyDaemon, log_bytes: int) -> None:
    """An owned container to inspect, and one that wrote `log_bytes` of logs and exited."""
    for name in (OWNED, LOGGER):
        proxy.docker("rm", "-f", name)
    made = proxy.docker("run", "-d", "--name", OWNED, IMAGE, "sleep", "3600")
    if made.returncode != 0:
        raise SystemExit(f"owned container: {made.stderr}")
    script = f"yes {LINE} | head -c {log_bytes}"  # (0: an empty log; logs are not measured)
    made = proxy.docker("run", "-d", "--name", LOGGER, IMAGE, "sh", "-c", script)
    if made.returncode != 0:
        raise SystemExit(f"log container: {made.stderr}")
    proxy.docker("wait", LOGGER, timeout=600)


def interleaved(rounds: int, sides: list[Callable[[], float]],
                spent: dict[int, tuple[int, list[float]]] | None = None) -> list[list[float]]:
    """`rounds` times each side (plus a dropped warm-up round), the order rotating through every
    permutation; `spent` maps a side to (a proxy's pid, the CPU seconds it spent in each run of that side)."""
    times: list[list[float]] = [[] for _ in sides]
    orders = list(itertools.permutations(range(len(sides))))
    spent = spent or {}
    for n in range(rounds + 1):
        for side in orders[(n * 7) % len(orders)]:  # (7: coprime to 6 and 24, every order comes)
            pid, cpu = spent.get(side, (0, []))
            before = cpu_seconds(pid) if pid else 0.0
            elapsed = sides[side]()
            if n:
                times[side].append(elapsed)
                if pid:
                    cpu.append(cpu_seconds(pid) - before)
    return times


def measure(proxies: list[ProxyDaemon], hop: Path, rounds: int, log_rounds: int,
            only: set[str]) -> tuple[Times, dict[str, list[float]]]:
    """Sides: proxies[0], direct, direct again, the bare hop, then proxies[1] (--against) if any."""
    commands = {"ps": ["ps"], "run --rm": ["run", "--rm", IMAGE, "true"], "inspect": ["inspect", OWNED],
                "logs": ["logs", LOGGER]}
    envs = [proxies[0].env(), direct_env(), direct_env(), hop_env(hop), *(p.env() for p in proxies[1:])]
    proxy_sides = [PROXY, *range(BEFORE, len(envs))]
    times: Times = {}
    cpu: dict[str, list[float]] = {}
    for name, args in commands.items():
        if only and name not in only:
            continue
        spent = {side: (proxy.process.pid, []) for side, proxy in zip(proxy_sides, proxies, strict=True)}
        count = log_rounds if name == "logs" else rounds // 4 if name == "run --rm" else rounds
        sides = [lambda env=env, args=args: timed(args, env) for env in envs]  # type: ignore[misc]
        times[name] = interleaved(count, sides, spent)  # type: ignore[arg-type]  # lists filled in place
        cpu[name] = [statistics.median(spent[side][1]) for side in proxy_sides]
    return times, cpu


class UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("docker", timeout=30)
        self.path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.connect(self.path)


def requests(path: str, sequence: tuple[tuple[str, str], ...]) -> float:
    """The requests one after another on one new kept-alive connection; the time for all."""
    started = time.perf_counter()
    conn = UnixConnection(path)
    for method, target in sequence:
        conn.request(method, target)
        response = conn.getresponse()
        response.read()
        if response.status != 200:
            raise SystemExit(f"{method} {target} on {path}: {response.status}")
    conn.close()
    return time.perf_counter() - started


def api_bench(proxies: list[ProxyDaemon], hop: Path, rounds: int) -> Times:
    cases = {
        "HEAD /_ping + GET containers/json": (("HEAD", "/_ping"), ("GET", "/v1.41/containers/json")),
        "GET containers/json": (("GET", "/v1.41/containers/json"),),
        "GET containers/NAME/json": (("GET", f"/v1.41/containers/{OWNED}/json"),),
    }
    paths = [str(proxies[0].socket), str(DOCKER_SOCKET), str(DOCKER_SOCKET), str(hop)]
    paths += [str(proxy.socket) for proxy in proxies[1:]]
    times: Times = {}
    for name, sequence in cases.items():
        sides = [lambda path=path, sequence=sequence: requests(path, sequence) for path in paths]  # type: ignore[misc]
        times[name] = interleaved(rounds, sides)
    return times


def ratios(sides: list[list[float]], against: int) -> tuple[float, float]:
    """(ratio of medians, median of per-round ratios) of side `against` to direct."""
    of_medians = statistics.median(sides[against]) / statistics.median(sides[DIRECT])
    per_round = statistics.median(a / b for a, b in zip(sides[against], sides[DIRECT], strict=True))
    return of_medians, per_round


def report(times: Times, cpu: dict[str, list[float]], api: Times, log_bytes: int) -> None:
    print("docker CLI, whole command, ms: medians; ratio of medians and median of per-round ratios")
    against = any(len(sides) > BEFORE for sides in times.values())
    print(f"{'command':9} {'proxy':>8} {'direct':>8} {'again':>8} {'hop':>8} "
          + (f"{'before':>8} " if against else "")
          + f"{'ratio':>6} {'paired':>6}   {'A/A':>6} {'paired':>6}   {'hop':>6} {'paired':>6}  "
          + (f"{'before':>6} {'paired':>6}  " if against else "") + f"{'proxy CPU':>9}  verdict")
    for name, sides in times.items():
        ratio, paired = ratios(sides, PROXY)
        control, control_paired = ratios(sides, AGAIN)
        medians = " ".join(f"{statistics.median(side) * 1000:8.1f}" for side in sides)
        hop = "   {:6.3f} {:6.3f}".format(*ratios(sides, HOP))
        before = "  {:6.3f} {:6.3f}".format(*ratios(sides, BEFORE)) if against else ""
        if name == "logs":
            share = 1 / ratio
            verdict = (f"throughput {share:.1%} of direct (A/A {1 / control:.1%}, "
                       f"hop {1 / ratios(sides, HOP)[0]:.1%}): "
                       f"{'ok' if share >= THROUGHPUT_TARGET else 'under'} (target {THROUGHPUT_TARGET:.0%})")
        else:
            verdict = f"{'ok' if ratio <= ROUND_TRIP_TARGET else 'over'} (target {ROUND_TRIP_TARGET})"
        spent = "/".join(f"{seconds * 1000:.2f}" for seconds in cpu[name])
        print(f"{name:9} {medians} {ratio:6.3f} {paired:6.3f}   {control:6.3f} {control_paired:6.3f}"
              f"{hop}{before}  {spent}ms  {verdict}  n={len(sides[0])}")
    if "logs" in times:
        mb = log_bytes / 1e6
        print(f"logs: proxy {mb / statistics.median(times['logs'][PROXY]):.1f} MB/s, direct "
              f"{mb / statistics.median(times['logs'][DIRECT]):.1f} MB/s")
    print("API requests from Python (no CLI start-up), ms, a new connection each:")
    print(f"  {'requests':36} {'proxy':>7} {'direct':>7} {'again':>7} {'hop':>7} {'+proxy':>7} {'+again':>7} "
          f"{'+hop':>7} {'+before':>7}")
    for name, sides in api.items():
        proxy_ms, direct_ms, again_ms, hop_ms, *before_ms = (statistics.median(side) * 1000 for side in sides)
        before = f"{before_ms[0] - direct_ms:+7.2f}" if before_ms else ""
        print(f"  {name:36} {proxy_ms:7.2f} {direct_ms:7.2f} {again_ms:7.2f} {hop_ms:7.2f} "
              f"{proxy_ms - direct_ms:+7.2f} {again_ms - direct_ms:+7.2f} {hop_ms - direct_ms:+7.2f} "
              f"{before}")


def earlier_package(rev: str, started: contextlib.ExitStack) -> Path:
    """A directory holding commit `rev`'s gatekeeper package (removed at the end)."""
    directory = Path(started.enter_context(tempfile.TemporaryDirectory(prefix="gk-bench-against-")))
    repo = Path(__file__).resolve().parent.parent
    archive = subprocess.run(["git", "-C", str(repo), "archive", rev, "gatekeeper"], capture_output=True,
                             check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(directory)], input=archive, check=True)
    directory.chmod(0o755)  # (the proxy runs as root; the stack's checks want no group/other write)
    return directory


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=120,
                        help="rounds of ps and inspect (run --rm: a quarter)")
    parser.add_argument("--log-rounds", type=int, default=6, help="rounds of the 100 MB logs (slow)")
    parser.add_argument("--log-mb", type=int, default=100)
    parser.add_argument("--api-rounds", type=int, default=300)
    parser.add_argument("--only", action="append", default=[], help="only this command (repeatable)")
    parser.add_argument("--against", metavar="REV", help="a fourth side: the proxy of commit REV")
    options = parser.parse_args()
    log_bytes = options.log_mb * 1_000_000
    print(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, load average {os.getloadavg()[0]:.1f}, "
          f"{os.cpu_count()} CPUs")
    with contextlib.ExitStack() as started:
        stack = started.enter_context(running_stack())
        proxies = [started.enter_context(running_proxy())]
        hop = started.enter_context(running_hop())
        if options.against:
            proxies.append(started.enter_context(running_proxy(earlier_package(options.against, started))))
            print(f"proxy CPU: this tree's/{options.against}'s; 'before': {options.against}'s proxy")
        try:
            prepare(proxies[0], log_bytes if not options.only or "logs" in options.only else 0)
            times, cpu = measure(proxies, hop, options.rounds, options.log_rounds, set(options.only))
            api = api_bench(proxies, hop, options.api_rounds)
            report(times, cpu, api, log_bytes)
        finally:
            stack.docker("rm", "-f", OWNED, LOGGER, check=False)
    print(f"load average at the end {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
