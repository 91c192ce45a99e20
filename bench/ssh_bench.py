"""Bench: the ssh round trip through gatekeeper against plain ssh + docker, side by side.

Starts the end-to-end stack (tests/e2e/stack.py: real sshd, real dockerd, the
installed gatekeeper as ForceCommand, the entry script /opt/gatekeeper/bin/gatekeeper-ssh)
and, for this bench only, a plain docker user: an account in the engine's group
with its own sshd (same host key, same Debian main config, no ForceCommand)
that runs `docker ...` itself. The commands:

    ps        docker ps
    run --rm  docker run --rm gk-busybox true
    inspect   docker inspect --type container <owned container>
    logs      docker logs <owned container>
    stop      docker stop -t 0 <owned container>   (started again, untimed, by root)

Each is run through four sides per round, in an order that rotates every round
(ABCD, BCDA, ...), so drift on a shared machine hits all sides alike:

    gatekeeper   the agent's ssh: the ForceCommand decides, records, runs docker
    plain        the plain user's ssh + docker
    plain again  the same once more, through a second sshd of the same config: the A/A
                 control, plain against plain; its ratio is the noise floor of the run (a
                 ratio inside it is no difference at all). Its own sshd because two sshd
                 processes of one config differed by up to 8 ms a session (one-off offsets,
                 bench/ssh_session_bench.py), which one shared sshd would hide
    plain + py   the plain user's `python3 -I -c pass; docker ...`: what starting
                 the bare interpreter alone adds, the least any Python ForceCommand costs

The two ssh sides differ only in the ForceCommand, the account and the drop-in's sshd settings:
the same sshd binary, Debian main config, PAM stack, host key, ed25519 client key and LogLevel
(the plain sshd's snippet holds only its AuthorizedKeysFile and docker's variables). The account
and the drop-in cost nothing measurable (bench/ssh_session_bench.py: the agent's session under
the drop-in 0.999x the plain one, CPU equal to 0.04 ms; docs/performance.md), so what
gatekeeper's side costs over plain's is the ForceCommand's.

The owned container is made by the agent through gatekeeper, so `inspect`,
`logs` and `stop` go through the [scope] owned rail (the engine question).
It prints, per command and side, the median and the minimum wall time and each
one's ratio to plain's, and the median of the per-round ratios. First it times
the engine question alone (who owns the container), asked over the API socket
(gatekeeper.engine_api) and through the docker CLI, alternating; last, the same
commands without ssh (the entry script as the agent against docker as the plain
user, alternating): the ForceCommand's own cost in ms, which is all that differs
between the two ssh sides.

`--layout` chooses the stack's layout (tests/e2e/stack.py): `cli-alone` (the
default: gatekeeper's ForceCommand on the engine's socket, as plain docker is:
issue 16's comparison) or `cli+proxy` (the deployment: docker through
`gatekeeper proxy` as well, whose own cost bench/proxy_bench.py measures).
Needs root and the e2e lock (it starts the stack):

    flock /tmp/gk-e2e.lock /work/.../.venv/bin/python bench/ssh_bench.py [--rounds N] [--layout L]

`--against VENV` adds a fifth side: the agent's ssh to an sshd of its own whose ForceCommand is
VENV/bin/gatekeeper-ssh (say, an earlier commit installed with `git archive` and
`gatekeeper install-entry`), same policy, proxy and engine: before and after in the same rounds.

`--resident` adds the resident ForceCommand (the default) (gatekeeper/resident.py): its own sshds on the
drop-in pointed at gatekeeper-ssh-resident, a `gatekeeper resident` pool started for the run; it is
a side of the direct bench too (the client against the entry script, without ssh).

`--forking-shell` adds the same gatekeeper on an sshd whose ForceCommand lacks the drop-in's
`exec ` (the login shell forks for it and waits): what that word saves, in the same rounds.

Each ssh side runs on a pool of sshds of its own (`--sshds K`, default 3, all of one config per
side), round n on the pool's sshd n % K, and every pool is started afresh every `--restart-every B`
rounds (default 10): sshd processes of identical settings differ by up to 8 ms a session, one-off
offsets that come and go with the process (bench/ssh_session_bench.py); one sshd per side would put
its offset on that side's whole run, a pool spread over K x (rounds / B) processes averages them out.
"plain + py" shares plain's pool (its sshd in a round is plain's); the A/A side has its own pool. The
report ends with each side's sshd offsets (per process: median of its round trips minus the side's
median, over all commands), the spread this averaging removes.

`--trace N` adds N rounds under perf (bench/process_trace.py, root): for each command and
side, when the session's shell, the ForceCommand and docker were exec'd and exited, in ms
after the ssh client started, and gatekeeper's minus plain's per stretch of the session.
"""

