"""Bench: the ssh round trip through gatekeeper against plain ssh + docker, side by side.

Starts the end-to-end stack (tests/e2e/stack.py: real sshd, real dockerd, the
installed gatekeeper as ForceCommand) and, for this bench only, a plain docker
user: an account in the engine's group with its own sshd (same host key, same
Debian main config, no ForceCommand) that runs `docker ...` itself. Each round
runs every command once through each, alternating, so drift on the machine
hits both alike:

    ps        docker ps
    run --rm  docker run --rm gk-busybox true
    inspect   docker inspect --type container <owned container>
    logs      docker logs <owned container>
    stop      docker stop -t 0 <owned container>   (started again, untimed, by root)

The owned container is made by the agent through gatekeeper, so `inspect`,
`logs` and `stop` go through the [scope] owned rail (the engine question).
It prints the median wall time of each and the ratio gatekeeper / plain. First
it times the engine question alone (who owns the container), asked over the
API socket (gatekeeper.engine_api) and through the docker CLI, alternating.
Needs root and the e2e lock (it starts the stack):

    flock /tmp/gk-e2e.lock /work/.../.venv/bin/python bench/ssh_bench.py [--rounds N]
"""

from __future__ import annotations

import argparse
import contextlib
import pwd
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Final

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.e2e.stack import (
    DOCKER_CONFIG_DIR,
    DOCKER_GROUP,
    DOCKER_HOST,
    IMAGE,
    Stack,
    docker_client,
    free_port,
    running_stack,
    start_sshd,
    write_authorized_keys,
)

PLAIN_USER: Final = "gk-bench-plain"
OWNED: Final = "gk-bench-own"
COMMANDS: Final = (
    ("ps", "docker ps"),
    ("run --rm", f"docker run --rm {IMAGE} true"),
    ("inspect", f"docker inspect --type container {OWNED}"),
    ("logs", f"docker logs {OWNED}"),
    ("stop", f"docker stop -t 0 {OWNED}"),
)
TARGET: Final = 1.05


@contextlib.contextmanager
def plain_account(home: Path) -> Iterator[None]:
    """A docker user with no ForceCommand: the bench's yardstick, removed afterwards."""
    try:
        pwd.getpwnam(PLAIN_USER)
        existed = True
    except KeyError:
        existed = False
        subprocess.run(["useradd", "-M", "-d", str(home), "-s", "/bin/sh", "-G", DOCKER_GROUP, PLAIN_USER],
                       check=True)
    try:
        yield
    finally:
        if not existed:
            subprocess.run(["userdel", PLAIN_USER], check=False)


def plain_snippet(workdir: Path, keys: Path) -> Path:
    """Keys from a root-owned file; the plain user's docker talks to the stack's engine."""
    snippet = workdir / "bench-plain.conf"
    snippet.write_text(
        f"Match User {PLAIN_USER}\n"
        f"\tAuthorizedKeysFile {keys.parent}/%u\n"
        f"\tSetEnv DOCKER_HOST={DOCKER_HOST} DOCKER_CONFIG={DOCKER_CONFIG_DIR}\n"
        "Match all\n"
    )
    return snippet


def plain_ssh(stack: Stack, port: int, command: str) -> list[str]:
    argv = stack.ssh_argv(command.replace("docker ", f"{docker_client()} ", 1), port=port)
    return [*argv[:-2], f"{PLAIN_USER}@127.0.0.1", argv[-1]]


def timed(argv: list[str]) -> float:
    started = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, timeout=120, check=False)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{argv[-1]!r} failed ({done.returncode}): {done.stderr.decode()[:300]}")
    return elapsed


def measure(stack: Stack, port: int, rounds: int) -> dict[str, tuple[list[float], list[float]]]:
    times: dict[str, tuple[list[float], list[float]]] = {name: ([], []) for name, _ in COMMANDS}
    for n in range(rounds + 1):  # round 0 warms caches and is dropped
        for name, command in COMMANDS:
            pair = [("gk", stack.ssh_argv(command)), ("plain", plain_ssh(stack, port, command))]
            for side, argv in pair if n % 2 else pair[::-1]:
                elapsed = timed(argv)
                if name == "stop":
                    stack.docker("start", OWNED)
                if n:
                    times[name][0 if side == "gk" else 1].append(elapsed)
    return times


def query_bench(rounds: int) -> None:
    from types import SimpleNamespace

    from gatekeeper.engine_objects import QUERY_FORMATS
    from gatekeeper.worlds import RealWorld

    world = RealWorld()
    policy = SimpleNamespace(binary=str(docker_client()), host=DOCKER_HOST, workdir="/",
                             config_dir=str(DOCKER_CONFIG_DIR), state_dir="/run/gk-e2e/state",
                             settings={})
    args = ["container", "inspect", "--format", QUERY_FORMATS["container"], "--", OWNED]
    api: list[float] = []
    cli: list[float] = []
    for _ in range(rounds):
        for ask, into in ((world.run_docker, api), (world.run_docker_cli, cli)):
            started = time.perf_counter()
            status, _, err = ask(policy, args)
            into.append(time.perf_counter() - started)
            if status != 0:
                raise SystemExit(f"owner query failed: {err.decode()[:200]}")
    print(f"owner query, median of {rounds}: API socket {statistics.median(api) * 1000:.2f} ms, "
          f"docker CLI {statistics.median(cli) * 1000:.2f} ms")


def report(times: dict[str, tuple[list[float], list[float]]], rounds: int) -> None:
    print(f"{rounds} rounds, alternating; median wall ms of the whole `ssh ... docker ...` round trip")
    print(f"{'command':10} {'gatekeeper':>11} {'plain':>8} {'ratio':>7}")
    for name, (gk, plain) in times.items():
        ratio = statistics.median(gk) / statistics.median(plain)
        verdict = "ok" if ratio <= TARGET else "over"
        print(f"{name:10} {statistics.median(gk) * 1000:11.1f} {statistics.median(plain) * 1000:8.1f} "
              f"{ratio:7.3f}  {verdict} (target {TARGET})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    options = parser.parse_args()
    with running_stack() as stack:
        home = stack.workdir / "bench-home"
        home.mkdir(mode=0o755)
        with plain_account(home):
            shutil.chown(home, PLAIN_USER)
            keys = stack.workdir / "bench-keys" / PLAIN_USER
            write_authorized_keys(keys, Path(f"{stack.client_key}.pub").read_text())
            port = free_port()
            daemon = start_sshd("sshd-bench-plain", stack.workdir, port, plain_snippet(stack.workdir, keys),
                                stack.workdir / "host_ed25519")
            try:
                made = stack.ssh(f"docker run -d --name {OWNED} {IMAGE} sh -c 'echo hello; sleep 3600'")
                if made.returncode != 0:
                    raise SystemExit(f"the agent's container: {made.stderr.decode()}")
                query_bench(options.rounds * 2)
                report(measure(stack, port, options.rounds), options.rounds)
            finally:
                stack.docker("rm", "-f", OWNED, check=False)
                daemon.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
