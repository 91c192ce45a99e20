"""Bench: what the ssh session alone costs the agent's account against a plain one (no docker, no gatekeeper).

bench/ssh_bench.py compares `ssh ai-worker@host docker ...` through gatekeeper with `ssh plain@host
docker ...`. Besides the ForceCommand, two things differ there: the account (home, groups,
what PAM does for it) and the sshd settings of the drop-in (sshd_snippets/00-gatekeeper.conf:
ExposeAuthInfo, SetEnv, the AuthorizedKeysFile, timeouts...). This bench isolates them: private
sshds on loopback (same binary, same Debian main config, same PAM stack, same host key and
client key, LogLevel VERBOSE like the e2e stack's), each running the client's `/bin/true` with no
ForceCommand, in a rotating order, many rounds:

    plain            the plain user, a snippet with only its AuthorizedKeysFile (ssh_bench's yardstick)
    plain again      the same sshd once more: the A/A control
    plain+drop-in    the plain user under the drop-in minus its ForceCommand
    agent            the agent's account (ai-worker) under the plain snippet
    agent+drop-in    the agent's account under the drop-in minus its ForceCommand
    plain+drop-in-X  the drop-in minus its ForceCommand and minus setting X (one side per --without X)

Needs root; touches no e2e state (its own directory, keys and ports; the plain account is added
and removed as in ssh_bench.py). Run it in a quiet window:

    flock /tmp/gk-e2e.lock .venv/bin/python bench/ssh_session_bench.py [--rounds N] [--without SETTING ...]
"""

from __future__ import annotations

import argparse
import posix
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Final

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.ssh_bench import PLAIN_USER, plain_account
from tests.e2e.stack import (
    AGENT,
    AUTHORIZED_KEYS,
    SNIPPET,
    free_port,
    make_keypair,
    start_sshd,
    write_authorized_keys,
)

WORKDIR: Final = Path("/run/gk-session-bench")
COMMAND: Final = "/bin/true"


def plain_text(user: str, keys: Path) -> str:
    return f"Match User {user}\n\tAuthorizedKeysFile {keys}/%u\nMatch all\n"


def drop_in_text(user: str, keys: Path, without: str | None = None) -> str:
    """The real drop-in for `user`, minus its ForceCommand (and minus the lines starting with `without`)."""
    text = SNIPPET.read_text().replace(f"Match User {AGENT}\n", f"Match User {user}\n")
    text = text.replace(f"AuthorizedKeysFile {AUTHORIZED_KEYS.parent}/%u", f"AuthorizedKeysFile {keys}/%u")
    lines = [line for line in text.splitlines(keepends=True) if not line.strip().startswith("ForceCommand ")]
    if without:
        kept = [line for line in lines if not line.strip().startswith(without)]
        if len(kept) == len(lines):
            raise SystemExit(f"the drop-in has no setting {without!r}")
        lines = kept
    return "".join(lines)


def cpu_ticks(pid: int) -> int:
    """CPU (user + system, clock ticks) of the sshd's children it has waited for: every session it served."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[13]) + int(fields[14])  # cutime, cstime (fields 16 and 17 of proc(5))


def report(times: dict[str, list[float]], cpu_ms: dict[str, float], rounds: int) -> None:
    plain = times["plain"]
    print(f"{rounds} rounds, rotating order, `ssh USER@127.0.0.1 {COMMAND}`; wall ms; ratios to plain's "
          "(median, min, median of per-round ratios); CPU of the sessions (what the sshd waited for: "
          "its session processes and /bin/true), mean per session")
    print(f"{'side':18} {'median':>8} {'min':>8} {'x med':>7} {'x min':>7} {'x paired':>9} "
          f"{'+ms med':>8} {'CPU ms':>7}")
    for side, values in times.items():
        paired = statistics.median(a / b for a, b in zip(values, plain, strict=True))
        print(f"{side:18} {statistics.median(values) * 1000:8.2f} {min(values) * 1000:8.2f} "
              f"{statistics.median(values) / statistics.median(plain):7.3f} "
              f"{min(values) / min(plain):7.3f} {paired:9.3f} "
              f"{(statistics.median(values) - statistics.median(plain)) * 1000:+8.2f} {cpu_ms[side]:7.2f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument("--without", action="append", default=[], metavar="SETTING",
                        help="a side more: the plain user under the drop-in minus SETTING (repeatable)")
    options = parser.parse_args()
    shutil.rmtree(WORKDIR, ignore_errors=True)
    WORKDIR.mkdir(mode=0o755)
    home = WORKDIR / "plain-home"
    home.mkdir(mode=0o755)
    host_key = make_keypair(WORKDIR / "host_ed25519", "session bench host")
    client_key = make_keypair(WORKDIR / "client_ed25519", "session bench client")
    keys = WORKDIR / "keys"
    daemons = []
    with plain_account(home):
        shutil.chown(home, PLAIN_USER)
        for user in (PLAIN_USER, AGENT):
            write_authorized_keys(keys / user, Path(f"{client_key}.pub").read_text())
        variants = {
            "plain": (PLAIN_USER, plain_text(PLAIN_USER, keys)),
            "plain+drop-in": (PLAIN_USER, drop_in_text(PLAIN_USER, keys)),
            "agent": (AGENT, plain_text(AGENT, keys)),
            "agent+drop-in": (AGENT, drop_in_text(AGENT, keys)),
        }
        for setting in options.without:
            variants[f"drop-in-{setting}"] = (PLAIN_USER, drop_in_text(PLAIN_USER, keys, setting))
        ports: dict[str, tuple[str, int]] = {}
        try:
            for name, (user, text) in variants.items():
                snippet = WORKDIR / f"{name}.conf"
                snippet.write_text(text)
                port = free_port()
                daemons.append(start_sshd(f"sshd-{name}", WORKDIR, port, snippet, host_key))
                ports[name] = (user, port)
            ports["plain again"] = ports["plain"]
            sides = list(ports)
            pids = {name: daemon.process.pid for name, daemon in zip(variants, daemons, strict=True)
                    if daemon.process is not None}
            times: dict[str, list[float]] = {side: [] for side in sides}
            for n in range(options.rounds + 1):
                order = sides[n % len(sides):] + sides[:n % len(sides)]
                if n == 1:
                    cpu = {name: cpu_ticks(pid) for name, pid in pids.items()}
                for side in order:
                    user, port = ports[side]
                    argv = ["ssh", "-F", "/dev/null", "-i", str(client_key), "-o", "IdentitiesOnly=yes",
                            "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                            "-o", "BatchMode=yes", "-o", "LogLevel=ERROR", "-p", str(port),
                            f"{user}@127.0.0.1", COMMAND]
                    started = time.perf_counter()
                    done = subprocess.run(argv, capture_output=True, timeout=60, check=False)
                    elapsed = time.perf_counter() - started
                    if done.returncode != 0:
                        raise SystemExit(f"{side}: {done.stderr.decode()[:300]}")
                    if n:
                        times[side].append(elapsed)
            ticks = posix.sysconf("SC_CLK_TCK")
            cpu_ms = {name: (cpu_ticks(pid) - cpu[name]) * 1000 / ticks / options.rounds
                      for name, pid in pids.items()}
            cpu_ms["plain"] /= 2  # it served "plain again" too
            cpu_ms["plain again"] = cpu_ms["plain"]
            report(times, cpu_ms, options.rounds)
        finally:
            for daemon in daemons:
                daemon.stop()
    shutil.rmtree(WORKDIR, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