from __future__ import annotations

import argparse
import contextlib
import pwd
import shlex
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
    AGENT,
    AGENT_HOME,
    CLI_ALONE,
    DOCKER_CONFIG_DIR,
    DOCKER_GROUP,
    DOCKER_HOST,
    IMAGE,
    LAYERED,
    POLICY,
    RESIDENT_CLIENT,
    SNIPPET,
    SYSTEM_DROP_INS,
    VENV,
    Daemon,
    Stack,
    docker_client,
    force,
    free_port,
    running_stack,
    start_resident_pool,
    start_sshd,
    stop_resident_pool,
    switch_mode,
    use_resident_client,
    write_authorized_keys,
)

PLAIN_USER: Final = "gk-bench-plain"
OWNED: Final = "ai-bench-own"  # names given start with the [names] prefix
COMMANDS: Final = (
    ("ps", "docker ps"),
    ("run --rm", f"docker run --rm {IMAGE} true"),
    ("inspect", f"docker inspect --type container {OWNED}"),
    ("logs", f"docker logs {OWNED}"),
    ("stop", f"docker stop -t 0 {OWNED}"),
)
TARGET: Final = 1.05
GK, PLAIN, PLAIN_AGAIN, PLAIN_PY = "gatekeeper", "plain", "plain again", "plain + py"
AGAINST: Final = "gk --against"
FORKING: Final = "gk no exec"
RESIDENT_SIDE: Final = "gk resident"
SIDES: Final = (GK, PLAIN, PLAIN_AGAIN, PLAIN_PY)
BARE_INTERPRETER: Final = "/usr/bin/python3 -I -c pass; "

Times = dict[str, dict[str, list[float]]]  # command -> side -> seconds, one per round


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


def against_snippet(workdir: Path, venv: Path, *, shell_exec: bool = True) -> Path:
    """The drop-in with its ForceCommand pointing at another venv's entry script (--against),
    or at the same one without `exec` (--forking-shell: the login shell forks and waits)."""
    target = workdir / ("bench-against.conf" if shell_exec else "bench-forking.conf")
    shutil.copyfile(SNIPPET, target)
    force(target, venv / "bin" / "gatekeeper-ssh", shell_exec=shell_exec)
    return target


class Pool:
    """K sshds of one config for one side: round n goes to sshd n % K; `restart` starts them all
    afresh (new processes, new ports), so a per-process offset lands on a few rounds only."""

    def __init__(self, name: str, workdir: Path, snippet: Path, host_key: Path, size: int) -> None:
        self.name, self.workdir, self.snippet, self.host_key = name, workdir, snippet, host_key
        self.size = size
        self.daemons: list[Daemon] = []
        self.ports: list[int] = []
        self.generation = 0

    def start(self) -> None:
        for slot in range(self.size):
            port = free_port()
            name = f"{self.name}-{slot}"
            self.daemons.append(start_sshd(name, self.workdir, port, self.snippet, self.host_key))
            self.ports.append(port)

    def stop(self) -> None:
        for daemon in self.daemons:
            daemon.stop()
        self.daemons, self.ports = [], []

    def restart(self) -> None:
        self.stop()
        self.generation += 1
        self.start()

    def slot(self, n: int) -> int:
        return n % self.size

    def port(self, n: int) -> int:
        return self.ports[self.slot(n)]

    def process(self, n: int) -> str:
        """Which sshd process served round n (for the offsets report)."""
        return f"{self.generation}.{self.slot(n)}"

    def pid(self, n: int) -> int:
        process = self.daemons[self.slot(n)].process
        assert process is not None
        return process.pid


POOLS: dict[str, Pool] = {}  # side -> its sshds (plain + py uses plain's)


def pool_of(side: str) -> Pool:
    return POOLS[PLAIN if side == PLAIN_PY else side]


def side_argv(stack: Stack, n: int, side: str, command: str) -> list[str]:
    port = pool_of(side).port(n)
    if side in (GK, AGAINST, FORKING, RESIDENT_SIDE):
        return stack.ssh_argv(command, port=port)
    return plain_ssh(stack, port, BARE_INTERPRETER + command if side == PLAIN_PY else command)


def timed(argv: list[str]) -> float:
    started = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, timeout=120, check=False)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{argv[-1]!r} failed ({done.returncode}): {done.stderr.decode()[:300]}")
    return elapsed


Served = dict[str, dict[str, list[str]]]  # command -> side -> which sshd process, one per round


