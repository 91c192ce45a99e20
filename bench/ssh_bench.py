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

`--forking-shell` adds the same gatekeeper on an sshd whose ForceCommand lacks the drop-in's
`exec ` (the login shell forks for it and waits): what that word saves, in the same rounds.

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
    SNIPPET,
    VENV,
    Stack,
    docker_client,
    free_port,
    running_stack,
    start_sshd,
    switch_mode,
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
    text = SNIPPET.read_text()
    line = f"ForceCommand exec {VENV}/bin/gatekeeper-ssh --policy {POLICY}"
    if line not in text:
        raise SystemExit(f"{SNIPPET} has no line {line!r}")
    target = workdir / ("bench-against.conf" if shell_exec else "bench-forking.conf")
    forced = f"{'exec ' if shell_exec else ''}{venv}/bin/gatekeeper-ssh --policy {POLICY}"
    target.write_text(text.replace(line, f"ForceCommand {forced}"))
    return target


PORTS: dict[str, int] = {}  # side -> the port of its own sshd (the plain user's, --against's)


def side_argv(stack: Stack, port: int, side: str, command: str) -> list[str]:
    if side == GK:
        return stack.ssh_argv(command)
    if side in (AGAINST, FORKING):
        return stack.ssh_argv(command, port=PORTS[side])
    if side == PLAIN_AGAIN:
        return plain_ssh(stack, PORTS[PLAIN_AGAIN], command)
    return plain_ssh(stack, port, BARE_INTERPRETER + command if side == PLAIN_PY else command)


def timed(argv: list[str]) -> float:
    started = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, timeout=120, check=False)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{argv[-1]!r} failed ({done.returncode}): {done.stderr.decode()[:300]}")
    return elapsed


def measure(stack: Stack, port: int, rounds: int, sides: tuple[str, ...] = SIDES) -> Times:
    times: Times = {name: {side: [] for side in sides} for name, _ in COMMANDS}
    for n in range(rounds + 1):  # round 0 warms caches and is dropped
        order = sides[n % len(sides):] + sides[:n % len(sides)]
        for name, command in COMMANDS:
            for side in order:
                elapsed = timed(side_argv(stack, port, side, command))
                if name == "stop":
                    stack.docker("start", OWNED)
                if n:
                    times[name][side].append(elapsed)
    return times


def direct_argv(side: str, command: str) -> list[str]:
    """The command without ssh: the entry script as the agent (the ForceCommand, as sshd would
    start it), or docker as the plain user. Their difference is what the ForceCommand itself
    costs in this stack (start, decision, engine questions, the records, supervising docker)."""
    if side == GK:
        user, env = AGENT, [f"HOME={AGENT_HOME}", "SSH_CONNECTION=127.0.0.1 40000 127.0.0.1 22",
                            f"SSH_ORIGINAL_COMMAND={command}"]
        argv = [str(VENV / "bin" / "gatekeeper-ssh"), "--policy", str(POLICY)]
    else:
        user, env = PLAIN_USER, [f"DOCKER_HOST={DOCKER_HOST}", f"DOCKER_CONFIG={DOCKER_CONFIG_DIR}"]
        argv = [str(docker_client()), *shlex.split(command)[1:]]
    gid = str(pwd.getpwnam(user).pw_gid)
    return ["setpriv", "--reuid", user, "--regid", gid, "--init-groups", "env", "-i", "PATH=/usr/bin:/bin",
            *env, *argv]


