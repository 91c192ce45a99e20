"""`gatekeeper resident`: start the resident ForceCommand's pool (gatekeeper.resident)."""

from __future__ import annotations

import sys

from gatekeeper.resident import DEFAULT_WORKERS, ResidentError, run_pool

USAGE = """\
usage: gatekeeper resident --user NAME [--workers N] [--socket PATH]

Serve the ForceCommand to gatekeeper-ssh-resident for one agent account: a pool
of N pre-started workers (default 3) on /run/gatekeeper-resident/<uid>.sock,
each serving one session as that account. Start as root (systemd:
sshd_snippets/gatekeeper-resident.service). Without it every call is denied:
the client runs nothing itself.

examples:
  /opt/gatekeeper/bin/python3 -I -m gatekeeper resident --user ai-worker
  gatekeeper resident --user ai-worker --workers 4
"""



def main(args: list[str]) -> int:
    if any(arg in ("-h", "--help") for arg in args):
        sys.stdout.write(USAGE)
        return 0
    try:
        options = parse(args)
        workers = int(options.get("--workers", DEFAULT_WORKERS))
        return run_pool(options["--user"], workers, options.get("--socket"))
    except (ResidentError, ValueError, OSError) as error:
        sys.stderr.write(f"gatekeeper resident: {error}\n")
        return 1


def parse(args: list[str]) -> dict[str, str]:
    options: dict[str, str] = {}
    for name, value in zip(args[::2], args[1::2], strict=False):
        if name not in ("--user", "--workers", "--socket") or name in options:
            raise ResidentError(f"unknown or repeated option {name!r}\n{USAGE}")
        options[name] = value
    if len(args) % 2 or "--user" not in options:
        raise ResidentError(f"--user NAME is needed and every option takes a value\n{USAGE}")
    return options