def measure(stack: Stack, rounds: int, sides: tuple[str, ...] = SIDES,
            restart_every: int = 0) -> tuple[Times, Served]:
    times: Times = {name: {side: [] for side in sides} for name, _ in COMMANDS}
    served: Served = {name: {side: [] for side in sides} for name, _ in COMMANDS}
    for n in range(rounds + 1):  # round 0 warms caches and is dropped
        if n > 1 and restart_every and (n - 1) % restart_every == 0:
            for pool in POOLS.values():
                pool.restart()
        order = sides[n % len(sides):] + sides[:n % len(sides)]
        for name, command in COMMANDS:
            for side in order:
                elapsed = timed(side_argv(stack, n, side, command))
                if name == "stop":
                    stack.docker("start", OWNED)
                if n:
                    times[name][side].append(elapsed)
                    served[name][side].append(pool_of(side).process(n))
    return times, served


def sshd_offsets(times: Times, served: Served) -> None:
    """Per side, each sshd process's median of (round trip - the side's median for that command)
    over all its round trips: the per-process offsets the pools spread over the run."""
    print("\nsshd offsets, ms (per process: median of its round trips minus its side's median), per side:")
    for side in next(iter(times.values())):
        spans: dict[str, list[float]] = {}
        for name, sides in times.items():
            middle = statistics.median(sides[side])
            for value, process in zip(sides[side], served[name][side], strict=True):
                spans.setdefault(process, []).append((value - middle) * 1000)
        offsets = sorted(statistics.median(values) for values in spans.values())
        print(f"  {side:12} {len(offsets)} processes: " + " ".join(f"{o:+.1f}" for o in offsets))


def direct_argv(side: str, command: str) -> list[str]:
    """The command without ssh: the entry script as the agent (the ForceCommand, as sshd would
    start it), or docker as the plain user. Their difference is what the ForceCommand itself
    costs in this stack (start, decision, engine questions, the records, supervising docker)."""
    if side in (GK, RESIDENT_SIDE):
        user, env = AGENT, [f"HOME={AGENT_HOME}", "SSH_CONNECTION=127.0.0.1 40000 127.0.0.1 22",
                            f"SSH_ORIGINAL_COMMAND={command}"]
        entry = RESIDENT_CLIENT if side == RESIDENT_SIDE else VENV / "bin" / "gatekeeper-ssh"
        argv = [str(entry), "--policy", str(POLICY)]
    else:
        user, env = PLAIN_USER, [f"DOCKER_HOST={DOCKER_HOST}", f"DOCKER_CONFIG={DOCKER_CONFIG_DIR}"]
        argv = [str(docker_client()), *shlex.split(command)[1:]]
    gid = str(pwd.getpwnam(user).pw_gid)
    return ["setpriv", "--reuid", user, "--regid", gid, "--init-groups", "env", "-i", "PATH=/usr/bin:/bin",
            *env, *argv]


def direct_bench(stack: Stack, rounds: int, sides: tuple[str, ...] = (GK,)) -> None:
    """Each command once per round as the ForceCommand(s) and as plain docker, in rotating order."""
    print(f"\nwithout ssh, {rounds} rounds in rotating order: the ForceCommand as {AGENT} "
          f"({', '.join(sides)}) against docker as {PLAIN_USER}; wall ms, + over docker's median and minimum")
    print(f"{'command':9} {'side':12} {'median':>8} {'docker':>8} {'+ms med':>8} {'+ms min':>8}")
    order = (*sides, PLAIN)
    for name, command in COMMANDS:
        times: dict[str, list[float]] = {side: [] for side in order}
        for n in range(rounds + 1):
            for side in order[n % len(order):] + order[:n % len(order)]:
                elapsed = timed(direct_argv(side, command))
                if name == "stop":
                    stack.docker("start", OWNED)
                if n:
                    times[side].append(elapsed)
        plain = times[PLAIN]
        for side in sides:
            gk, middle = times[side], statistics.median(plain)
            print(f"{name:9} {side:12} {statistics.median(gk) * 1000:8.1f} {middle * 1000:8.1f} "
                  f"{(statistics.median(gk) - middle) * 1000:+8.1f} "
                  f"{(min(gk) - min(plain)) * 1000:+8.1f}")


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
            status, _, err = ask(policy, args)  # type: ignore[arg-type]  # the fields it reads
            into.append(time.perf_counter() - started)
            if status != 0:
                raise SystemExit(f"owner query failed: {err.decode()[:200]}")
    print(f"owner query, median of {rounds}: API socket {statistics.median(api) * 1000:.2f} ms, "
          f"docker CLI {statistics.median(cli) * 1000:.2f} ms")


