"""Bench: the docker CLI through `gatekeeper proxy` against the engine's socket directly, side by side.

Starts the end-to-end stack (tests/e2e/stack.py: the private dockerd) and the proxy as the
deployment runs it (the installed venv, `gatekeeper proxy --policy FILE`, the real decision,
audit records written), then times each command once each way per round, alternating the
order, so drift on the machine hits both alike:

    ps        docker ps
    run --rm  docker run --rm gk-busybox true
    inspect   docker inspect <owned container>
    logs      docker logs <owned container that wrote 100 MB>   (to /dev/null; MB/s)

and, without the CLI's own start-up in the figure, single API requests from Python over
each socket (GET /containers/json, GET /containers/ID/json; a fresh connection each).
Prints medians, the round-trip ratio proxy / direct (target <= 1.05) and the logs
throughput through the proxy as a share of direct (target >= 90%). Needs root and the lock:

    flock /tmp/gk-e2e.lock .venv/bin/python bench/proxy_bench.py [--rounds N] [--log-mb N]
"""

from __future__ import annotations

import argparse
import http.client
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Final

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.e2e.proxy_daemon import ProxyDaemon, running_proxy
from tests.e2e.stack import DOCKER_CONFIG_DIR, DOCKER_SOCKET, IMAGE, docker_client, running_stack

OWNED: Final = "gk-bench-proxy-own"
LOGGER: Final = "gk-bench-proxy-logs"
ROUND_TRIP_TARGET: Final = 1.05
THROUGHPUT_TARGET: Final = 0.90
LINE: Final = "x" * 99  # 100-byte log lines (with the newline), as an application might write


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


def prepare(proxy: ProxyDaemon, log_bytes: int) -> None:
    """An owned container to inspect, and one that wrote `log_bytes` of logs and exited."""
    for name in (OWNED, LOGGER):
        proxy.docker("rm", "-f", name)
    made = proxy.docker("run", "-d", "--name", OWNED, IMAGE, "sleep", "3600")
    if made.returncode != 0:
        raise SystemExit(f"owned container: {made.stderr}")
    script = f"yes {LINE} | head -c {log_bytes}"
    made = proxy.docker("run", "-d", "--name", LOGGER, IMAGE, "sh", "-c", script)
    if made.returncode != 0:
        raise SystemExit(f"log container: {made.stderr}")
    proxy.docker("wait", LOGGER, timeout=600)


def measure(proxy: ProxyDaemon, rounds: int, log_rounds: int) -> dict[str, tuple[list[float], list[float]]]:
    commands = {"ps": ["ps"], "run --rm": ["run", "--rm", IMAGE, "true"], "inspect": ["inspect", OWNED],
                "logs": ["logs", LOGGER]}
    times: dict[str, tuple[list[float], list[float]]] = {name: ([], []) for name in commands}
    sides = [("proxy", proxy.env()), ("direct", direct_env())]
    for n in range(rounds + 1):  # round 0 warms caches and is dropped
        for name, args in commands.items():
            if name == "logs" and n > log_rounds:
                continue
            for side, env in sides if n % 2 else sides[::-1]:
                elapsed = timed(args, env)
                if n:
                    times[name][0 if side == "proxy" else 1].append(elapsed)
    return times


class UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("docker", timeout=30)
        self.path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.connect(self.path)


def api_round_trip(path: str, target: str) -> float:
    started = time.perf_counter()
    conn = UnixConnection(path)
    conn.request("GET", target)
    response = conn.getresponse()
    response.read()
    conn.close()
    elapsed = time.perf_counter() - started
    if response.status != 200:
        raise SystemExit(f"GET {target} on {path}: {response.status}")
    return elapsed


def cli_pair(path: str) -> float:
    """What `docker ps` asks, on one kept-alive connection: HEAD /_ping, then the list."""
    started = time.perf_counter()
    conn = UnixConnection(path)
    for method, target in (("HEAD", "/_ping"), ("GET", "/v1.41/containers/json")):
        conn.request(method, target)
        response = conn.getresponse()
        response.read()
        if response.status != 200:
            raise SystemExit(f"{method} {target} on {path}: {response.status}")
    conn.close()
    return time.perf_counter() - started


def api_bench(proxy: ProxyDaemon, rounds: int) -> list[tuple[str, float, float]]:
    through = [cli_pair(str(proxy.socket)) for _ in range(rounds)]
    direct = [cli_pair(str(DOCKER_SOCKET)) for _ in range(rounds)]
    rows = [("HEAD /_ping + GET containers/json", statistics.median(through), statistics.median(direct))]
    for target in ("/v1.41/containers/json", f"/v1.41/containers/{OWNED}/json"):
        through: list[float] = []
        direct: list[float] = []
        for _ in range(rounds):
            through.append(api_round_trip(str(proxy.socket), target))
            direct.append(api_round_trip(str(DOCKER_SOCKET), target))
        rows.append((f"GET {target.split('/', 2)[2]}", statistics.median(through), statistics.median(direct)))
    return rows


def report(times: dict[str, tuple[list[float], list[float]]], api: list[tuple[str, float, float]],
           log_bytes: int) -> None:
    print("median wall ms of the whole `docker ...` command, alternating proxy/direct each round")
    print(f"{'command':10} {'proxy':>9} {'direct':>9} {'ratio':>7}")
    for name, (through, direct) in times.items():
        ratio = statistics.median(through) / statistics.median(direct)
        target = f"{'ok' if ratio <= ROUND_TRIP_TARGET else 'over'} (target {ROUND_TRIP_TARGET})"
        print(f"{name:10} {statistics.median(through) * 1000:9.1f} {statistics.median(direct) * 1000:9.1f} "
              f"{ratio:7.3f}  {target}  n={len(through)}")
    through, direct = times["logs"]
    mb = log_bytes / 1e6
    share = statistics.median(direct) / statistics.median(through)
    print(f"logs throughput: proxy {mb / statistics.median(through):.0f} MB/s, direct "
          f"{mb / statistics.median(direct):.0f} MB/s: {share:.1%} of direct "
          f"({'ok' if share >= THROUGHPUT_TARGET else 'under'}; target {THROUGHPUT_TARGET:.0%})")
    print("API requests from Python (no CLI start-up), median ms, a fresh connection each row:")
    for name, through_one, direct_one in api:
        print(f"  {name:38} proxy {through_one * 1000:6.2f}  direct {direct_one * 1000:6.2f}  "
              f"(+{(through_one - direct_one) * 1000:.2f} ms)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--log-rounds", type=int, default=4, help="rounds of the 100 MB logs (slow)")
    parser.add_argument("--log-mb", type=int, default=100)
    parser.add_argument("--api-rounds", type=int, default=200)
    options = parser.parse_args()
    log_bytes = options.log_mb * 1_000_000
    with running_stack() as stack, running_proxy() as proxy:
        try:
            prepare(proxy, log_bytes)
            times = measure(proxy, options.rounds, options.log_rounds)
            report(times, api_bench(proxy, options.api_rounds), log_bytes)
        finally:
            stack.docker("rm", "-f", OWNED, LOGGER, check=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
