"""[budgets]: how much a profile may do per minute, hour and day, across all its sessions.

A runaway loop is an agent that is not hostile at all; it still fills the disk with
images, the engine with containers and the registry's rate limit with pulls. So each
allowed command spends from its profile's budgets, and a command that would overspend
is refused, naming the budget and when it refills:

    commands_per_minute   every allowed command
    containers_per_hour   run, create; compose up/create (one per service), compose run
    pulls_per_day         pull; compose pull (one per service with an image)
    builds_per_day        build; compose build (one per service that builds)

0 means no budget. The ledger is one file per profile in the state directory
(policy [paths] state_dir, by default the home's top-level ~/.gatekeeper): the path
rule keeps it out of every container's reach and refuses client outputs there, so
the only writer is gatekeeper itself, under flock. An agent that could rewrite the
file could reset its budget; one that cannot reach it cannot. Entries are
"KIND UNIX_TIME" lines; each window slides, and entries older than a day are dropped
when the file is rewritten.
"""

from __future__ import annotations

import os

from gatekeeper.errors import Denied

TYPE_CHECKING = False  # typing costs an import on the ForceCommand path
if TYPE_CHECKING:
    from gatekeeper.policy import Policy

RULE_COMMANDS = "budget-commands"
RULE_CONTAINERS = "budget-containers"
RULE_PULLS = "budget-pulls"
RULE_BUILDS = "budget-builds"
RULE_OF = {"commands": RULE_COMMANDS, "containers": RULE_CONTAINERS, "pulls": RULE_PULLS,
           "builds": RULE_BUILDS}
# (kind, policy key, window in seconds, what one unit is)
BUDGETS = (
    ("commands", "commands_per_minute", 60, "commands"),
    ("containers", "containers_per_hour", 3600, "containers created"),
    ("pulls", "pulls_per_day", 86400, "pulls"),
    ("builds", "builds_per_day", 86400, "builds"),
)
LEDGER_PREFIX = "budget-"
LOCK_TIMEOUT = 30.0
MAX_LEDGER = 4 << 20
CONTAINER_COMMANDS = frozenset({"container run", "container create", "compose run"})


def configured(policy: Policy) -> bool:
    """Any budget set at all (otherwise nothing is imported or opened)."""
    return any(policy.budgets[key] for _, key, _, _ in BUDGETS)


def spending(canonical: str | None, stdin: bytes | None) -> dict[str, int]:
    """What one allowed command spends of each budget."""
    spent = {"commands": 1}
    if canonical in CONTAINER_COMMANDS:
        spent["containers"] = 1
    elif canonical == "image pull":
        spent["pulls"] = 1
    elif canonical == "image build":
        spent["builds"] = 1
    elif canonical in ("compose up", "compose create", "compose pull", "compose build"):
        spent.update(compose_spending(canonical, stdin))
    return spent


def compose_spending(canonical: str, stdin: bytes | None) -> dict[str, int]:
    import json

    services = (json.loads(stdin or b"{}").get("services") or {}).values()
    if canonical == "compose pull":
        return {"pulls": sum(1 for s in services if (s or {}).get("image"))}
    builds = sum(1 for s in services if (s or {}).get("build"))
    if canonical == "compose build":
        return {"builds": builds}
    return {"containers": len(services), "builds": builds}


def charge(policy: Policy, canonical: str | None, stdin: bytes | None, now: float) -> None:
    """Spend this command's share of its profile's budgets, or raise Denied (nothing spent)."""
    spent = spending(canonical, stdin)
    fd = open_ledger(policy)
    try:
        entries = [(kind, at) for kind, at in read_entries(fd) if now - at < 86400]
        for kind, key, window, unit in BUDGETS:
            limit, wanted = policy.budgets[key], spent.get(kind, 0)
            if not limit or not wanted:
                continue
            recent = sorted(at for k, at in entries if k == kind and now - at < window)
            if len(recent) + wanted > limit:
                raise over_budget(policy, kind, key, limit, window, unit, recent, wanted, now)
        entries += [(kind, now) for kind, times in spent.items() for _ in range(times)]
        write_entries(fd, entries)
    finally:
        os.close(fd)  # drops the flock


def over_budget(policy: Policy, kind: str, key: str, limit: int, window: int, unit: str,
                recent: list[float], wanted: int, now: float) -> Denied:
    """When enough of the window's entries have aged out for `wanted` more."""
    import time

    profile = policy.profile
    if wanted > limit:
        return Denied(f"budget {key} = {limit} for profile {profile!r}: this command alone needs {wanted} "
                      f"{unit}; split it or ask the operator", rule=RULE_OF[kind])
    refill = recent[len(recent) + wanted - limit - 1] + window
    when = time.strftime("%H:%M:%S UTC", time.gmtime(refill))
    return Denied(f"budget {key} = {limit} used up for profile {profile!r} ({len(recent)} {unit} in the "
                  f"last {describe(window)}; this command needs {wanted}); it refills at {when} "
                  f"(in {max(1, round(refill - now))} s)", rule=RULE_OF[kind])


def describe(window: int) -> str:
    return {60: "minute", 3600: "hour", 86400: "day"}[window]


def ledger_name(profile: str) -> str:
    """Profiles may hold '/', ':' or '@' and be '..': encoded into one safe name."""
    return LEDGER_PREFIX + profile.encode().hex()


def open_ledger(policy: Policy) -> int:
    """The profile's ledger, opened relative to the checked state dir, flock'd."""
    from gatekeeper.inflight import Registry, StateError, wait_for_lock

    directory = Registry(policy.state_dir).open_state_dir()
    try:
        fd = os.open(ledger_name(policy.profile), os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o600, dir_fd=directory)
    except OSError as error:
        where = policy.state_dir
        raise StateError(f"cannot open the budget ledger in {where!r} ({error.strerror})") from None
    finally:
        os.close(directory)
    if not wait_for_lock(fd, LOCK_TIMEOUT):
        os.close(fd)
        raise Denied(f"another session held the budget ledger for {LOCK_TIMEOUT:.0f} s; try again",
                     rule="host-path-busy")
    return fd


def read_entries(fd: int) -> list[tuple[str, float]]:
    data = os.pread(fd, MAX_LEDGER, 0)
    entries = []
    for line in data.decode("ascii", errors="replace").splitlines():
        kind, _, at = line.partition(" ")
        try:
            entries.append((kind, float(at)))
        except ValueError:
            continue  # a torn line (a crash mid-write) costs nothing
    return entries


def write_entries(fd: int, entries: list[tuple[str, float]]) -> None:
    data = "".join(f"{kind} {at:.3f}\n" for kind, at in entries).encode()
    os.pwrite(fd, data, 0)  # then cut: a crash in between leaves a longer ledger, never an empty one
    os.ftruncate(fd, len(data))