MILESTONES: Final = ("first", "shell exec", "ForceCommand exec", "docker exec", "docker exit",
                      "ForceCommand exit", "shell exit")


def trace_bench(stack: Stack, rounds: int) -> None:
    """Each command through the agent's ssh and the plain user's, alternating, under perf: when
    (ms after the ssh client started) the session's shell, the ForceCommand and docker were
    exec'd and exited, as the kernel saw it (bench/process_trace.py), medians."""
    from bench.process_trace import Recorder, descendants, milestones

    programs = {"shell": "/bin/sh", "ForceCommand": str(VENV / "bin" / "gatekeeper-ssh"),
                "docker": str(docker_client())}
    windows: list[tuple[str, str, int, float, float]] = []
    with Recorder() as recorder:
        for n in range(rounds):
            for name, command in COMMANDS:
                for side in (GK, PLAIN) if n % 2 else (PLAIN, GK):
                    started = time.monotonic()
                    timed(side_argv(stack, n, side, command))
                    windows.append((name, side, pool_of(side).pid(n), started, time.monotonic()))
                    if name == "stop":
                        stack.docker("start", OWNED)
    events = recorder.events()
    seen: dict[tuple[str, str], dict[str, list[float]]] = {}
    for name, side, root, started, ended in windows:
        marks = milestones(descendants(events, root, started, ended), programs)
        row = seen.setdefault((name, side), {})
        for mark, when in (*marks.items(), ("client exit", ended)):
            row.setdefault(mark, []).append((when - started) * 1000)
    print(f"\nunder perf, {rounds} rounds alternating: ms after the ssh client started (medians) when "
          "each program of the session was exec'd / exited (first: sshd's child for the connection)")
    columns = [*MILESTONES, "client exit"]
    print(f"{'command':9} {'side':11} " + " ".join(f"{c:>13}" for c in columns))
    for name, _ in COMMANDS:
        for side in (GK, PLAIN):
            row = seen.get((name, side), {})
            cells = [f"{statistics.median(row[c]):13.1f}" if len(row.get(c, [])) == rounds else f"{'-':>13}"
                     for c in columns]
            print(f"{name:9} {side:11} " + " ".join(cells))
        gk, plain = seen.get((name, GK), {}), seen.get((name, PLAIN), {})
        segments = segment_differences(gk, plain)
        print(f"{'':9} {'gk - plain':11} " + ", ".join(f"{label} {delta:+.1f}" for label, delta in segments))


def segment_differences(gk: dict[str, list[float]], plain: dict[str, list[float]]) -> list[tuple[str, float]]:
    """gatekeeper's side minus plain's, per stretch of the session (medians of spans, ms)."""
    stretches = (("to shell", "", "shell exec"),
                 ("shell to docker", "shell exec", "docker exec"),
                 ("docker", "docker exec", "docker exit"),
                 ("docker to shell exit", "docker exit", "shell exit"),
                 ("to client exit", "shell exit", "client exit"))

    def span(row: dict[str, list[float]], first: str, last: str) -> float:
        starts = row[first] if first else [0.0] * len(row[last])
        return statistics.median(b - a for a, b in zip(starts, row[last], strict=True))

    try:
        return [(label, span(gk, first, last) - span(plain, first, last)) for label, first, last in stretches]
    except KeyError:
        return []


def report(times: Times, rounds: int, layout: str, sshds: int = 1, restart_every: int = 0) -> None:
    print(f"\n{rounds} rounds, sides in rotating order, layout {layout}, {sshds} sshds a side "
          f"(started afresh every {restart_every or rounds} rounds); wall ms of the whole "
          "`ssh ... docker ...` round trip; ratios to plain's (median, minimum, median of per-round ratios)")
    print(f"{'command':9} {'side':12} {'median':>8} {'min':>8} {'x med':>7} {'x min':>7} {'x paired':>9}  "
          f"{'+ms med':>8}")
    for name, sides in times.items():
        plain = sides[PLAIN]
        for side in [side for side in sides if side != PLAIN]:
            values = sides[side]
            paired = statistics.median(a / b for a, b in zip(values, plain, strict=True))
            ratio = statistics.median(values) / statistics.median(plain)
            print(f"{name:9} {side:12} {statistics.median(values) * 1000:8.1f} {min(values) * 1000:8.1f} "
                  f"{ratio:7.3f} {min(values) / min(plain):7.3f} {paired:9.3f}  "
                  f"{(statistics.median(values) - statistics.median(plain)) * 1000:+8.1f}"
                  + (f"  {'ok' if ratio <= TARGET else 'over'} (target {TARGET})"
                     if side in (GK, AGAINST, FORKING, RESIDENT_SIDE) else ""))
        print(f"{name:9} {PLAIN:12} {statistics.median(plain) * 1000:8.1f} {min(plain) * 1000:8.1f}")