def direct_bench(stack: Stack, rounds: int) -> None:
    """Each command once per round as the ForceCommand and as plain docker, alternating."""
    print(f"\nwithout ssh, {rounds} rounds alternating: the entry script as {AGENT} (ForceCommand) against "
          f"docker as {PLAIN_USER}; wall ms")
    print(f"{'command':9} {'ForceCommand':>13} {'docker':>8} {'+ms med':>8} {'+ms min':>8}")
    for name, command in COMMANDS:
        times: dict[str, list[float]] = {GK: [], PLAIN: []}
        for n in range(rounds + 1):
            for side in (GK, PLAIN) if n % 2 else (PLAIN, GK):
                elapsed = timed(direct_argv(side, command))
                if name == "stop":
                    stack.docker("start", OWNED)
                if n:
                    times[side].append(elapsed)
        gk, plain = times[GK], times[PLAIN]
        print(f"{name:9} {statistics.median(gk) * 1000:13.1f} {statistics.median(plain) * 1000:8.1f} "
              f"{(statistics.median(gk) - statistics.median(plain)) * 1000:+8.1f} "
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
            status, _, err = ask(policy, args)
            into.append(time.perf_counter() - started)
            if status != 0:
                raise SystemExit(f"owner query failed: {err.decode()[:200]}")
    print(f"owner query, median of {rounds}: API socket {statistics.median(api) * 1000:.2f} ms, "
          f"docker CLI {statistics.median(cli) * 1000:.2f} ms")


MILESTONES: Final = ("first", "shell exec", "ForceCommand exec", "docker exec", "docker exit",
                      "ForceCommand exit", "shell exit")


def trace_bench(stack: Stack, port: int, plain_sshd: int, rounds: int) -> None:
    """Each command through the agent's ssh and the plain user's, alternating, under perf: when
    (ms after the ssh client started) the session's shell, the ForceCommand and docker were
    exec'd and exited, as the kernel saw it (bench/process_trace.py), medians."""
    from bench.process_trace import Recorder, descendants, milestones

    gk_sshd = next(d for d in stack.daemons if d.name == "sshd-forcecommand")
    assert gk_sshd.process is not None
    roots = {GK: gk_sshd.process.pid, PLAIN: plain_sshd}
    programs = {"shell": "/bin/sh", "ForceCommand": str(VENV / "bin" / "gatekeeper-ssh"),
                "docker": str(docker_client())}
    windows: list[tuple[str, str, float, float]] = []
    with Recorder() as recorder:
        for n in range(rounds):
            for name, command in COMMANDS:
                for side in (GK, PLAIN) if n % 2 else (PLAIN, GK):
                    started = time.monotonic()
                    timed(side_argv(stack, port, side, command))
                    windows.append((name, side, started, time.monotonic()))
                    if name == "stop":
                        stack.docker("start", OWNED)
    events = recorder.events()
    seen: dict[tuple[str, str], dict[str, list[float]]] = {}
    for name, side, started, ended in windows:
        marks = milestones(descendants(events, roots[side], started, ended), programs)
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


def report(times: Times, rounds: int, layout: str) -> None:
    print(f"\n{rounds} rounds, sides in rotating order, layout {layout}; wall ms of the whole "
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
                     if side in (GK, AGAINST, FORKING) else ""))
        print(f"{name:9} {PLAIN:12} {statistics.median(plain) * 1000:8.1f} {min(plain) * 1000:8.1f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--layout", choices=(CLI_ALONE, LAYERED), default=CLI_ALONE)
    parser.add_argument("--trace", type=int, default=0, metavar="ROUNDS",
                        help="also ROUNDS rounds under perf: when each program of a session ran")
    parser.add_argument("--no-bench", action="store_true", help="only the --trace rounds")
    parser.add_argument("--against", type=Path, metavar="VENV",
                        help="a venv with another gatekeeper and its entry script (bin/gatekeeper-ssh): "
                             "a fifth side, its own sshd with the drop-in's ForceCommand pointing there")
    parser.add_argument("--forking-shell", action="store_true",
                        help="a side more: the same gatekeeper, its sshd's ForceCommand without `exec` "
                             "(the login shell forks for it and waits, as before the drop-in had `exec`)")
    options = parser.parse_args()
    with running_stack() as stack:
        switch_mode(stack, options.layout)
        home = stack.workdir / "bench-home"
        home.mkdir(mode=0o755)
        with plain_account(home):
            shutil.chown(home, PLAIN_USER)
            keys = stack.workdir / "bench-keys" / PLAIN_USER
            write_authorized_keys(keys, Path(f"{stack.client_key}.pub").read_text())
            port = free_port()
            daemon = start_sshd("sshd-bench-plain", stack.workdir, port, plain_snippet(stack.workdir, keys),
                                stack.workdir / "host_ed25519")
            PORTS[PLAIN_AGAIN] = free_port()
            again = start_sshd("sshd-bench-plain-again", stack.workdir, PORTS[PLAIN_AGAIN],
                               plain_snippet(stack.workdir, keys), stack.workdir / "host_ed25519")
            sides = SIDES
            against = None
            if options.against:
                PORTS[AGAINST] = free_port()
                against = start_sshd("sshd-bench-against", stack.workdir, PORTS[AGAINST],
                                     against_snippet(stack.workdir, options.against),
                                     stack.workdir / "host_ed25519")
                sides = (*sides, AGAINST)
            forking = None
            if options.forking_shell:
                PORTS[FORKING] = free_port()
                forking = start_sshd("sshd-bench-forking", stack.workdir, PORTS[FORKING],
                                     against_snippet(stack.workdir, VENV, shell_exec=False),
                                     stack.workdir / "host_ed25519")
                sides = (*sides, FORKING)
            try:
                made = stack.ssh(f"docker run -d --name {OWNED} {IMAGE} sh -c 'echo hello; sleep 3600'")
                if made.returncode != 0:
                    raise SystemExit(f"the agent's container: {made.stderr.decode()}")
                if not options.no_bench:
                    query_bench(options.rounds * 2)
                    report(measure(stack, port, options.rounds, sides), options.rounds, options.layout)
                    direct_bench(stack, options.rounds)
                if options.trace:
                    assert daemon.process is not None
                    trace_bench(stack, port, daemon.process.pid, options.trace)
            finally:
                stack.docker("rm", "-f", OWNED, check=False)
                daemon.stop()
                for extra in (again, against, forking):
                    if extra is not None:
                        extra.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