def parse_options() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--layout", choices=(CLI_ALONE, LAYERED), default=CLI_ALONE)
    parser.add_argument("--sshds", type=int, default=3, metavar="K",
                        help="sshds per side, round n on sshd n %% K (per-process offsets average out)")
    parser.add_argument("--restart-every", type=int, default=10, metavar="B",
                        help="start every side's sshds afresh every B rounds (0: never)")
    parser.add_argument("--trace", type=int, default=0, metavar="ROUNDS",
                        help="also ROUNDS rounds under perf: when each program of a session ran")
    parser.add_argument("--no-bench", action="store_true", help="only the --trace rounds")
    parser.add_argument("--against", type=Path, metavar="VENV",
                        help="a venv with another gatekeeper and its entry script (bin/gatekeeper-ssh): "
                             "a fifth side, its own sshd with the drop-in's ForceCommand pointing there")
    parser.add_argument("--resident", action="store_true",
                        help="a side more: the resident ForceCommand, the default (gatekeeper-ssh-resident, "
                             "a `gatekeeper resident` pool), its own sshds (the drop-in pointed at it)")
    parser.add_argument("--forking-shell", action="store_true",
                        help="a side more: the same gatekeeper, its sshd's ForceCommand without `exec` "
                             "(the login shell forks for it and waits, as before the drop-in had `exec`)")
    return parser.parse_args()


def resident_snippet(workdir: Path) -> Path:
    """The drop-in with its ForceCommand pointed at the resident client (--resident)."""
    snippet = workdir / "bench-resident.conf"
    shutil.copyfile(SNIPPET, snippet)
    use_resident_client(snippet)
    return snippet


def main() -> int:
    options = parse_options()
    with running_stack() as stack:
        switch_mode(stack, options.layout)
        home = stack.workdir / "bench-home"
        home.mkdir(mode=0o755)
        with plain_account(home):
            shutil.chown(home, PLAIN_USER)
            keys = stack.workdir / "bench-keys" / PLAIN_USER
            write_authorized_keys(keys, Path(f"{stack.client_key}.pub").read_text())
            host_key = stack.workdir / "host_ed25519"
            plain = plain_snippet(stack.workdir, keys)
            # GK: the stack's own ForceCommand sshd's config (the system drop-ins)
            snippets = {GK: SYSTEM_DROP_INS, PLAIN: plain, PLAIN_AGAIN: plain}
            sides: tuple[str, ...] = SIDES
            if options.against:
                snippets[AGAINST] = against_snippet(stack.workdir, options.against)
                sides = (*sides, AGAINST)
            if options.forking_shell:
                snippets[FORKING] = against_snippet(stack.workdir, VENV, shell_exec=False)
                sides = (*sides, FORKING)
            names = {GK: "gk", PLAIN: "plain", PLAIN_AGAIN: "again", AGAINST: "against", FORKING: "forking",
                     RESIDENT_SIDE: "resident"}
            resident = start_resident_pool() if options.resident else None
            if options.resident:
                snippets[RESIDENT_SIDE] = resident_snippet(stack.workdir)
                sides = (*sides, RESIDENT_SIDE)
            try:
                for side, snippet in snippets.items():
                    name = f"sshd-bench-{names[side]}"
                    POOLS[side] = Pool(name, stack.workdir, snippet, host_key, options.sshds)
                    POOLS[side].start()
                made = stack.ssh(f"docker run -d --name {OWNED} {IMAGE} sh -c 'echo hello; sleep 3600'")
                if made.returncode != 0:
                    raise SystemExit(f"the agent's container: {made.stderr.decode()}")
                if not options.no_bench:
                    query_bench(options.rounds * 2)
                    times, served = measure(stack, options.rounds, sides, options.restart_every)
                    report(times, options.rounds, options.layout, options.sshds, options.restart_every)
                    sshd_offsets(times, served)
                    direct_bench(stack, options.rounds, (GK, RESIDENT_SIDE) if options.resident else (GK,))
                if options.trace:
                    trace_bench(stack, options.trace)
            finally:
                stack.docker("rm", "-f", OWNED, check=False)
                for pool in POOLS.values():
                    pool.stop()
                if resident is not None:
                    stop_resident_pool(resident)
    return 0


if __name__ == "__main__":
    sys.exit(main())
